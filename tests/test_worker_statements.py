"""What a worker writes to run an instance: its start, its finish and cascade, nothing lost.

On PostgreSQL a start is one statement that also reads the session, and a
finish is written by its cascade's own write, without the session's lock.
"""

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_triggers import signals
from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskInstance, TriggerSession
from django_triggers.stores import PostgresStore
from example_project.celery import app as celery_app
from tests.helpers import RecordingRunner

ECHO = "tests.Echo"


@pytest.fixture(autouse=True)
def _fresh_runner():
    RecordingRunner.dispatched.clear()
    yield
    RecordingRunner.dispatched.clear()


@pytest.fixture
def chain(transactional_db):
    """``t_a`` after ``start`` (scheduled, not run), then ``t_b`` after ``t_a``."""
    manager = TriggerManager("worker-statements")
    manager.update_configuration(
        {
            "t_a": {"after": ["start"], "run": ECHO, "using": RecordingRunner.name},
            "t_b": {"after": ["t_a"], "run": ECHO, "using": RecordingRunner.name},
        }
    )
    manager.fire("start", {"n": 1})
    return manager


def run_in_worker(manager: TriggerManager, name: str):
    return celery_app.tasks[ECHO].run(session_uid=manager.session_uid, instance_name=name)


@pytest.mark.postgres
def test_a_worker_starts_an_instance_and_reads_its_session_in_one_statement(chain):
    with CaptureQueriesContext(connection) as captured:
        manager, instance = TriggerManager.start_for_worker(chain.session_uid, "t_a#0")

    assert len(captured.captured_queries) == 1
    assert instance.status == TaskInstance.RUNNING
    assert manager.session.pk == chain.session.pk
    assert chain.get_instance("t_a#0").status == TaskInstance.RUNNING


@pytest.mark.postgres
def test_a_finish_and_its_cascade_are_one_write_after_the_start_read_what_it_needs(chain):
    manager, instance = TriggerManager.start_for_worker(chain.session_uid, "t_a#0")

    with CaptureQueriesContext(connection) as captured:
        manager.finish_instance(instance, {"done": True})

    assert len(captured.captured_queries) == 1
    assert chain.get_instance("t_a#0").result == {"done": True}
    assert chain.get_instance("t_b#0").kwargs == {"t_a": {"done": True}}
    assert RecordingRunner.dispatched == ["t_a#0", "t_b#0"]


@pytest.mark.postgres
def test_a_cascade_reads_again_when_a_fire_changed_its_tasks_while_the_instance_ran(
    transactional_db,
):
    manager = TriggerManager("worker-statements-stale")
    manager.update_configuration(
        {
            "t_a": {"after": ["start"], "run": ECHO, "using": RecordingRunner.name},
            "t_b": {"after": ["t_a", "other"], "run": ECHO, "using": RecordingRunner.name},
        }
    )
    manager.fire("start")
    worker_manager, instance = TriggerManager.start_for_worker(manager.session_uid, "t_a#0")
    manager.fire("other", {"o": 1})  # creates t_b#0 after the start read t_b had none

    with CaptureQueriesContext(connection) as captured:
        worker_manager.finish_instance(instance, {"a": 1})

    assert len(captured.captured_queries) == 3  # the stale write, a read, the write
    assert list(manager.instances_of_task("t_b")) == [manager.get_instance("t_b#0")]
    t_b = manager.get_instance("t_b#0")
    assert t_b.status == TaskInstance.SCHEDULED
    assert t_b.kwargs == {"t_a": {"a": 1}, "other": {"o": 1}}


def test_a_finished_instance_keeps_the_metadata_its_task_wrote_while_running(chain):
    manager, instance = TriggerManager.start_for_worker(chain.session_uid, "t_a#0")
    chain.update_instance_metadata("t_a#0", {"progress": 100})

    manager.finish_instance(instance, {"done": True})

    finished = chain.get_instance("t_a#0")
    assert finished.status == TaskInstance.FINISHED
    assert finished.metadata["progress"] == 100
    assert set(finished.metadata["timestamps"]) >= {"scheduled", "running", "finished"}


@pytest.mark.postgres
def test_a_finish_whose_cascade_read_went_stale_is_written_under_the_lock(chain, monkeypatch):
    manager, instance = TriggerManager.start_for_worker(chain.session_uid, "t_a#0")
    real_write = PostgresStore.write_fire
    outcomes = []

    def interleaved_write(*args, **kwargs):
        if len(outcomes) < 2:
            # Before the write after the start's read, and before the write
            # after a read of its own, another change to the session (t_b
            # configured again) commits first.
            thread = threading.Thread(target=configure_t_b_again, args=(chain.session_uid,))
            thread.start()
            thread.join(timeout=30)
        outcomes.append(real_write(*args, **kwargs))
        return outcomes[-1]

    monkeypatch.setattr(PostgresStore, "write_fire", interleaved_write)

    manager.finish_instance(instance, {"done": True})

    assert outcomes == [False, False, True]
    assert chain.get_instance("t_a#0").status == TaskInstance.FINISHED
    assert RecordingRunner.dispatched == ["t_a#0", "t_b#0"]
    assert FiredTrigger.objects.filter(session=chain.session, trigger_name="t_a").count() == 1


def configure_t_b_again(session_uid: str) -> None:
    try:
        TriggerManager(session_uid).update_configuration(
            {"t_b": {"after": ["t_a"], "run": ECHO, "using": RecordingRunner.name}}
        )
    finally:
        connection.close()


def test_the_worker_fails_an_instance_whose_manager_class_cannot_be_imported(chain):
    TriggerSession.objects.filter(pk=chain.session.pk).update(manager_class="nowhere.Missing")

    returned = run_in_worker(chain, "t_a#0")

    assert returned is None
    failed = chain.get_instance("t_a#0")
    assert failed.status == TaskInstance.FAILED
    assert failed.metadata["exception_type"] == "django_triggers.exceptions.ManagerClassError"
    assert "nowhere.Missing" in failed.metadata["exception_message"]


def test_an_instance_failed_for_its_manager_class_signals_that_it_ran_then_failed(chain):
    TriggerSession.objects.filter(pk=chain.session.pk).update(manager_class="nowhere.Missing")
    changes = []

    def record(sender, instance_name, old_status, new_status, **kwargs):
        changes.append((instance_name, old_status, new_status))

    signals.instance_status_changed.connect(record)
    try:
        run_in_worker(chain, "t_a#0")
    finally:
        signals.instance_status_changed.disconnect(record)

    assert changes == [("t_a#0", "scheduled", "running"), ("t_a#0", "running", "failed")]


def test_a_message_for_a_deleted_session_runs_nothing(chain):
    uid = chain.session_uid
    TriggerSession.objects.filter(uid=uid).delete()

    assert celery_app.tasks[ECHO].run(session_uid=uid, instance_name="t_a#0") is None


def test_a_second_delivery_of_a_message_runs_nothing(chain):
    first = run_in_worker(chain, "t_a#0")

    second = run_in_worker(chain, "t_a#0")

    assert first == {"received": {"start": {"n": 1}}}
    assert second is None
    assert FiredTrigger.objects.filter(session=chain.session, trigger_name="t_a").count() == 1
