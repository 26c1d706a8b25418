"""The ``triggers_replay`` and ``triggers_skip`` management commands."""

import json
import re

import pytest
from django.core.management import CommandError

from django_triggers.models import TaskInstance
from tests.test_commands import ECHO, database_rows, run_command

FAIL = "tests.Fail"
FLAKY = "tests.FailUntilReplayed"


@pytest.fixture
def session(trigger_manager, triggers):
    """``t_flaky#0`` and ``t_fail#0`` failed, ``t_echo#0`` finished; ``t_next`` waits for
    ``t_fail``, ``t_after_flaky`` for ``t_flaky``."""
    trigger_manager.update_configuration(
        {
            "t_flaky": {"after": ["a"], "run": FLAKY},
            "t_fail": {"after": ["a", "b"], "run": FAIL},
            "t_echo": {"after": ["a"], "run": ECHO},
            "t_next": {"after": ["t_fail"], "run": ECHO},
            "t_after_flaky": {"after": ["t_flaky"], "run": ECHO},
        }
    )
    trigger_manager.fire("a", {"n": 1})
    trigger_manager.fire("b")
    triggers.assertInstanceFailed("t_flaky#0", RuntimeError)
    triggers.assertInstanceFailed("t_fail#0", ValueError)
    triggers.assertInstanceFinished("t_echo#0")
    return trigger_manager


def statuses(manager):
    return dict(TaskInstance.objects.filter(session=manager.session).values_list("name", "status"))


# -- triggers_replay ---------------------------------------------------------------------


def test_replay_prints_each_new_instance(session):
    stdout, _ = run_command("triggers_replay", session.session_uid, "t_flaky#0")

    assert stdout == "t_flaky#0 replayed as t_flaky#1\n"


def test_replay_schedules_a_clone_and_waits_for_it(session):
    run_command("triggers_replay", session.session_uid, "t_flaky#0")

    assert statuses(session)["t_flaky#0"] == TaskInstance.REPLAYED
    clone = session.get_instance("t_flaky#1")
    assert clone.status == TaskInstance.FINISHED
    assert clone.parent.name == "t_flaky#0"
    assert statuses(session)["t_after_flaky#0"] == TaskInstance.FINISHED


def test_replay_replays_each_named_instance(session):
    run_command("triggers_replay", session.session_uid, "t_flaky#0", "t_fail#0")

    current = statuses(session)
    assert current["t_flaky#0"] == current["t_fail#0"] == TaskInstance.REPLAYED
    assert current["t_flaky#1"] == TaskInstance.FINISHED
    assert current["t_fail#1"] == TaskInstance.FAILED


def test_replay_replays_an_instance_named_twice_once(session):
    stdout, _ = run_command("triggers_replay", session.session_uid, "t_flaky#0", "t_flaky#0")

    assert stdout == "t_flaky#0 replayed as t_flaky#1\n"
    assert "t_flaky#2" not in statuses(session)


def test_replay_all_failed_replays_every_failed_instance(session):
    stdout, _ = run_command("triggers_replay", session.session_uid, "--all-failed")

    assert stdout.splitlines() == [
        "t_fail#0 replayed as t_fail#1",
        "t_flaky#0 replayed as t_flaky#1",
    ]
    assert statuses(session)["t_echo#0"] == TaskInstance.FINISHED


def test_replay_all_failed_says_when_there_is_none(trigger_manager):
    stdout, _ = run_command("triggers_replay", trigger_manager.session_uid, "--all-failed")

    assert stdout == f"No failed instance in session '{trigger_manager.session_uid}'\n"


def test_replay_with_kwargs_replaces_the_kwargs_of_the_named_triggers(session):
    run_command(
        "triggers_replay", session.session_uid, "t_flaky#0", "--kwargs", '{"a": {"fixed": true}}'
    )

    assert session.get_instance("t_flaky#1").result == {"received": {"a": {"fixed": True}}}


def test_replay_json_lists_the_replays(session):
    stdout, _ = run_command("triggers_replay", session.session_uid, "--all-failed", "--json")

    assert json.loads(stdout) == {
        "session": session.session_uid,
        "replayed": [
            {"instance": "t_fail#0", "new_instance": "t_fail#1"},
            {"instance": "t_flaky#0", "new_instance": "t_flaky#1"},
        ],
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["t_echo#0"], "cannot replay task instance 't_echo#0': its status is 'finished'"),
        (["t_flaky#0", "t_echo#0"], "its status is 'finished'"),
        (["t_nope#0"], "no task instance named 't_nope#0'"),
        ([], "name the failed instances to replay, or give --all-failed"),
        (["t_flaky#0", "--all-failed"], "name the failed instances to replay, or give"),
        (["t_flaky#0", "--kwargs", "{nope"], "--kwargs is not valid JSON"),
        (["t_flaky#0", "--kwargs", "[]"], "--kwargs must be a JSON object, not an array"),
        (["t_flaky#0", "--kwargs", '{"a": 1}'], "must be a mapping, not int"),
        (["t_flaky#0", "--kwargs", '{"a": {"x": NaN}}'], "the value at a.x is not encodable"),
        (["--all-failed", "--kwargs", '{"a": {"x": NaN}}'], "the value at a.x is not encodable"),
    ],
    ids=[
        "finished-instance",
        "one-of-two-finished",
        "unknown-instance",
        "nothing-named",
        "names-and-all-failed",
        "kwargs-not-json",
        "kwargs-not-an-object",
        "kwargs-value-not-an-object",
        "kwargs-unencodable",
        "all-failed-kwargs-unencodable",
    ],
)
def test_replay_refuses_bad_input_and_changes_nothing(session, args, message):
    before = database_rows()

    with pytest.raises(CommandError, match=re.escape(message)):
        run_command("triggers_replay", session.session_uid, *args)

    assert database_rows() == before


# -- triggers_skip -----------------------------------------------------------------------


def test_skip_marks_the_instance_skipped_without_cascade(session):
    stdout, _ = run_command("triggers_skip", session.session_uid, "t_fail#0")

    assert stdout == f"Skipped t_fail#0 in session '{session.session_uid}'\n"
    assert statuses(session)["t_fail#0"] == TaskInstance.SKIPPED
    assert "t_next#0" not in statuses(session)


def test_skip_with_cascade_fires_the_task_with_the_result(session):
    stdout, _ = run_command(
        "triggers_skip", session.session_uid, "t_fail#0", "--cascade", "--result", '{"v": 1}'
    )

    assert stdout.endswith("; fired 't_fail'\n")
    next_instance = session.get_instance("t_next#0")
    assert next_instance.status == TaskInstance.FINISHED
    assert next_instance.result == {"received": {"t_fail": {"v": 1}}}


def test_skip_json_describes_the_skipped_instance(session):
    stdout, _ = run_command(
        "triggers_skip", session.session_uid, "t_fail#0", "--result", '{"v": 1}', "--json"
    )

    assert json.loads(stdout) == {
        "session": session.session_uid,
        "instance": "t_fail#0",
        "status": "skipped",
        "cascade": False,
        "result": {"v": 1},
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["t_echo#0"], "cannot skip task instance 't_echo#0': its status is 'finished'"),
        (["t_nope#0"], "no task instance named 't_nope#0'"),
        (["t_fail#0", "--result", "{nope"], "--result is not valid JSON"),
        (["t_fail#0", "--result", "3"], "--result must be a JSON object, not a number"),
        (["t_fail#0", "--cascade", "--result", '{"x": NaN}'], "the value at x is not encodable"),
    ],
    ids=[
        "finished-instance",
        "unknown-instance",
        "result-not-json",
        "result-not-an-object",
        "result-unencodable",
    ],
)
def test_skip_refuses_bad_input_and_changes_nothing(session, args, message):
    before = database_rows()

    with pytest.raises(CommandError, match=re.escape(message)):
        run_command("triggers_skip", session.session_uid, *args)

    assert database_rows() == before
