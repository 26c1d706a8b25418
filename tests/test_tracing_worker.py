"""Traces through a real Celery worker: from a request's fire to the last cascade.

The test process traces its fires in memory (``traced``); the worker, a
``celery worker`` subprocess, loads ``tests.otel_export`` and writes its
spans to a file, which the tests read. Both share the test database, where
each fire's trace context is stored.
"""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from django_triggers import tracing
from django_triggers.models import FiredTrigger, TaskInstance
from django_triggers.recovery import recover
from django_triggers.runners import CeleryTaskRunner
from tests.celery_worker import (
    REDIS_BROKER_URL,
    CeleryWorker,
    new_manager,
    wait_for_status,
    wait_until,
    worker_for_test,
)
from tests.otel_export import SPANS_ENV, Spans, read_spans, traced_fixture  # noqa: F401

pytestmark = [pytest.mark.server_database, pytest.mark.django_db(transaction=True)]


class TracedWorker(CeleryWorker):
    """A solo worker exporting its spans to :attr:`spans_path`."""

    def __init__(self, log_dir: Path):
        super().__init__(REDIS_BROKER_URL, log_dir, include=("tests.tasks", "tests.otel_export"))
        self.spans_path = self.log_dir / f"{self.name}.spans.jsonl"

    def environment(self) -> dict[str, str]:
        return {**super().environment(), SPANS_ENV: str(self.spans_path)}

    def run_span(self, session_uid: str, instance_name: str) -> dict[str, Any]:
        """The worker's span of that run, once it has ended."""

        def found() -> dict[str, Any] | None:
            for span in read_spans(self.spans_path):
                attributes = span["attributes"]
                if span["name"] == "triggers.run" and (
                    attributes[tracing.SESSION_UID],
                    attributes[tracing.INSTANCE_NAME],
                ) == (session_uid, instance_name):
                    return span
            return None

        return wait_until(found, describe=self.log_tail)

    def fire_span(self, trigger_name: str, parent: dict[str, Any]) -> dict[str, Any]:
        [span] = [
            span
            for span in read_spans(self.spans_path)
            if span["name"] == "triggers.fire"
            and span["attributes"][tracing.TRIGGER_NAME] == trigger_name
            and span["parent_id"] == parent["span_id"]
        ]
        return span


@pytest.fixture(scope="module")
def traced_worker_process(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TracedWorker]:
    with TracedWorker(tmp_path_factory.mktemp("celery-traced")) as worker:
        yield worker


@pytest.fixture
def traced_worker(
    traced_worker_process: TracedWorker, transactional_db: None, settings: Any
) -> Iterator[TracedWorker]:
    with worker_for_test(traced_worker_process, settings) as worker:
        yield worker


def fire_ids(manager: Any) -> dict[str, int]:
    return dict(
        FiredTrigger.objects.filter(session=manager.session).values_list("trigger_name", "id")
    )


def test_one_trace_from_the_request_to_the_last_cascade(traced: Spans, traced_worker):
    manager = new_manager(
        {
            "t_a": {"after": ["start"], "run": "tests.Echo"},
            "t_b": {"after": ["t_a"], "run": "tests.Echo"},
        }
    )
    with traced.tracer.start_as_current_span("POST /orders/") as request:
        manager.fire("start", {"order": 42})
    wait_for_status(manager, "t_b#0", TaskInstance.FINISHED, traced_worker)

    trace_id = f"{request.get_span_context().trace_id:032x}"
    start = traced.one("triggers.fire", **{tracing.TRIGGER_NAME: "start"})
    run_a = traced_worker.run_span(manager.session_uid, "t_a#0")
    cascade_a = traced_worker.fire_span("t_a", parent=run_a)
    run_b = traced_worker.run_span(manager.session_uid, "t_b#0")
    cascade_b = traced_worker.fire_span("t_b", parent=run_b)
    ids = fire_ids(manager)

    assert start["parent_id"] == f"{request.get_span_context().span_id:016x}"
    assert [span["trace_id"] for span in (start, run_a, cascade_a, run_b, cascade_b)] == [
        trace_id
    ] * 5
    assert run_a["parent_id"] == start["span_id"]
    assert run_b["parent_id"] == cascade_a["span_id"]
    assert [link["span_id"] for link in run_a["links"]] == [start["span_id"]]
    assert run_b["links"] == [
        {
            "trace_id": trace_id,
            "span_id": cascade_a["span_id"],
            "attributes": {tracing.FIRE_ID: ids["t_a"], tracing.TRIGGER_NAME: "t_a"},
        }
    ]
    assert run_b["attributes"] == {
        tracing.SESSION_UID: manager.session_uid,
        tracing.TASK_NAME: "t_b",
        tracing.INSTANCE_NAME: "t_b#0",
        tracing.INSTANCE_STATUS: TaskInstance.FINISHED,
    }
    assert cascade_b["attributes"][tracing.SOURCE] == FiredTrigger.CASCADE


def test_a_run_resent_by_recovery_links_to_fires_of_other_requests(
    traced: Spans, traced_worker, monkeypatch
):
    manager = new_manager({"t_join": {"after": ["profile", "consent"], "run": "tests.Fail"}})
    with traced.tracer.start_as_current_span("POST /profile/"):
        manager.fire("profile", {"name": "Ada"})
    with monkeypatch.context() as broker_down:
        broker_down.setattr(CeleryTaskRunner, "run", _refuse)
        with traced.tracer.start_as_current_span("POST /consent/"):
            manager.fire("consent", {"given": True})
    assert manager.get_instance("t_join#0").dispatched_at is None  # never sent

    report = recover(redispatch_after=timedelta(0))  # later, in no request
    assert report.never_dispatched == [(manager.session_uid, "t_join#0")]
    wait_for_status(manager, "t_join#0", TaskInstance.FAILED, traced_worker, fail_fast=False)

    profile = traced.one("triggers.fire", **{tracing.TRIGGER_NAME: "profile"})
    consent = traced.one("triggers.fire", **{tracing.TRIGGER_NAME: "consent"})
    assert profile["trace_id"] != consent["trace_id"]
    run = traced_worker.run_span(manager.session_uid, "t_join#0")
    ids = fire_ids(manager)
    assert run["links"] == [
        {
            "trace_id": fire["trace_id"],
            "span_id": fire["span_id"],
            "attributes": {tracing.FIRE_ID: ids[name], tracing.TRIGGER_NAME: name},
        }
        for name, fire in (("profile", profile), ("consent", consent))
    ]
    assert (run["trace_id"], run["parent_id"]) == (consent["trace_id"], consent["span_id"])
    assert run["status"] == "ERROR"
    assert run["attributes"][tracing.INSTANCE_STATUS] == TaskInstance.FAILED


def _refuse(self: CeleryTaskRunner, manager: Any, task_instance: Any) -> None:
    raise ConnectionError("the broker is down")
