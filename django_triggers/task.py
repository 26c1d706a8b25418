"""Worker side: the base class of trigger tasks and what they are handed.

A trigger task is a class-based Celery task::

    class ImportSubject(TriggerTask):
        name = "app.tasks.ImportSubject"

        def _run(self, context: TaskContext) -> dict | None:
            page = context.trigger_kwargs["firstPageReceived"]["responses"]
            ...
            return {"subjectId": subject.pk}

    app.register_task(ImportSubject())

The Celery message carries only the session uid and the instance name; the
task reads everything else from the database, so a message delivered twice,
or late, cannot run an instance twice.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from celery import Task, states
from django.apps import apps
from django.db import OperationalError, connections, router

from django_triggers import encoding, instrumentation, registry
from django_triggers.configuration import check_cooldown
from django_triggers.exceptions import (
    ManagerClassError,
    SessionNotFound,
    TaskInstanceFailed,
    UnstorableOutcome,
    with_context,
)
from django_triggers.manager import TriggerManager
from django_triggers.registry import get_trigger_task

__all__ = [
    "MaxRetriesExceeded",
    "TaskContext",
    "TaskLogger",
    "TriggerTask",
    "get_trigger_task",
]
from django_triggers.stores import Upsert

if TYPE_CHECKING:
    from django_triggers.models import TaskInstance

logger = logging.getLogger(__name__)

T = TypeVar("T")


class MaxRetriesExceeded(Exception):
    """A task called ``self.retry()`` more often than its ``max_retries`` allows."""


class _TaskControl(Exception):
    """Raised out of ``_run`` to end the instance otherwise than by finishing or failing."""


class SkipTask(_TaskControl):
    def __init__(self, metadata: Mapping[str, Any] | None):
        super().__init__("task skipped itself")
        self.metadata = metadata


class RetryTask(_TaskControl):
    def __init__(
        self,
        exc: BaseException | None,
        cooldown: float | None,
        replacement_kwargs: Mapping[str, Mapping[str, Any]] | None,
        metadata: Mapping[str, Any] | None,
    ):
        super().__init__(f"task asked to be retried ({exc!r})")
        self.exc = exc
        self.cooldown = cooldown
        self.replacement_kwargs = replacement_kwargs
        self.metadata = metadata


_current_context: contextvars.ContextVar[TaskContext] = contextvars.ContextVar(
    "django_triggers_task_context"
)


class TaskLogger(logging.LoggerAdapter):
    """A logger that adds a ``context`` dict to every record and notes the worst level."""

    def __init__(self, logger: logging.Logger, context: Mapping[str, Any]):
        super().__init__(logger, {})
        self.context = dict(context)
        self.max_level = logging.NOTSET

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(kwargs.get("extra") or {})
        extra["context"] = {**self.context, **(extra.get("context") or {})}
        kwargs["extra"] = extra
        return msg, kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.max_level = max(self.max_level, level)
        super().log(level, msg, *args, **kwargs)


class TaskContext:
    """Everything a running trigger task needs; the one argument of ``_run``."""

    def __init__(self, manager: TriggerManager, task_instance: TaskInstance, task: TriggerTask):
        self.manager = manager
        self.task_instance = task_instance
        self.task = task
        self.trigger_kwargs: dict[str, Any] = encoding.deep_merge(
            task_instance.config.with_params, task_instance.kwargs
        )

    def __repr__(self) -> str:
        return f"<TaskContext {self.instance_name!r} of session {self.session_uid!r}>"

    @property
    def session_uid(self) -> str:
        return self.manager.session_uid

    @property
    def instance_name(self) -> str:
        return self.task_instance.name

    def filter_kwargs(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and convert trigger kwargs with the ``filters`` library.

        ``filters`` maps trigger names to ``{key: filter}`` dicts (or to one
        filter for the whole kwargs). Missing and extra keys are allowed;
        invalid values raise ``ValueError`` whose ``context`` holds the errors.
        """
        import filters as f

        cleaned: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for trigger, spec in filters.items():
            the_filter = (
                f.FilterMapper(spec, allow_missing_keys=True, allow_extra_keys=True)
                if isinstance(spec, Mapping)
                else spec
            )
            runner = f.FilterRunner(the_filter, self.trigger_kwargs.get(trigger) or {})
            if runner.is_valid():
                cleaned[trigger] = runner.cleaned_data
            else:
                errors[trigger] = runner.errors
        if errors:
            summary = "; ".join(
                f"{trigger}.{key}: {', '.join(e['message'] for e in problems)}"
                for trigger, by_key in errors.items()
                for key, problems in by_key.items()
            )
            raise with_context(
                ValueError(f"invalid trigger kwargs for {self.instance_name!r}: {summary}"),
                {"filter_errors": errors},
            )
        return cleaned

    @contextmanager
    def get_logger_context(
        self,
        logger: logging.Logger | str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Iterator[TaskLogger]:
        """Yield a logger whose records carry ``record.context``.

        An exception raised inside is logged with its context and re-raised;
        the highest level logged is stored on the instance.
        """
        if logger is None:
            logger = f"django_triggers.tasks.{self.task_instance.task_name}"
        if isinstance(logger, str):
            logger = logging.getLogger(logger)
        task_logger = TaskLogger(logger, context or {})
        try:
            yield task_logger
        except _TaskControl:
            raise
        except Exception as exc:
            task_logger.exception(
                "%s: %s", type(exc).__name__, exc, extra={"context": getattr(exc, "context", {})}
            )
            raise
        finally:
            self.manager.record_log_level(self.task_instance, task_logger.max_level)


class TriggerTask(Task):
    """Base class of Celery tasks run by django-triggers; override :meth:`_run`."""

    #: How many times in a row an instance may be retried by ``self.retry()``.
    max_retries = 3

    #: Celery logs these at INFO without a traceback: the instance's failure
    #: itself is logged at ERROR, with its traceback, when it is recorded.
    throws = (TaskInstanceFailed,)

    def _run(self, context: TaskContext) -> Mapping[str, Any] | None:
        """The task's work. Return a mapping (the cascade's kwargs) or ``None``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _run(self, context)")

    def run(self, session_uid: str, instance_name: str) -> dict[str, Any] | None:
        """Celery entry point: the message holds identifiers only."""
        try:
            manager, instance = TriggerManager.start_for_worker(session_uid, instance_name)
        except SessionNotFound:
            logger.warning(
                "Session %s of task instance %s no longer exists: nothing to run",
                session_uid,
                instance_name,
            )
            return None
        except ManagerClassError as exc:
            logger.error("Task instance %s failed: %s", instance_name, exc)
            return None
        if instance is None:
            return None
        try:
            return self._run_started(manager, instance)
        except TaskInstanceFailed:
            if self.request.is_eager or self.request.called_directly:
                return None
            raise  # so that Celery records the run as failed

    def execute(
        self, manager_class: type[TriggerManager], session_uid: str, instance_name: str
    ) -> dict[str, Any] | None:
        """Run one scheduled instance to its end, in this process."""
        manager = manager_class(session_uid)
        instance = manager.start_instance(instance_name)
        if instance is None:
            return None
        try:
            return self._run_started(manager, instance)
        except TaskInstanceFailed:
            return None

    def _run_started(
        self, manager: TriggerManager, instance: TaskInstance
    ) -> dict[str, Any] | None:
        """Run an instance just moved to ``running`` (a ``triggers.run`` span, if traced)."""
        with instrumentation.running(manager.session_uid, manager.database, instance):
            return self._run_to_end(manager, instance)

    def _run_to_end(self, manager: TriggerManager, instance: TaskInstance) -> dict[str, Any] | None:
        """Run an instance just moved to ``running``, and record how it ended.

        Whatever ``_run`` does (returns, raises any exception, ``SystemExit``
        included, or hands back what cannot be stored), the instance leaves
        ``running`` here: finished, skipped, retried or failed. Raises
        :class:`TaskInstanceFailed` once it is recorded as failed.
        """
        context = TaskContext(manager, instance, self)
        token = _current_context.set(context)
        outcome: Any
        try:
            outcome = self._run(context)
        except BaseException as exc:  # the worker outlives whatever _run raises
            outcome = exc
        finally:
            _current_context.reset(token)
        if isinstance(outcome, BaseException) and not isinstance(outcome, _TaskControl):
            self._fail(manager, instance, outcome)
            return None
        try:
            return _retrying(manager, lambda: self._record_outcome(manager, instance, outcome))
        except Exception as exc:
            if not isinstance(exc, TypeError | ValueError):
                # The write itself refused it: say what could not be stored.
                unstorable = UnstorableOutcome(
                    f"how {instance.name!r} ended could not be stored: "
                    f"{type(exc).__name__}: {encoding.safe_str(exc)}"
                )
                unstorable.__cause__ = exc
                exc = unstorable
            self._fail(manager, instance, exc)
            return None

    def _record_outcome(
        self, manager: TriggerManager, instance: TaskInstance, outcome: Any
    ) -> dict[str, Any] | None:
        """Store what ``_run`` ended with: a skip, a retry or a result."""
        if isinstance(outcome, SkipTask):
            manager.skip_running_instance(instance, outcome.metadata)
            return None
        if isinstance(outcome, RetryTask):
            manager.retry_instance(
                instance,
                outcome.exc,
                outcome.cooldown,
                outcome.replacement_kwargs,
                outcome.metadata,
            )
            return None
        result = self._check_result(instance.name, outcome)
        celery_result = self._celery_result(manager, result)
        finished = manager.finish_instance(instance, result, celery_result)
        if finished and celery_result is not None:
            # Stored with the finish: the result backend need not store it again.
            self.request.ignore_result = True
        return result

    def _fail(self, manager: TriggerManager, instance: TaskInstance, exc: BaseException) -> None:
        """Record the instance as failed by ``exc``, and raise :class:`TaskInstanceFailed`.

        Logged at ERROR with the traceback, so that logging integrations
        (Sentry's, a worker's log) see the failure. Nothing is raised if the
        instance was no longer running (its outcome is then dropped).
        """
        summary = f"{type(exc).__name__}: {encoding.safe_str(exc)}"
        logger.error(
            "Task instance %s of session %s failed: %s",
            instance.name,
            manager.session_uid,
            summary,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        try:
            failed = _retrying(manager, lambda: manager.fail_instance(instance, exc))
        except Exception as error:
            # Last resort: a failure of text that is sure to be storable.
            logger.exception("Could not record the failure of task instance %s", instance.name)
            fallback = UnstorableOutcome(
                f"the failure of {instance.name!r} ({summary[:1000]}) could not be stored: "
                f"{type(error).__name__}: {encoding.safe_str(error)[:1000]}"
            )
            failed = manager.fail_instance(instance, fallback)
        if failed is not None:
            raise TaskInstanceFailed(
                f"task instance {instance.name!r} of session {manager.session_uid!r} "
                f"failed: {summary[:2000]}"
            ) from None

    def _celery_result(self, manager: TriggerManager, result: dict[str, Any]) -> Upsert | None:
        """The row the database result backend would store for this run, or ``None``.

        Written by the instance's finish, in the transaction that also fires
        its cascade, the row needs no transaction of its own, and it exists
        exactly when the instance is finished. ``None``, and Celery stores
        the result itself as usual, unless this is a worker's run whose
        result is kept, by django-celery-results' backend, in the session's
        database.

        The backend writes its rows where the routers send ``TaskResult``
        when asked with no hint (it passes none): that, and not the
        session's database, is where every row of this task (started,
        failed, retried) goes, and where ``TaskInstance.task_result`` reads
        it. So the finish writes the row only when that database is the
        session's; with sessions spread over several databases, the other
        sessions' results are stored by the backend, after the task.
        """
        if not apps.is_installed("django_celery_results"):
            return None
        from django_celery_results.backends.database import DatabaseBackend

        backend, request = self.backend, self.request
        if (
            not isinstance(backend, DatabaseBackend)
            or not request.id
            or request.called_directly
            or request.is_eager
            or request.ignore_result
            or self.ignore_result
            # Not session_database(): the backend asks the routers with no hint.
            or router.db_for_write(backend.TaskModel) != manager.database
        ):
            return None
        content_type, content_encoding, encoded = backend.encode_content(result)
        meta = {
            **(getattr(request, "meta", None) or {}),
            "children": backend.current_task_children(request),
        }
        row = backend.TaskModel(
            task_id=request.id,
            status=states.SUCCESS,
            result=encoded,
            content_type=content_type,
            content_encoding=content_encoding,
            meta=backend.encode_content(meta)[2],
            **backend._get_extended_properties(request, None),
        )
        # As the backend's store_result replaces a row (of the STARTED state, say).
        return Upsert(row, key="task_id", kept=("date_created", "date_started"))

    def _check_result(self, instance_name: str, returned: Any) -> dict[str, Any]:
        return encoding.normalize_mapping(
            returned,
            what=f"what {type(self).__name__}._run returned for {instance_name!r} "
            f"(the cascade's kwargs, or None)",
        )

    def skip(self, metadata: Mapping[str, Any] | None = None) -> SkipTask:
        """``raise self.skip()`` ends the instance as ``skipped``, without a cascade."""
        return SkipTask(metadata)

    def retry(  # type: ignore[override]
        self,
        exc: BaseException | None = None,
        cooldown: float | None = None,
        replacement_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> RetryTask:
        """``raise self.retry(...)`` fails this instance and schedules a clone of it.

        The clone starts after ``cooldown`` seconds, with each trigger named in
        ``replacement_kwargs`` given those kwargs. Past ``max_retries`` this
        raises :class:`MaxRetriesExceeded` instead.
        """
        context = _current_context.get(None)
        if context is None:
            raise RuntimeError("retry() can only be called while a trigger task is running")
        retries = context.task_instance.retries
        if retries >= self.max_retries:
            raise with_context(
                MaxRetriesExceeded(
                    f"{context.instance_name!r} was already retried {retries} time(s); "
                    f"{type(self).__name__}.max_retries is {self.max_retries}"
                ),
                {"max_retries": self.max_retries, "retries": retries},
            ) from exc
        check_cooldown(cooldown)
        return RetryTask(exc, cooldown, replacement_kwargs, metadata)


registry.register_trigger_task_class(TriggerTask)


#: How many times, in all, a worker tries to write how a run ended when the
#: database rolled the write back to break a deadlock (or lost the connection).
WRITE_ATTEMPTS = 4


def _retrying(manager: TriggerManager, write: Callable[[], T]) -> T:
    """``write()``, tried again after an ``OperationalError`` that rolled it back.

    Each of the manager's writes is a transaction of its own, so trying it
    again is safe; inside a transaction of the caller's, nothing is retried.
    """
    connection = connections[manager.database]
    attempt = 1
    while True:
        try:
            return write()
        except OperationalError:
            if attempt == WRITE_ATTEMPTS or connection.in_atomic_block:
                raise
            logger.warning(
                "Writing the outcome of a task of session %s failed (attempt %d of %d); "
                "trying again",
                manager.session_uid,
                attempt,
                WRITE_ATTEMPTS,
                exc_info=True,
            )
            connection.close_if_unusable_or_obsolete()
            time.sleep(0.05 * attempt)
            attempt += 1
