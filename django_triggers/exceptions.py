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


class StuckInstance(RuntimeError):
    """Recorded on an instance failed by recovery after running for too long."""


class ManagerClassError(ImportError):
    """The manager class recorded on a session cannot be used by a worker."""


def describe_exception(exc: BaseException) -> dict[str, Any]:
    """The metadata a failed instance keeps about the exception that failed it."""
    import traceback

    from django_triggers.encoding import jsonable

    exc_type = type(exc)
    return {
        "exception_type": f"{exc_type.__module__}.{exc_type.__qualname__}",
        "exception_message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "exception_context": jsonable(getattr(exc, "context", None) or {}),
    }
