"""Spans for the tracing tests: kept in memory in the test process, written to a file by workers.

The tracing tests' Celery worker loads this module (``celery worker
--include``); with ``TRIGGERS_TEST_SPANS_FILE`` in its environment, the
worker gets a tracer provider that appends each span, as it ends, to that
file, one JSON object a line (see :func:`describe`). The test process gets
one keeping its spans in memory from the :func:`traced` fixture.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SPANS_ENV = "TRIGGERS_TEST_SPANS_FILE"


def describe(span: ReadableSpan) -> dict[str, Any]:
    """What the tests check of a span, as JSON-able values (ids in hex)."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "links": [
            {
                "trace_id": f"{link.context.trace_id:032x}",
                "span_id": f"{link.context.span_id:016x}",
                "attributes": dict(link.attributes or {}),
            }
            for link in span.links
        ],
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
    }


class JsonLinesExporter(SpanExporter):
    """Appends each span to a file as a line of JSON (safe across processes)."""

    def __init__(self, path: str):
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(describe(span)) + "\n" for span in spans)
        with open(self.path, "a", encoding="utf-8") as output:
            output.write(lines)
        return SpanExportResult.SUCCESS


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


if os.environ.get(SPANS_ENV):
    _provider = TracerProvider()
    _provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ[SPANS_ENV])))
    trace.set_tracer_provider(_provider)


class Spans:
    """The spans this process has ended since the fixture started, described."""

    def __init__(self, exporter: InMemorySpanExporter, tracer: trace.Tracer):
        self.exporter = exporter
        self.tracer = tracer

    def all(self) -> list[dict[str, Any]]:
        return [describe(span) for span in self.exporter.get_finished_spans()]

    def named(self, name: str, **attributes: Any) -> list[dict[str, Any]]:
        return [
            span
            for span in self.all()
            if span["name"] == name
            and all(span["attributes"].get(key) == value for key, value in attributes.items())
        ]

    def one(self, name: str, **attributes: Any) -> dict[str, Any]:
        [span] = self.named(name, **attributes)
        return span


@pytest.fixture(name="traced")
def traced_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spans]:
    """A tracer provider for this test only, its spans kept in memory.

    Set as OpenTelemetry's global provider for the test (and no longer after).
    """
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield Spans(exporter, provider.get_tracer("tests"))
    provider.shutdown()
