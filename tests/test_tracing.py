"""OpenTelemetry spans of fires and runs, kept in memory in this process.

Tasks run as a worker runs them (``TriggerTask.run``), in this process:
``tests/test_tracing_worker.py`` runs them on a real Celery worker.
"""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_triggers import tracing
from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskInstance
from example_project.celery import app as celery_app
from tests.helpers import RecordingRunner
from tests.otel_export import Spans, traced_fixture  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)

ECHO = "tests.Echo"


@pytest.fixture(autouse=True)
def _fresh_runner():
    RecordingRunner.dispatched.clear()
    yield
    RecordingRunner.dispatched.clear()


def configure(uid: str, run: str = ECHO) -> TriggerManager:
    """``t_echo`` after ``profile`` and ``consent``, then ``t_next`` after ``t_echo``."""
    manager = TriggerManager(uid)
    manager.update_configuration(
        {
            "t_echo": {"after": ["profile", "consent"], "run": run, "using": "recording"},
            "t_next": {"after": ["t_echo"], "run": ECHO, "using": "recording"},
        }
    )
    return manager


def run_in_worker(manager: TriggerManager, name: str, task: str = ECHO) -> Any:
    return celery_app.tasks[task].run(session_uid=manager.session_uid, instance_name=name)


def context_of(manager: TriggerManager, trigger_name: str) -> dict[str, str]:
    fired = FiredTrigger.objects.filter(session=manager.session, trigger_name=trigger_name)
    return fired.latest("id").trace_context


def traceparent(span: dict[str, Any]) -> dict[str, str]:
    """The stored context of a fire whose span is ``span``, its trace flags aside."""
    return {"traceparent": f"00-{span['trace_id']}-{span['span_id']}"}


def stored(manager: TriggerManager, trigger_name: str) -> dict[str, str]:
    """The stored context of the trigger's latest fire, its trace flags aside."""
    return {key: value[:-3] for key, value in context_of(manager, trigger_name).items()}


def link_to(span: dict[str, Any], fire_id: int, trigger_name: str) -> dict[str, Any]:
    return {
        "trace_id": span["trace_id"],
        "span_id": span["span_id"],
        "attributes": {tracing.FIRE_ID: fire_id, tracing.TRIGGER_NAME: trigger_name},
    }


def test_a_run_is_the_child_of_its_fire_and_links_to_every_fire_that_fed_it(traced: Spans):
    manager = configure("tracing-links")
    with traced.tracer.start_as_current_span("request 1"):
        manager.fire("profile", {"name": "Ada"})
    with traced.tracer.start_as_current_span("request 2") as request:
        manager.fire("consent", {"given": True})
    profile = traced.one("triggers.fire", **{tracing.TRIGGER_NAME: "profile"})
    consent = traced.one("triggers.fire", **{tracing.TRIGGER_NAME: "consent"})
    assert consent["trace_id"] == f"{request.get_span_context().trace_id:032x}"
    assert profile["trace_id"] != consent["trace_id"]  # two requests, two traces
    assert consent["attributes"] == {
        tracing.SESSION_UID: "tracing-links",
        tracing.TRIGGER_NAME: "consent",
        tracing.SOURCE: FiredTrigger.APPLICATION,
    }
    # Each fire is stored with its span's context.
    assert stored(manager, "profile") == traceparent(profile)
    assert stored(manager, "consent") == traceparent(consent)
    assert RecordingRunner.dispatched == ["t_echo#0"]

    run_in_worker(manager, "t_echo#0")  # no span is current: as in a worker

    run = traced.one("triggers.run")
    assert (run["trace_id"], run["parent_id"]) == (consent["trace_id"], consent["span_id"])
    fire_ids = {
        name: FiredTrigger.objects.get(session=manager.session, trigger_name=name).pk
        for name in ("profile", "consent", "t_echo")
    }
    assert run["links"] == [
        link_to(profile, fire_ids["profile"], "profile"),
        link_to(consent, fire_ids["consent"], "consent"),
    ]
    assert run["attributes"] == {
        tracing.SESSION_UID: "tracing-links",
        tracing.TASK_NAME: "t_echo",
        tracing.INSTANCE_NAME: "t_echo#0",
        tracing.INSTANCE_STATUS: TaskInstance.FINISHED,
    }
    assert run["status"] == "UNSET"
    # The cascade's fire is a child of the run, and stored with its context.
    cascade = traced.one("triggers.fire", **{tracing.TRIGGER_NAME: "t_echo"})
    assert cascade["parent_id"] == run["span_id"]
    assert cascade["attributes"][tracing.SOURCE] == FiredTrigger.CASCADE
    assert stored(manager, "t_echo") == traceparent(cascade)

    run_in_worker(manager, "t_next#0")
    next_run = traced.one("triggers.run", **{tracing.INSTANCE_NAME: "t_next#0"})
    assert (next_run["trace_id"], next_run["parent_id"]) == (
        consent["trace_id"],
        cascade["span_id"],
    )
    assert next_run["links"] == [link_to(cascade, fire_ids["t_echo"], "t_echo")]


def test_a_run_links_to_the_latest_fires_up_to_the_one_that_scheduled_it(traced: Spans):
    manager = configure("tracing-latest")
    manager.fire("profile", {"n": 1})
    manager.fire("profile", {"n": 2})
    manager.fire("consent")
    manager.fire("profile", {"n": 3})  # after the instance was scheduled: not a feeder
    second, consent = (
        traced.all()[1],
        traced.one("triggers.fire", **{tracing.TRIGGER_NAME: "consent"}),
    )

    run_in_worker(manager, "t_echo#0")

    run = traced.one("triggers.run")
    assert [link["span_id"] for link in run["links"]] == [second["span_id"], consent["span_id"]]


def test_a_failed_run_has_the_error_status_and_its_replay_links_to_the_same_fires(
    traced: Spans,
):
    manager = configure("tracing-failed", run="tests.FailUntilReplayed")
    manager.fire("profile")
    manager.fire("consent")

    run_in_worker(manager, "t_echo#0", "tests.FailUntilReplayed")

    failed = traced.one("triggers.run")
    assert failed["status"] == "ERROR"
    assert failed["attributes"][tracing.INSTANCE_STATUS] == TaskInstance.FAILED

    with traced.tracer.start_as_current_span("admin request") as admin:
        manager.replay_failed_instance("t_echo#0")
    run_in_worker(manager, "t_echo#1", "tests.FailUntilReplayed")

    replayed = traced.one("triggers.run", **{tracing.INSTANCE_NAME: "t_echo#1"})
    assert replayed["status"] == "UNSET"
    assert replayed["attributes"][tracing.INSTANCE_STATUS] == TaskInstance.FINISHED
    assert replayed["links"] == failed["links"] and len(failed["links"]) == 2
    # Scheduled by no fire: a trace of its own, unless a span is current.
    assert replayed["parent_id"] is None
    assert replayed["trace_id"] != f"{admin.get_span_context().trace_id:032x}"


def test_a_run_inside_a_span_is_its_child(traced: Spans):
    manager = configure("tracing-current")
    manager.fire("profile")
    manager.fire("consent")

    with traced.tracer.start_as_current_span("celery run") as current:
        run_in_worker(manager, "t_echo#0")

    run = traced.one("triggers.run")
    assert run["parent_id"] == f"{current.get_span_context().span_id:016x}"
    assert len(run["links"]) == 2


def test_tracing_reads_the_feeding_fires_in_one_query_and_only_when_on(traced: Spans, monkeypatch):
    def statements_of_a_run(uid: str) -> int:
        manager = configure(uid)
        manager.fire("profile")
        manager.fire("consent")
        with CaptureQueriesContext(connection) as captured:
            run_in_worker(manager, "t_echo#0")
        return len(captured.captured_queries)

    traced_run = statements_of_a_run("tracing-on")
    monkeypatch.setattr(tracing.trace, "_TRACER_PROVIDER", None)
    assert not tracing.enabled()
    untraced_run = statements_of_a_run("tracing-off")

    assert traced_run == untraced_run + 1
    assert context_of(TriggerManager("tracing-off"), "consent") == {}
    assert len(traced.named("triggers.run")) == 1


def test_without_a_tracer_provider_fires_store_no_context():
    assert not tracing.enabled()
    manager = configure("tracing-none")
    manager.fire("profile")

    assert context_of(manager, "profile") == {}
