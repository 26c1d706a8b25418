"""Exceptions raised by django-triggers, and a helper to give any exception context."""

from typing import Any, TypeVar

E = TypeVar("E", bound=BaseException)


def with_context(exc: E, context: dict[str, Any] | None) -> E:
    """Attach ``context`` to ``exc`` (merged into any it already has) and return it.

    Failed task instances store this context in their metadata, so it is the
    place for the values that explain a failure: ``raise with_context(exc, {...})``.
    """
    existing = getattr(exc, "context", None)
    merged = dict(existing) if isinstance(existing, dict) else {}
    merged.update(context or {})
    exc.context = merged  # type: ignore[attr-defined]
    return exc


class ConfigurationError(ValueError):
    """A task configuration is invalid; nothing of it was stored."""

    def __init__(self, message: str, *, task: str | None = None, directive: str | None = None):
        self.task = task
        self.directive = directive
        if task is not None and directive is not None:
            message = f"Task {task!r}, directive {directive!r}: {message}"
        elif task is not None:
            message = f"Task {task!r}: {message}"
        super().__init__(message)


class InstanceNotFound(LookupError):
    """No task instance of that name exists in the session."""


class SessionNotFound(LookupError):
    """No trigger session has that uid."""


class UnencodableValue(TypeError, ValueError):
    """A value meant for the database cannot be encoded as JSON.

    Subclasses both ``TypeError`` (what :mod:`json` raises for unknown types)
    and ``ValueError`` (for NaN and infinities), so either ``except`` catches it.
    """

    def __init__(self, message: str, *, path: str):
        self.path = path
        super().__init__(message)


class TaskInstanceFailed(Exception):
    """A worker's run of a trigger task ended with its instance ``failed``.

    Raised out of the Celery task only once the failure is recorded on the
    instance (type, message, traceback, context), so that Celery, its result
    backend and its monitors see the run as failed. Its message is storable
    text: the failure's own exception may hold what a result backend refuses.
    """


class UnstorableOutcome(ValueError):
    """What a task's run ended with could not be stored as given.

    The instance is failed with this error instead; its ``__cause__`` is the
    error the write raised.
    """


class StuckInstance(RuntimeError):
    """Recorded on an instance failed by recovery after running for too long."""


class ManagerClassError(ImportError):
    """The manager class recorded on a session cannot be used by a worker."""
