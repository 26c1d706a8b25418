"""The examples of the Tracing page."""

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from django_triggers.models import FiredTrigger


# [provider]
def tracer_provider(exporter: SpanExporter, service: str) -> TracerProvider:
    """A tracer provider sending its spans to ``exporter`` in batches.

    Set it once per process: ``trace.set_tracer_provider(tracer_provider(...))``.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


# [/provider]


# [trace-of-a-fire]
TRACE_UI = "https://tracing.example.com/trace/{trace_id}"


def trace_links(session_uid: str) -> list[tuple[str, str]]:
    """``(trigger, URL of its trace)`` of each traced fire of a session, in order."""
    links = []
    fires = FiredTrigger.objects.filter(session__uid=session_uid).order_by("id")
    for trigger_name, context in fires.values_list("trigger_name", "trace_context"):
        if "traceparent" in context:
            # W3C traceparent: version-trace id-span id-flags
            trace_id = context["traceparent"].split("-")[1]
            links.append((trigger_name, TRACE_UI.format(trace_id=trace_id)))
    return links


# [/trace-of-a-fire]


def current_trace_id() -> str:
    """The trace id of the current span, as the trace links show it."""
    return f"{trace.get_current_span().get_span_context().trace_id:032x}"
