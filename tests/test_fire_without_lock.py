"""Fires that read without the session's lock (PostgreSQL) and write only if nothing moved.

A fire outside any contention reads the session and writes its changes in
two statements, the write checking that the session's version is still the
one read. When another change came in between, the write does nothing and
the fire is applied again under the lock, from a fresh read.
"""

import threading

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_triggers import manager as manager_module
from django_triggers.exceptions import SessionNotFound
from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskConfig, TaskInstance, TriggerSession
from django_triggers.stores import PostgresStore
from tests.helpers import RecordingRunner

ECHO = "tests.Echo"


@pytest.fixture(autouse=True)
def _fresh_state():
    RecordingRunner.dispatched.clear()
    manager_module._contended.clear()
    yield
    RecordingRunner.dispatched.clear()
    manager_module._contended.clear()


@pytest.fixture
def pair(transactional_db):
    """A session where ``t`` runs after ``a`` and ``b``, and ``a`` has fired."""
    manager = TriggerManager("without-lock")
    manager.update_configuration(
        {"t": {"after": ["a", "b"], "run": ECHO, "using": RecordingRunner.name}}
    )
    manager.fire("a", {"x": 1})
    return manager


def version_of(manager: TriggerManager) -> int:
    return TriggerSession.objects.get(pk=manager.session.pk).version


def fire_statements(manager: TriggerManager, trigger: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        manager.fire(trigger)
    return [query["sql"] for query in captured.captured_queries]


def interleave_before_write(monkeypatch, action) -> list[bool]:
    """Run ``action`` in another thread (its own connection) once, just before the next
    fire's write; return what each fire's write returned, in order."""
    real_write = PostgresStore.write_fire
    outcomes: list[bool] = []

    def interleaved_write(*args, **kwargs):
        if not outcomes and not getattr(interleaved_write, "ran", False):
            interleaved_write.ran = True
            thread = threading.Thread(target=_in_own_connection, args=(action,))
            thread.start()
            thread.join(timeout=30)
        outcomes.append(real_write(*args, **kwargs))
        return outcomes[-1]

    monkeypatch.setattr(PostgresStore, "write_fire", interleaved_write)
    return outcomes


def _in_own_connection(action):
    try:
        action()
    finally:
        connection.close()


@pytest.mark.postgres
def test_an_uncontended_fire_reads_and_writes_in_two_statements(pair):
    statements = fire_statements(pair, "b")

    assert len(statements) == 2
    assert RecordingRunner.dispatched == ["t#0"]


@pytest.mark.postgres
def test_a_fire_whose_read_went_stale_is_applied_again_under_the_lock(pair, monkeypatch):
    interleave_before_write(monkeypatch, lambda: TriggerManager(pair.session_uid).fire("b"))

    scheduled = pair.fire("b", {"y": 2})

    assert scheduled == []
    assert RecordingRunner.dispatched == ["t#0"]
    assert [i.status for i in pair.instances_of_task("t")] == [TaskInstance.SCHEDULED]
    assert FiredTrigger.objects.filter(session=pair.session, trigger_name="b").count() == 2
    assert pair.latest_kwargs["b"] == {"y": 2}


@pytest.mark.postgres
def test_a_stale_fire_writes_nothing_of_its_own(pair, monkeypatch):
    outcomes = interleave_before_write(
        monkeypatch, lambda: TriggerManager(pair.session_uid).update_configuration({})
    )

    pair.fire("b")

    assert outcomes == [False, True]  # without the lock, then under it
    assert FiredTrigger.objects.filter(session=pair.session, trigger_name="b").count() == 1
    assert RecordingRunner.dispatched == ["t#0"]


@pytest.mark.postgres
def test_fires_that_share_no_task_do_not_conflict(pair, monkeypatch):
    pair.update_configuration({"u": {"after": ["c"], "run": ECHO, "using": RecordingRunner.name}})
    outcomes = interleave_before_write(
        monkeypatch, lambda: TriggerManager(pair.session_uid).fire("c")
    )

    pair.fire("b")

    assert outcomes == [True, True]  # the interleaved fire's, then this one's
    assert sorted(RecordingRunner.dispatched) == ["t#0", "u#0"]


@pytest.mark.postgres
def test_a_fire_racing_an_earlier_fire_of_the_same_event_returns_what_that_one_scheduled(
    pair, monkeypatch
):
    outcomes = interleave_before_write(
        monkeypatch, lambda: TriggerManager(pair.session_uid).fire("b", event_id="order-1")
    )

    scheduled = pair.fire("b", event_id="order-1")

    assert outcomes == [True, False]  # the other fire's write, then this one's
    assert [instance.name for instance in scheduled] == ["t#0"]
    assert FiredTrigger.objects.filter(session=pair.session, event_id="order-1").count() == 1
    assert RecordingRunner.dispatched == ["t#0"]


@pytest.mark.postgres
def test_after_losing_a_race_the_next_fires_take_the_lock_at_once(pair, monkeypatch):
    interleave_before_write(monkeypatch, lambda: TriggerManager(pair.session_uid).fire("a"))
    pair.fire("b")

    statements = fire_statements(pair, "d")

    assert statements[0] == "BEGIN"
    assert statements[-1] == "COMMIT"


@pytest.mark.postgres
def test_a_fire_inside_a_transaction_reads_without_the_lock_and_commits_with_it(pair):
    with transaction.atomic():
        scheduled = pair.fire("b")
        assert RecordingRunner.dispatched == []

    assert [i.name for i in scheduled] == ["t#0"]
    assert RecordingRunner.dispatched == ["t#0"]


@pytest.mark.postgres
def test_a_fire_rolled_back_with_its_transaction_leaves_nothing(pair):
    version = version_of(pair)

    with pytest.raises(RuntimeError), transaction.atomic():
        pair.fire("b")
        raise RuntimeError("rolled back")

    assert version_of(pair) == version
    assert RecordingRunner.dispatched == []
    assert pair.get_instance("t#0").status == TaskInstance.UNSTARTED


def config_version(manager: TriggerManager, task: str) -> int:
    return TaskConfig.objects.get(session=manager.session, name=task).version


@pytest.mark.parametrize("store", ["auto", "orm"])
def test_a_fire_moves_the_versions_of_its_listening_tasks_on_in_every_store(pair, settings, store):
    """So that a fire without the lock sees it, whichever store the other process uses."""
    settings.TRIGGERS_STORE = store
    pair.update_configuration(
        {"other": {"after": ["c"], "run": ECHO, "using": RecordingRunner.name}}
    )
    before = {task: config_version(pair, task) for task in ("t", "other")}
    session_before = version_of(pair)

    pair.fire("b")

    assert config_version(pair, "t") == before["t"] + 1
    assert config_version(pair, "other") == before["other"]
    assert version_of(pair) == session_before


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.update_configuration(
            {"u": {"after": ["a"], "run": ECHO, "using": RecordingRunner.name}}
        ),
        lambda m: m.update_instance_metadata("t#0", {"note": "seen"}),
        lambda m: m.update_instance_status("t#0", TaskInstance.ABANDONED),
        lambda m: m.mark_instance_logs_resolved("t#0"),
    ],
    ids=["configuration", "metadata", "status", "logs resolved"],
)
def test_a_change_other_than_a_fire_moves_the_session_version_on(pair, change):
    before = version_of(pair)

    change(pair)

    assert version_of(pair) > before


def test_a_fire_into_a_deleted_session_raises_session_not_found(pair):
    TriggerSession.objects.filter(pk=pair.session.pk).delete()

    with pytest.raises(SessionNotFound, match="without-lock"):
        pair.fire("b")

    assert not FiredTrigger.objects.filter(trigger_name="b").exists()
