"""Trigger tasks used by the test suite, registered with the example project's Celery app."""

import logging
import os
import time
from typing import Any

import filters as f

from django_triggers.exceptions import with_context
from django_triggers.task import TaskContext, TriggerTask
from example_project.celery import app


class Echo(TriggerTask):
    """Return the kwargs it was given, so tests can see exactly what arrived."""

    name = "tests.Echo"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        return {"received": context.trigger_kwargs}


class ReturnNothing(TriggerTask):
    name = "tests.ReturnNothing"

    def _run(self, context: TaskContext) -> None:
        return None


class Fail(TriggerTask):
    """Raise an exception carrying context."""

    name = "tests.Fail"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        raise with_context(ValueError("the data is wrong"), {"row": 7, "field": "birthday"})


class FailUntilReplayed(TriggerTask):
    """Fail on a first attempt, succeed on replays."""

    name = "tests.FailUntilReplayed"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        if context.task_instance.parent_id is None:
            raise RuntimeError("first attempt fails")
        return {"received": context.trigger_kwargs}


class SkipSelf(TriggerTask):
    name = "tests.SkipSelf"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        raise self.skip(metadata={"reason": "nothing to do"})


class RetryAlways(TriggerTask):
    """Retry every time; the chain ends in MaxRetriesExceeded."""

    name = "tests.RetryAlways"
    max_retries = 2

    def _run(self, context: TaskContext) -> dict[str, Any]:
        try:
            raise ConnectionError("service unavailable")
        except ConnectionError as exc:
            raise self.retry(exc=exc, metadata={"attempt": context.task_instance.retries}) from exc


class RetryWithReplacement(TriggerTask):
    """Retry once with new kwargs for trigger ``start``, then return what it got."""

    name = "tests.RetryWithReplacement"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        if context.task_instance.retries == 0:
            raise self.retry(cooldown=0.05, replacement_kwargs={"start": {"attempt": "second"}})
        return {"received": context.trigger_kwargs}


class ReturnList(TriggerTask):
    name = "tests.ReturnList"

    def _run(self, context: TaskContext) -> Any:
        return [1, 2, 3]


class ReturnUnencodable(TriggerTask):
    name = "tests.ReturnUnencodable"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        return {"value": {"nested": object()}}


class LogAtLevels(TriggerTask):
    """Log one record per level named in the ``levels`` kwarg of trigger ``start``."""

    name = "tests.LogAtLevels"

    def _run(self, context: TaskContext) -> None:
        levels = context.trigger_kwargs["start"].get("levels", [])
        with context.get_logger_context(logger="tests.tasks", context={"task": "log"}) as log:
            for level in levels:
                log.log(logging.getLevelName(level), "record at %s", level)


class RaiseInsideLoggerContext(TriggerTask):
    name = "tests.RaiseInsideLoggerContext"

    def _run(self, context: TaskContext) -> None:
        with context.get_logger_context(logger="tests.tasks", context={"task": "raise"}):
            raise with_context(KeyError("missing"), {"key": "subjectId"})


class Filtered(TriggerTask):
    """Validate trigger ``start``: ``count`` an int, ``when`` a date."""

    name = "tests.Filtered"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        cleaned = context.filter_kwargs(
            {"start": {"count": f.Required | f.Int, "when": f.Date}},
        )
        start = cleaned["start"]
        return {"count": start["count"], "when": start["when"]}


class FireAnother(TriggerTask):
    """Fire ``extra`` through the context's manager, and report the manager's class."""

    name = "tests.FireAnother"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        context.manager.fire("extra", {"from": context.instance_name})
        return {"manager_class": type(context.manager).__qualname__}


@app.task(name="tests.plain_celery_task")
def plain_celery_task() -> None:
    """A Celery task that is not a TriggerTask: configuration must refuse it."""


class LogWithCallContext(TriggerTask):
    """Log one warning whose per-call context adds to the logger context."""

    name = "tests.LogWithCallContext"

    def _run(self, context: TaskContext) -> None:
        with context.get_logger_context(logger="tests.tasks", context={"task": "call"}) as log:
            log.warning("with call context", extra={"context": {"row": 3}})


class RetryAtDefaultLimit(TriggerTask):
    """Retry every time, with the default ``max_retries``."""

    name = "tests.RetryAtDefaultLimit"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        raise self.retry()


class SlowEcho(TriggerTask):
    """Take a moment, then return the kwargs it was given."""

    name = "tests.SlowEcho"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        time.sleep(0.2)
        return {"received": context.trigger_kwargs}


class DescribeContext(TriggerTask):
    """Return what the context says about the session and the instance."""

    name = "tests.DescribeContext"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        return {
            "session_uid": context.session_uid,
            "instance_name": context.instance_name,
            "task_instance": [context.task_instance.name, context.task_instance.status],
        }


class RetryOnceAfterCooldown(TriggerTask):
    """Retry a first attempt after a one-second cooldown; the retry returns what it got."""

    name = "tests.RetryOnceAfterCooldown"
    cooldown = 1.0

    def _run(self, context: TaskContext) -> dict[str, Any]:
        if context.task_instance.retries == 0:
            raise self.retry(exc=ConnectionError("try again later"), cooldown=self.cooldown)
        return {"received": context.trigger_kwargs}


def run_counter_key(session_uid: str, instance_name: str) -> str:
    """The Redis key under which ``CountRuns`` counts the runs of one instance."""
    return f"django-triggers-tests:runs:{session_uid}:{instance_name}"


class CountRuns(TriggerTask):
    """Count each run of its body in Redis (``TRIGGERS_TEST_REDIS_URL``); return the count."""

    name = "tests.CountRuns"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        import redis

        url = os.environ.get("TRIGGERS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
        with redis.Redis.from_url(url) as client:
            runs = client.incr(run_counter_key(context.session_uid, context.instance_name))
        return {"runs": runs}


class ReportDatabaseBackend(TriggerTask):
    """Return the id of the database connection its worker uses (a server's own id)."""

    name = "tests.ReportDatabaseBackend"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        from django.db import connection

        query = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
        with connection.cursor() as cursor:
            cursor.execute(query[connection.vendor])
            (pid,) = cursor.fetchone()
        return {"backend_pid": pid}


def block_key(session_uid: str, instance_name: str) -> str:
    """Redis key prefix of one ``BlockUntilReleased`` instance."""
    return f"django-triggers-tests:block:{session_uid}:{instance_name}"


class BlockUntilReleased(TriggerTask):
    """Push its process id to ``<key>:started``, then wait for an item in ``<key>:release``."""

    name = "tests.BlockUntilReleased"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        import redis

        url = os.environ.get("TRIGGERS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
        key = block_key(context.session_uid, context.instance_name)
        with redis.Redis.from_url(url) as client:
            client.rpush(f"{key}:started", os.getpid())
            if client.blpop([f"{key}:release"], timeout=120) is None:
                raise TimeoutError(f"{context.instance_name} was never released")
        return {"pid": os.getpid()}


class RetryWithUnknownTrigger(TriggerTask):
    """Retry once with replacement kwargs for a trigger it does not wait for."""

    name = "tests.RetryWithUnknownTrigger"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        if context.task_instance.retries == 0:
            raise self.retry(replacement_kwargs={"nope": {"x": 1}})
        return {"received": context.trigger_kwargs}


def nested(depth: int) -> Any:
    """A list nested ``depth`` levels deep."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for this exception")


#: How EndBadly ends, by the ``case`` of its ``start`` kwargs: each is an
#: outcome a database cannot store as given, or one that once escaped.
BAD_ENDINGS: dict[str, Any] = {
    "nul_in_result": lambda task: {"text": "a\x00b"},
    "surrogate_in_result": lambda task: {"text": "\ud800"},
    "deep_result": lambda task: {"tree": nested(5000)},
    "nul_in_message": lambda task: ValueError("bad\x00message"),
    "surrogate_in_message": lambda task: ValueError("bad \udc80 message"),
    "nul_in_context": lambda task: with_context(ValueError("context"), {"value": "a\x00b"}),
    "deep_context": lambda task: with_context(ValueError("context"), {"tree": nested(5000)}),
    "unprintable_exception": lambda task: Unprintable(),
    "system_exit": lambda task: SystemExit(3),
    "nul_in_skip_metadata": lambda task: task.skip(metadata={"why": "a\x00b"}),
    "nul_in_retry_metadata": lambda task: task.retry(metadata={"why": "a\x00b"}),
    "nul_in_retry_kwargs": lambda task: task.retry(replacement_kwargs={"start": {"a": "\x00"}}),
}


class EndBadly(TriggerTask):
    """End as ``BAD_ENDINGS[case]`` says: return it, or raise it if it is an exception."""

    name = "tests.EndBadly"

    def _run(self, context: TaskContext) -> Any:
        ending = BAD_ENDINGS[context.trigger_kwargs["start"]["case"]](self)
        if isinstance(ending, BaseException):
            raise ending
        return ending


for task_class in (
    RetryWithUnknownTrigger,
    EndBadly,
    BlockUntilReleased,
    Echo,
    ReturnNothing,
    Fail,
    FailUntilReplayed,
    SkipSelf,
    RetryAlways,
    RetryWithReplacement,
    ReturnList,
    ReturnUnencodable,
    LogAtLevels,
    RaiseInsideLoggerContext,
    Filtered,
    FireAnother,
    LogWithCallContext,
    RetryAtDefaultLimit,
    SlowEcho,
    DescribeContext,
    RetryOnceAfterCooldown,
    CountRuns,
    ReportDatabaseBackend,
):
    app.register_task(task_class())
