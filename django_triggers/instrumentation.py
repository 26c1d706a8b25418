"""What the manager and the worker tell the optional integrations.

Fires and task runs go through :func:`firing` and :func:`running`, which
open the spans of :mod:`django_triggers.tracing` and time fires for
:mod:`django_triggers.metrics`. With neither OpenTelemetry nor
prometheus_client installed, they hand back a context manager that does
nothing.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from django_triggers import metrics, tracing

if TYPE_CHECKING:
    from django_triggers.models import TaskInstance

#: Set while a fire runs: the attempts of one fire (without the session's
#: lock, then under it) and the cascade inside a finish are one fire.
_in_fire: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "django_triggers_in_fire", default=False
)

_ACTIVE = tracing.OTEL_INSTALLED or metrics.PROMETHEUS_INSTALLED

#: The W3C trace context of the current span, stored with a fire; ``{}`` when untraced.
trace_context = tracing.current_context


def firing(session_uid: str, trigger_name: str, source: str) -> AbstractContextManager[None]:
    """Around one fire, from the call to its return."""
    if not _ACTIVE or _in_fire.get():
        return nullcontext()
    return _firing(session_uid, trigger_name, source)


@contextmanager
def _firing(session_uid: str, trigger_name: str, source: str) -> Iterator[None]:
    token = _in_fire.set(True)
    started = time.perf_counter()
    try:
        if tracing.enabled():
            with tracing.fire_span(session_uid, trigger_name, source):
                yield
        else:
            yield
    finally:
        _in_fire.reset(token)
        metrics.observe_fire(source, time.perf_counter() - started)


def running(
    session_uid: str, database: str, instance: TaskInstance
) -> AbstractContextManager[None]:
    """Around one run of a task instance, from its start to the record of its end."""
    if not _ACTIVE:
        return nullcontext()
    return _running(session_uid, database, instance)


@contextmanager
def _running(session_uid: str, database: str, instance: TaskInstance) -> Iterator[None]:
    # A run inside a fire (a runner running it inline) fires its cascade on its own.
    token = _in_fire.set(False)
    try:
        if tracing.enabled():
            with tracing.run_span(session_uid, database, instance):
                yield
        else:
            yield
    finally:
        _in_fire.reset(token)


def dispatch_failed(runner: str) -> None:
    """A runner refused a scheduled instance."""
    metrics.count_dispatch_error(runner)
