"""Spans of fires and task runs, with OpenTelemetry (the ``otel`` extra).

Tracing is on when ``opentelemetry-api`` is installed and the process has a
tracer provider (``trace.set_tracer_provider``, or ``opentelemetry-instrument``
did it): then every fire is a ``triggers.fire`` span, stored with the fire
as its W3C trace context (``FiredTrigger.trace_context``), and every run of a
task instance is a ``triggers.run`` span, whose parent is the span current in
the worker if there is one (Celery's own instrumentation makes one), else the
fire that scheduled the instance, read from the database. A run links to the
fires that fed its ``after`` triggers, wherever and whenever they were made:
the latest fire of each of those triggers up to the scheduling fire (up to
the replay, for a replayed instance), read in one query as the run starts.

Off, this module costs a check of the tracer provider: no span, no query,
and fires store an empty trace context.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Max, Subquery

from django_triggers import __version__, signals
from django_triggers.models import FiredTrigger
from django_triggers.statuses import FAILED, RUNNING

try:
    from opentelemetry import trace
    from opentelemetry.trace import Link, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - the otel extra is not installed
    OTEL_INSTALLED = False
else:
    OTEL_INSTALLED = True
    _PROPAGATOR = TraceContextTextMapPropagator()
    #: What ``trace.get_tracer_provider()`` returns while no provider is set.
    _NO_PROVIDER = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from django_triggers.models import TaskInstance

#: The instrumentation scope of the spans.
TRACER_NAME = "django_triggers"

#: Attributes of the spans.
SESSION_UID = "triggers.session_uid"
TRIGGER_NAME = "triggers.trigger_name"
SOURCE = "triggers.source"
TASK_NAME = "triggers.task_name"
INSTANCE_NAME = "triggers.instance_name"
INSTANCE_STATUS = "triggers.instance_status"
FIRE_ID = "triggers.fire_id"

_tracer_of: tuple[object, Tracer] | None = None


def enabled() -> bool:
    """Whether OpenTelemetry is installed and a tracer provider is set."""
    return OTEL_INSTALLED and not isinstance(trace.get_tracer_provider(), _NO_PROVIDER)


def _tracer() -> Tracer:
    global _tracer_of
    provider = trace.get_tracer_provider()
    if _tracer_of is None or _tracer_of[0] is not provider:
        _tracer_of = (provider, trace.get_tracer(TRACER_NAME, __version__, provider))
    return _tracer_of[1]


@contextmanager
def fire_span(session_uid: str, trigger_name: str, source: str) -> Iterator[None]:
    """The span of one fire, current while it reads, writes and dispatches."""
    attributes = {SESSION_UID: session_uid, TRIGGER_NAME: trigger_name, SOURCE: source}
    with _tracer().start_as_current_span("triggers.fire", attributes=attributes):
        yield


def current_context() -> dict[str, str]:
    """The W3C trace context of the current span, to store with a fire; ``{}`` if none."""
    if not OTEL_INSTALLED or not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


@dataclass
class _Run:
    session_uid: str
    instance_name: str
    span: Span


_current_run: contextvars.ContextVar[_Run | None] = contextvars.ContextVar(
    "django_triggers_traced_run", default=None
)


@contextmanager
def run_span(session_uid: str, database: str, instance: TaskInstance) -> Iterator[None]:
    """The span of one run of ``instance``, just moved to ``running``, until it has ended."""
    fires = feeding_fires(database, instance)
    links = [
        Link(
            trace.get_current_span(_PROPAGATOR.extract(context)).get_span_context(),
            {FIRE_ID: fire_id, TRIGGER_NAME: trigger_name},
        )
        for fire_id, trigger_name, context in fires
        if context
    ]
    parent = None
    current = trace.get_current_span().get_span_context()
    if not current.is_valid and fires and instance.parent_id is None:
        # The latest of them is the fire that scheduled the instance.
        parent = _PROPAGATOR.extract(fires[-1][2] or {})
    attributes = {
        SESSION_UID: session_uid,
        TASK_NAME: instance.task_name,
        INSTANCE_NAME: instance.name,
        INSTANCE_STATUS: RUNNING,
    }
    with _tracer().start_as_current_span(
        "triggers.run", context=parent, links=links, attributes=attributes
    ) as span:
        token = _current_run.set(_Run(session_uid, instance.name, span))
        try:
            yield
        finally:
            _current_run.reset(token)


def feeding_fires(database: str, instance: TaskInstance) -> list[tuple[int, str, dict[str, str]]]:
    """``(id, trigger name, trace context)`` of the fires that fed the instance, by id.

    The latest fire of each of its task's ``after`` triggers up to the fire
    that scheduled it: the first fire of one of them since it was scheduled.
    For a replayed instance (scheduled by no fire), up to its replay. One query.
    """
    stamped = instance.metadata.get("timestamps", {}).get("scheduled")
    if not stamped:
        return []
    scheduled_at = datetime.fromisoformat(stamped)
    fires = FiredTrigger.objects.using(database).filter(
        session_id=instance.session_id, trigger_name__in=instance.config.after
    )
    if instance.parent_id is None:
        # A fire's row is stamped a moment after the instances it scheduled.
        scheduling = fires.filter(fired_at__gte=scheduled_at).order_by("id").values("id")[:1]
        fed = fires.filter(id__lte=Subquery(scheduling))
    else:
        fed = fires.filter(fired_at__lte=scheduled_at)
    latest = fed.order_by().values("trigger_name").annotate(latest=Max("id")).values("latest")
    return list(
        FiredTrigger.objects.using(database)
        .filter(id__in=Subquery(latest))
        .order_by("id")
        .values_list("id", "trigger_name", "trace_context")
    )


def _note_status(
    sender: Any, session_uid: str, instance_name: str, new_status: str, **kwargs: Any
) -> None:
    """Receiver of ``instance_status_changed``: the status the traced run ended with."""
    run = _current_run.get()
    if run is None or run.session_uid != session_uid or run.instance_name != instance_name:
        return
    run.span.set_attribute(INSTANCE_STATUS, new_status)
    if new_status == FAILED:
        run.span.set_status(Status(StatusCode.ERROR, f"task instance {instance_name} failed"))


def connect() -> None:
    """Connect the receiver the run spans need (``AppConfig.ready`` does)."""
    if OTEL_INSTALLED:
        signals.instance_status_changed.connect(
            _note_status, dispatch_uid="django_triggers.tracing"
        )
