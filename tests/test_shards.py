"""Sessions spread over two databases: each session's rows stay in its own.

Run with a second database of sessions (``TRIGGERS_SHARDS=1``: two databases
of the same kind; ``TRIGGERS_SHARDS=sqlite``: a SQLite file beside the
default database, PostgreSQL say); skipped otherwise. Tasks run in threads
of this process; ``tests/test_shards_worker.py`` runs them on a Celery worker.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskConfig, TaskInstance, TriggerSession
from django_triggers.recovery import recover
from django_triggers.routers import session_database
from django_triggers.runners import BaseTaskRunner, ThreadingTaskRunner
from django_triggers.task import get_trigger_task
from tests.shards import (
    CASCADE,
    DATABASES,
    needs_two_databases,
    nothing,
    other_than,
    placing_every_session_in,
    rows_in,
    uid_in,
)

pytestmark = [
    needs_two_databases,
    pytest.mark.django_db(transaction=True, databases=list(DATABASES)),
]

#: How :class:`SwitchableRunner` treats what it is handed: ``"broken"`` raises,
#: ``"record"`` only records it.
RUNNER_MODE = {"mode": "record"}
HANDED: list[str] = []
_handed = threading.Lock()


class SwitchableRunner(BaseTaskRunner):
    name = "test_shards.switchable"

    def run(self, manager: TriggerManager, task_instance: TaskInstance) -> None:
        if RUNNER_MODE["mode"] == "broken":
            raise ConnectionError("broker down")
        with _handed:
            HANDED.append(f"{manager.session_uid} {task_instance.name}")


@pytest.fixture(autouse=True)
def _threads(settings: Any):
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"
    RUNNER_MODE["mode"] = "record"
    HANDED.clear()
    yield
    ThreadingTaskRunner.join_all(timeout=60)


def run_cascade(database: str) -> TriggerManager:
    manager = TriggerManager(uid_in(database, "cascade"))
    manager.update_configuration(CASCADE)
    manager.fire("start", {"order": 42})
    ThreadingTaskRunner.join_all(timeout=60)
    return manager


def session_with_unsent_instance(database: str, prefix: str) -> TriggerManager:
    """A session in ``database`` whose one scheduled instance never reached its runner."""
    manager = TriggerManager(uid_in(database, prefix))
    manager.update_configuration(
        {"t_send": {"after": ["go"], "run": "tests.Echo", "using": SwitchableRunner.name}}
    )
    RUNNER_MODE["mode"] = "broken"
    manager.fire("go")
    RUNNER_MODE["mode"] = "record"
    return manager


def misplaced_session(database: str, prefix: str) -> TriggerManager:
    """A session the routers place in ``database``, still in the other database: configured,
    fired into, with a finished instance, a failed one and its replay."""
    uid = uid_in(database, prefix)
    with placing_every_session_in(other_than(database)):
        manager = TriggerManager(uid)
        manager.update_configuration(
            {
                **CASCADE,
                "t_fails": {"after": ["start"], "run": "tests.FailUntilReplayed", "within": 600},
                "t_waits": {"after": ["never"], "run": "tests.Echo", "within": 600},
            }
        )
        manager.fire("start", {"order": 7})
        ThreadingTaskRunner.join_all(timeout=60)
        manager.replay_failed_instance("t_fails#0")
        ThreadingTaskRunner.join_all(timeout=60)
    return manager


# -- each session in one database --------------------------------------------------------


@pytest.mark.parametrize("database", DATABASES)
def test_a_session_and_all_its_rows_live_in_the_database_the_router_places_it_in(database):
    manager = run_cascade(database)

    assert manager.database == database
    assert rows_in(database, manager.session_uid) == {
        "sessions": 1,
        "configs": 3,
        "listeners": 3,
        "instances": 3,
        "fires": 4,
    }
    assert rows_in(other_than(database), manager.session_uid) == nothing()


@pytest.mark.parametrize("database", DATABASES)
def test_a_cascade_runs_to_its_end_in_its_sessions_database(database):
    manager = run_cascade(database)

    instances = TaskInstance.objects.using(database).filter(session__uid=manager.session_uid)
    assert {i.name: i.status for i in instances} == {
        "t_a#0": TaskInstance.FINISHED,
        "t_b#0": TaskInstance.FINISHED,
        "t_c#0": TaskInstance.FINISHED,
    }
    fires = FiredTrigger.objects.using(database).filter(session__uid=manager.session_uid)
    assert [(f.trigger_name, f.source) for f in fires.order_by("id")] == [
        ("start", FiredTrigger.APPLICATION),
        ("t_a", FiredTrigger.CASCADE),
        ("t_b", FiredTrigger.CASCADE),
        ("t_c", FiredTrigger.CASCADE),
    ]
    assert manager.get_instance("t_c#0").result == {
        "received": {"t_b": {"received": {"t_a": {"received": {"start": {"order": 42}}}}}}
    }


@pytest.mark.parametrize("database", DATABASES)
def test_a_retry_and_a_replay_stay_in_the_sessions_database(database):
    manager = TriggerManager(uid_in(database, "retry"))
    manager.update_configuration(
        {
            "t_retry": {"after": ["start"], "run": "tests.RetryWithReplacement"},
            "t_fails": {"after": ["start"], "run": "tests.FailUntilReplayed"},
        }
    )
    manager.fire("start", {"attempt": "first"})
    ThreadingTaskRunner.join_all(timeout=60)
    manager.replay_failed_instance("t_fails#0")
    ThreadingTaskRunner.join_all(timeout=60)

    statuses = dict(
        TaskInstance.objects.using(database)
        .filter(session__uid=manager.session_uid)
        .values_list("name", "status")
    )
    assert statuses == {
        "t_retry#0": TaskInstance.REPLAYED,
        "t_retry#1": TaskInstance.FINISHED,
        "t_fails#0": TaskInstance.REPLAYED,
        "t_fails#1": TaskInstance.FINISHED,
    }
    assert rows_in(other_than(database), manager.session_uid) == nothing()


def test_replaying_a_session_into_a_new_one_reads_the_source_in_its_own_database():
    source = run_cascade("default")
    new_uid = uid_in("shard1", "replayed")

    call_command("triggers_replay_session", source.session_uid, new_uid, stdout=StringIO())
    ThreadingTaskRunner.join_all(timeout=60)

    assert rows_in("shard1", new_uid)["instances"] == 3
    assert rows_in("default", new_uid) == nothing()
    assert TriggerManager.for_existing_session(new_uid).get_instance("t_c#0").status == (
        TaskInstance.FINISHED
    )


def test_a_command_fires_into_the_sessions_own_database():
    uid = uid_in("shard1", "command")

    call_command("triggers_fire", uid, "nothing-listens", "--create", stdout=StringIO())

    assert rows_in("shard1", uid)["fires"] == 1
    assert rows_in("default", uid) == nothing()


# -- sweeps ------------------------------------------------------------------------


def test_the_recovery_sweep_hands_over_unsent_work_in_every_database():
    unsent = [session_with_unsent_instance(database, "unsent") for database in DATABASES]

    report = recover(redispatch_after=timedelta(0))

    expected = [(manager.session_uid, "t_send#0") for manager in unsent]
    assert sorted(report.never_dispatched) == sorted(expected)
    assert sorted(HANDED) == sorted(f"{uid} {name}" for uid, name in expected)
    assert report.errors == []


def test_the_recovery_sweep_limited_to_one_database_leaves_the_others_alone():
    in_default = session_with_unsent_instance("default", "unsent")
    session_with_unsent_instance("shard1", "unsent")

    report = recover(redispatch_after=timedelta(0), databases=["default"])

    assert report.never_dispatched == [(in_default.session_uid, "t_send#0")]


def test_the_recover_command_sweeps_the_database_it_is_given():
    session_with_unsent_instance("default", "unsent")
    in_shard = session_with_unsent_instance("shard1", "unsent")
    output = StringIO()

    call_command(
        "triggers_recover", "--redispatch-after", "0", "--database", "shard1", stdout=output
    )

    assert "redispatched: 1" in output.getvalue()
    assert f"{in_shard.session_uid} t_send#0 (never dispatched)" in output.getvalue()


def test_the_deadline_sweep_abandons_late_instances_in_every_database():
    managers = []
    for database in DATABASES:
        manager = TriggerManager(uid_in(database, "deadline"))
        manager.update_configuration(
            {"t_late": {"after": ["a", "b"], "run": "tests.Echo", "within": 60}}
        )
        manager.fire("a")
        managers.append(manager)

    report = recover(now=timezone.now() + timedelta(minutes=5))

    assert sorted(report.expired) == sorted((m.session_uid, "t_late#0") for m in managers)
    for manager in managers:
        timeout = FiredTrigger.objects.using(manager.database).get(
            session__uid=manager.session_uid, trigger_name="t_late.timeout"
        )
        assert timeout.source == FiredTrigger.DEADLINE


def test_the_recovery_sweep_reports_a_session_outside_its_routed_database_and_leaves_it():
    manager = misplaced_session("shard1", "misplaced")
    RUNNER_MODE["mode"] = "broken"
    with placing_every_session_in("default"):
        manager.update_configuration(
            {"t_send": {"after": ["go"], "run": "tests.Echo", "using": SwitchableRunner.name}}
        )
        manager.fire("go")
    RUNNER_MODE["mode"] = "record"

    report = recover(redispatch_after=timedelta(0))

    assert report.never_dispatched == []
    assert [(uid, name) for uid, name, _ in report.errors] == [(manager.session_uid, "t_send#0")]
    assert "the routers place it in 'shard1'" in report.errors[0][2]
    assert HANDED == []


def test_cleanup_deletes_the_sessions_that_are_over_in_every_database():
    over = [run_cascade(database) for database in DATABASES]
    live = TriggerManager(uid_in("shard1", "live"))
    live.update_configuration({"t_waits": {"after": ["never"], "run": "tests.Echo"}})
    for manager in (*over, live):
        age(manager, days=40)
    output = StringIO()

    call_command("triggers_cleanup", "--older-than", "30d", stdout=output, stderr=StringIO())

    assert "Deleted 2 session(s)" in output.getvalue()
    for manager in over:
        assert rows_in(manager.database, manager.session_uid) == nothing()
    assert rows_in("shard1", live.session_uid)["sessions"] == 1


def test_cleanup_limited_to_one_database_keeps_the_others():
    in_default, in_shard = (run_cascade(database) for database in DATABASES)
    for manager in (in_default, in_shard):
        age(manager, days=40)

    call_command(
        "triggers_cleanup",
        "--older-than",
        "30d",
        "--database",
        "shard1",
        stdout=StringIO(),
        stderr=StringIO(),
    )

    assert rows_in("shard1", in_shard.session_uid) == nothing()
    assert rows_in("default", in_default.session_uid)["sessions"] == 1


# -- moving a session -------------------------------------------------------------


def test_moving_a_session_copies_every_row_then_deletes_the_original():
    manager = misplaced_session("shard1", "move")
    with placing_every_session_in("default"):
        before = TriggerManager.for_existing_session(manager.session_uid).debug_repr()
    counts = rows_in("default", manager.session_uid)
    output = StringIO()

    call_command("triggers_move_session", manager.session_uid, "--to", "shard1", stdout=output)

    assert rows_in("shard1", manager.session_uid) == counts
    assert rows_in("default", manager.session_uid) == nothing()
    assert TriggerManager.for_existing_session(manager.session_uid).debug_repr() == before
    assert f"from 'default' to 'shard1' ({sum(counts.values())} rows)" in output.getvalue()


def test_a_moved_session_keeps_its_timestamps_and_replay_links():
    manager = misplaced_session("shard1", "move")
    with placing_every_session_in("default"):
        original = {
            i.name: (i.created, i.modified, i.status_changed_at, i.parent and i.parent.name)
            for i in TaskInstance.objects.using("default").filter(session__uid=manager.session_uid)
        }
        created = TriggerSession.objects.using("default").get(uid=manager.session_uid).created

    call_command("triggers_move_session", manager.session_uid, "--to", "shard1", stdout=StringIO())

    moved = {
        i.name: (i.created, i.modified, i.status_changed_at, i.parent and i.parent.name)
        for i in TaskInstance.objects.using("shard1").filter(session__uid=manager.session_uid)
    }
    assert moved == original
    assert moved["t_fails#1"][3] == "t_fails#0"
    assert TriggerSession.objects.using("shard1").get(uid=manager.session_uid).created == created


def test_a_moved_session_goes_on_in_its_new_database():
    manager = misplaced_session("shard1", "move")
    call_command("triggers_move_session", manager.session_uid, "--to", "shard1", stdout=StringIO())
    moved = TriggerManager.for_existing_session(manager.session_uid)

    moved.fire("never")
    ThreadingTaskRunner.join_all(timeout=60)

    assert moved.database == "shard1"
    assert moved.get_instance("t_waits#0").status == TaskInstance.FINISHED
    assert rows_in("default", manager.session_uid) == nothing()


def with_scheduled_instance(manager: TriggerManager) -> TaskInstance:
    """Schedule ``t_send#0`` in the (misplaced) session; its runner only records it."""
    with placing_every_session_in(other_than(session_database(manager.session_uid))):
        manager.update_configuration(
            {"t_send": {"after": ["go"], "run": "tests.Echo", "using": SwitchableRunner.name}}
        )
        manager.fire("go")
        return manager.get_instance("t_send#0")


def test_moving_a_session_with_an_instance_running_is_refused_and_changes_nothing():
    manager = misplaced_session("shard1", "busy")
    with_scheduled_instance(manager)
    with placing_every_session_in("default"):
        manager.start_instance("t_send#0")  # as its worker does
    counts = rows_in("default", manager.session_uid)

    with pytest.raises(CommandError, match=r"instances running \(t_send#0\)"):
        call_command("triggers_move_session", manager.session_uid, "--to", "shard1")

    assert rows_in("default", manager.session_uid) == counts
    assert rows_in("shard1", manager.session_uid) == nothing()


def test_a_scheduled_instance_moves_with_its_session_and_runs_in_the_new_database():
    manager = misplaced_session("shard1", "scheduled")
    scheduled = with_scheduled_instance(manager)

    call_command("triggers_move_session", manager.session_uid, "--to", "shard1", stdout=StringIO())
    # Its message, delivered now, names the session and the instance only.
    get_trigger_task("tests.Echo").execute(TriggerManager, manager.session_uid, "t_send#0")

    moved = TriggerManager.for_existing_session(manager.session_uid).get_instance("t_send#0")
    assert moved.status == TaskInstance.FINISHED
    assert moved.celery_task_id == scheduled.celery_task_id
    assert rows_in("default", manager.session_uid) == nothing()


def test_moving_a_session_to_an_unknown_database_is_refused_naming_it():
    manager = misplaced_session("shard1", "move")

    with pytest.raises(CommandError, match="unknown database 'nowhere'"):
        call_command("triggers_move_session", manager.session_uid, "--to", "nowhere")

    assert rows_in("default", manager.session_uid)["sessions"] == 1


def test_moving_a_session_where_the_routers_do_not_place_it_is_refused():
    manager = run_cascade("default")

    with pytest.raises(
        CommandError, match=r"the routers place session .* in 'default', not 'shard1'"
    ):
        call_command("triggers_move_session", manager.session_uid, "--to", "shard1")

    assert rows_in("default", manager.session_uid)["sessions"] == 1


def test_moving_a_session_already_in_place_is_refused():
    manager = run_cascade("shard1")

    with pytest.raises(CommandError, match="is already in 'shard1'"):
        call_command("triggers_move_session", manager.session_uid, "--to", "shard1")


def test_moving_a_session_that_does_not_exist_is_refused_naming_it():
    uid = uid_in("shard1", "ghost")

    with pytest.raises(CommandError, match=f"no database of sessions holds .*{uid}"):
        call_command("triggers_move_session", uid, "--to", "shard1")


def test_moving_the_misplaced_sessions_moves_each_where_the_routers_place_it():
    to_shard = misplaced_session("shard1", "misplaced")
    to_default = misplaced_session("default", "misplaced")
    in_place = run_cascade("shard1")
    output = StringIO()

    call_command("triggers_move_session", "--misplaced", stdout=output)

    for manager, home in ((to_shard, "shard1"), (to_default, "default")):
        assert rows_in(home, manager.session_uid)["instances"] == 5
        assert rows_in(other_than(home), manager.session_uid) == nothing()
    assert rows_in("shard1", in_place.session_uid)["sessions"] == 1
    assert output.getvalue().count("Moved session") == 2


# -- the admin -----------------------------------------------------------------------


def changelist(model: type, **query: str) -> str:
    url = reverse(f"admin:django_triggers_{model._meta.model_name}_changelist")
    return f"{url}?{'&'.join(f'{key}={value}' for key, value in query.items())}"


def test_the_admin_lists_the_sessions_of_the_chosen_database(admin_client):
    in_default, in_shard = (run_cascade(database) for database in DATABASES)

    first = admin_client.get(changelist(TriggerSession)).content.decode()
    shard = admin_client.get(changelist(TriggerSession, database="shard1")).content.decode()

    assert in_default.session_uid in first and in_shard.session_uid not in first
    assert in_shard.session_uid in shard and in_default.session_uid not in shard
    assert "?database=shard1" in first  # the filter offering the other database


def test_the_admin_refuses_an_unknown_database_naming_it(admin_client):
    response = admin_client.get(changelist(TriggerSession, database="nowhere"), follow=True)

    assert response.redirect_chain[-1][0] == reverse(
        "admin:django_triggers_triggersession_changelist"
    )
    assert "No sessions are in a database named &#x27;nowhere&#x27;" in response.content.decode()


def test_the_admin_opens_a_session_of_another_database_and_links_within_it(admin_client):
    manager = run_cascade("shard1")
    session = manager.session
    listed = admin_client.get(changelist(TriggerSession, database="shard1")).content.decode()
    page_url = reverse("admin:django_triggers_triggersession_change", args=[session.pk])
    page_url += "?_changelist_filters=database%3Dshard1"

    page = admin_client.get(page_url).content.decode()

    assert page_url.replace("&", "&amp;") in listed
    assert manager.session_uid in page
    instance = TaskInstance.objects.using("shard1").get(session=session, name="t_c#0")
    instance_url = reverse("admin:django_triggers_taskinstance_change", args=[instance.pk])
    assert f"{instance_url}?_changelist_filters=database%3Dshard1" in page
    assert "session__id__exact" in page and "database=shard1" in page


def test_the_admin_replays_a_failed_instance_in_its_sessions_database(admin_client):
    manager = TriggerManager(uid_in("shard1", "admin"))
    manager.update_configuration(
        {"t_fails": {"after": ["start"], "run": "tests.FailUntilReplayed"}}
    )
    manager.fire("start")
    ThreadingTaskRunner.join_all(timeout=60)
    failed = manager.get_instance("t_fails#0")

    admin_client.post(
        changelist(TaskInstance, database="shard1"),
        {"action": "replay_instances", "_selected_action": [failed.pk], "apply": "1"},
    )
    ThreadingTaskRunner.join_all(timeout=60)

    assert manager.get_instance("t_fails#0").status == TaskInstance.REPLAYED
    assert manager.get_instance("t_fails#1").status == TaskInstance.FINISHED
    assert rows_in("default", manager.session_uid) == nothing()


def test_the_admin_fires_into_a_session_of_another_database(admin_client):
    manager = TriggerManager(uid_in("shard1", "admin"))
    manager.update_configuration(CASCADE)
    url = reverse("admin:django_triggers_triggersession_fire", args=[manager.session.pk])

    admin_client.post(
        f"{url}?_changelist_filters=database%3Dshard1",
        {"trigger_name": "start", "kwargs": "{}", "event_id": "admin-1", "apply": "1"},
    )
    ThreadingTaskRunner.join_all(timeout=60)

    assert manager.get_instance("t_c#0").status == TaskInstance.FINISHED
    assert rows_in("shard1", manager.session_uid)["fires"] == 4
    assert rows_in("default", manager.session_uid) == nothing()


def test_the_admin_deletes_an_instance_in_its_sessions_database(admin_client):
    in_default, in_shard = (run_cascade(database) for database in DATABASES)
    instance = in_shard.get_instance("t_c#0")
    url = reverse("admin:django_triggers_taskinstance_delete", args=[instance.pk])
    url += "?_changelist_filters=database%3Dshard1"

    page = admin_client.get(url).content.decode()
    admin_client.post(url, {"post": "yes"})

    assert "t_c#0" in page
    assert rows_in("shard1", in_shard.session_uid)["instances"] == 2
    assert rows_in("default", in_default.session_uid)["instances"] == 3


# -- helpers ---------------------------------------------------------------------------


def age(manager: TriggerManager, days: int) -> None:
    """Move every activity of the session, in its database, ``days`` into the past."""
    then = timezone.now() - timedelta(days=days)
    uid, database = manager.session_uid, manager.database
    TriggerSession.objects.using(database).filter(uid=uid).update(created=then)
    TaskConfig.objects.using(database).filter(session__uid=uid).update(created=then, updated=then)
    FiredTrigger.objects.using(database).filter(session__uid=uid).update(fired_at=then)
    TaskInstance.objects.using(database).filter(session__uid=uid).update(status_changed_at=then)
