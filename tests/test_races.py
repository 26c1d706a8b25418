"""Steps raced by real processes change an instance once, on every database server.

Each race starts its processes together (``tests.racing``); the database's
locks and guarded writes must let exactly one of them through.
"""

import uuid

import pytest

from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance
from tests.helpers import RecordingRunner, run_processes_together

pytestmark = [pytest.mark.server_database, pytest.mark.django_db(transaction=True)]

RACERS = 4


def race(action: str, session_uid: str, instance_name: str) -> list[dict]:
    return run_processes_together([["tests.racing", action, session_uid, instance_name]] * RACERS)


def test_workers_starting_one_instance_at_once_start_it_once():
    manager = TriggerManager(f"race-start-{uuid.uuid4().hex}")
    manager.update_configuration(
        {"t": {"after": ["go"], "run": "tests.Echo", "using": RecordingRunner.name}}
    )
    manager.fire("go")

    results = race("start", manager.session_uid, "t#0")

    assert sorted(result["started"] for result in results) == [False] * (RACERS - 1) + [True]
    assert manager.get_instance("t#0").status == TaskInstance.RUNNING


def test_replays_of_one_failed_instance_at_once_make_one_clone(trigger_manager, triggers):
    manager = trigger_manager
    manager.update_configuration({"t": {"after": ["go"], "run": "tests.Fail"}})
    manager.fire("go")
    triggers.assertInstanceFailed("t#0", ValueError)

    results = race("replay", manager.session_uid, "t#0")

    clones = [result["clone"] for result in results if result["clone"]]
    assert clones == ["t#1"]
    assert all("its status is 'replayed'" in r["refused"] for r in results if not r["clone"])
    assert [i.name for i in manager.instances_of_task("t")] == ["t#0", "t#1"]
