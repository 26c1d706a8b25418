"""The examples of the Tracing and Metrics pages, run against the real app."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import RequestFactory
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from django_triggers import tracing as triggers_tracing
from django_triggers.manager import TriggerManager
from django_triggers.runners import ThreadingTaskRunner
from docs.examples import metrics, tracing
from tests.helpers import database_env

ROOT = Path(__file__).resolve().parent.parent

db = pytest.mark.django_db(transaction=True)


@db
def test_a_provider_traces_fires_and_runs_and_fires_link_to_their_traces(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"
    exporter = InMemorySpanExporter()
    provider = tracing.tracer_provider(exporter, "questionnaire-web")
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)  # trace.set_tracer_provider(...)
    manager = TriggerManager("docs-tracing")
    manager.update_configuration(
        {"t_importSubject": {"after": ["firstPageReceived"], "run": "tests.Echo"}}
    )

    with provider.get_tracer("questionnaire").start_as_current_span("POST /pages/1/"):
        request_trace = tracing.current_trace_id()
        manager.fire("firstPageReceived", {"name": "Ada"})
    ThreadingTaskRunner.join_all(timeout=30)
    provider.force_flush()

    url = tracing.TRACE_UI.format(trace_id=request_trace)
    assert tracing.trace_links("docs-tracing") == [
        ("firstPageReceived", url),
        ("t_importSubject", url),  # the cascade, in the same trace
    ]
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert spans["triggers.run"].attributes[triggers_tracing.INSTANCE_STATUS] == "finished"
    assert spans["triggers.run"].resource.attributes["service.name"] == "questionnaire-web"
    provider.shutdown()


@db
def test_the_metrics_view_serves_this_process_or_every_process(
    settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"
    manager = TriggerManager("docs-metrics")
    manager.fire("questionnaireComplete")

    response = metrics.metrics_view(RequestFactory().get("/metrics"))
    assert response["Content-Type"].startswith("text/plain")
    assert 'triggers_fires_total{source="application"}' in response.content.decode()

    # Multiprocess mode: another process counts into the directory, the view adds it up.
    code = (
        "import django; django.setup()\n"
        "from django_triggers import metrics\n"
        "metrics.observe_fire('cascade', 0.02)\n"
        "metrics.count_dispatch_error('celery')\n"
    )
    environment = {
        **os.environ,
        **database_env(),
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, check=True)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    served = metrics.metrics_view(RequestFactory().get("/metrics")).content.decode()
    assert 'triggers_dispatch_errors_total{runner="celery"} 1.0' in served
    assert 'triggers_fire_duration_seconds_count{source="cascade"} 1.0' in served
