"""The Celery result of a trigger task that finished its instance: stored with the finish.

A worker's run is traced here as the worker traces it (``celery.app.trace``),
result backend included, without a broker: the result row of a finished
instance is written by the finish's own transaction, and the backend does
not store it a second time.
"""

import uuid
from typing import Any

import pytest
from celery import states
from celery.app.trace import build_tracer
from celery.result import AsyncResult
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_results.models import TaskResult

from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance
from django_triggers.task import TaskContext, TriggerTask
from example_project.celery import app as celery_app
from tests.helpers import RecordingRunner

ECHO = "tests.Echo"
WORKER = "results-worker@host"


class FailedMeanwhile(TriggerTask):
    """Returns a result after its instance stopped being ``running`` (failed as stuck, say)."""

    name = "test_task_results.FailedMeanwhile"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        TaskInstance.objects.filter(pk=context.task_instance.pk).update(status=TaskInstance.FAILED)
        return {"late": True}


celery_app.register_task(FailedMeanwhile())


@pytest.fixture(autouse=True)
def _fresh_runner():
    RecordingRunner.dispatched.clear()
    yield
    RecordingRunner.dispatched.clear()


def scheduled_instance(run: str = ECHO) -> tuple[TriggerManager, TaskInstance]:
    """``t_a`` (scheduled, handed to a runner that only records it), then ``t_b`` after it."""
    manager = TriggerManager(f"task-results-{uuid.uuid4().hex}")
    manager.update_configuration(
        {
            "t_a": {"after": ["start"], "run": run, "using": RecordingRunner.name},
            "t_b": {"after": ["t_a"], "run": ECHO, "using": RecordingRunner.name},
        }
    )
    manager.fire("start", {"n": 1})
    return manager, manager.get_instance("t_a#0")


def run_as_worker(manager: TriggerManager, instance: TaskInstance, **request: Any) -> None:
    """Run the instance's Celery task as a worker does, with the message's request."""
    task = celery_app.tasks[instance.config.run]
    kwargs = {"session_uid": manager.session_uid, "instance_name": instance.name}
    message = {
        "id": instance.celery_task_id,
        "task": task.name,
        "hostname": WORKER,
        "argsrepr": "()",
        "kwargsrepr": repr(kwargs),
        "delivery_info": {},
        **request,
    }
    trace = build_tracer(task.name, task, app=celery_app, hostname=WORKER, propagate=True)
    trace(instance.celery_task_id, [], kwargs, message)


def test_a_finished_instance_has_its_celery_result_stored(transactional_db):
    manager, instance = scheduled_instance()

    run_as_worker(manager, instance)

    finished = manager.get_instance("t_a#0")
    assert finished.status == TaskInstance.FINISHED
    row = TaskResult.objects.get(task_id=instance.celery_task_id)
    assert row.status == states.SUCCESS
    assert row.task_name == ECHO
    assert row.worker == WORKER
    assert AsyncResult(instance.celery_task_id, app=celery_app).result == finished.result
    assert finished.task_result.pk == row.pk


@pytest.mark.postgres
def test_on_postgresql_a_worker_run_is_two_statements_its_celery_result_included(
    transactional_db,
):
    manager, instance = scheduled_instance()

    with CaptureQueriesContext(connection) as captured:
        run_as_worker(manager, instance)

    assert len(captured.captured_queries) == 2  # the start, then the finish
    assert manager.get_instance("t_a#0").status == TaskInstance.FINISHED
    assert TaskResult.objects.get(task_id=instance.celery_task_id).status == states.SUCCESS
    assert manager.get_instance("t_b#0").status == TaskInstance.SCHEDULED


def test_the_result_replaces_the_started_row_and_keeps_when_it_started(transactional_db):
    manager, instance = scheduled_instance()
    started_at = timezone.now()
    started = TaskResult.objects.create(
        task_id=instance.celery_task_id, status=states.STARTED, date_started=started_at
    )

    run_as_worker(manager, instance)

    row = TaskResult.objects.get(task_id=instance.celery_task_id)
    assert row.pk == started.pk
    assert row.status == states.SUCCESS
    assert row.date_started == started_at
    assert row.date_created == started.date_created
    assert AsyncResult(instance.celery_task_id, app=celery_app).result == (
        manager.get_instance("t_a#0").result
    )


def test_a_task_whose_result_is_ignored_stores_no_result(transactional_db):
    manager, instance = scheduled_instance()

    run_as_worker(manager, instance, ignore_result=True)

    assert manager.get_instance("t_a#0").status == TaskInstance.FINISHED
    assert not TaskResult.objects.filter(task_id=instance.celery_task_id).exists()


def test_a_result_returned_after_the_instance_stopped_running_is_stored_by_celery(
    transactional_db,
):
    manager, instance = scheduled_instance(run=FailedMeanwhile.name)

    run_as_worker(manager, instance)

    failed = manager.get_instance("t_a#0")
    assert failed.status == TaskInstance.FAILED
    assert failed.result is None
    assert AsyncResult(instance.celery_task_id, app=celery_app).result == {"late": True}
    assert not manager.instances_of_task("t_b")
