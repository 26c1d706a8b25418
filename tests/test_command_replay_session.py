"""The ``triggers_replay_session`` management command."""

import re
import uuid

import pytest
from django.core.management import CommandError

from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskConfig, TaskInstance, TriggerSession
from django_triggers.runners import ThreadingTaskRunner
from tests.test_commands import (
    ECHO,
    RecordingRunner,
    database_rows,
    handed_to_runner,
    json_file,
    run_command,
)

CONFIGURATION = {
    "t_echo": {"after": ["a"], "run": ECHO},
    "t_both": {"after": ["a", "b"], "run": ECHO},
    "t_chain": {"after": ["t_echo"], "run": ECHO},
    "t_recorded": {"after": ["r"], "run": ECHO, "using": RecordingRunner.name},
}


class SourceManager(TriggerManager):
    """A manager subclass, to see which class the new session gets."""


@pytest.fixture
def source(trigger_manager, triggers):
    """A session where the application fired ``a``, ``b``, ``a`` again and ``r``."""
    manager = SourceManager(trigger_manager.session_uid)
    manager.update_configuration(CONFIGURATION)
    manager.fire("a", {"n": 1})
    manager.fire("b", {"n": 2})
    manager.fire("a", {"n": 3})
    manager.fire("r")
    triggers.assertInstanceFinished("t_chain#0")
    return manager


@pytest.fixture
def new_uid():
    return f"replay-{uuid.uuid4().hex}"


def replay_session(source, new_uid, *args):
    stdout, _ = run_command("triggers_replay_session", source.session_uid, new_uid, *args)
    return stdout


def replayed_fires(session_uid):
    return list(
        FiredTrigger.objects.filter(session__uid=session_uid, source=FiredTrigger.REPLAY)
        .order_by("id")
        .values_list("trigger_name", "kwargs")
    )


def statuses(session_uid):
    return dict(TaskInstance.objects.filter(session__uid=session_uid).values_list("name", "status"))


def test_replay_session_copies_the_sources_configuration(source, new_uid):
    replay_session(source, new_uid)

    assert TriggerManager(new_uid).get_configuration() == CONFIGURATION


def test_replay_session_fires_the_application_fires_in_their_order(source, new_uid):
    replay_session(source, new_uid)

    assert replayed_fires(new_uid) == [("a", {"n": 1}), ("b", {"n": 2}), ("a", {"n": 3}), ("r", {})]


def test_replay_session_runs_the_new_sessions_tasks_and_their_cascades(source, new_uid):
    replay_session(source, new_uid)
    ThreadingTaskRunner.join_all(timeout=60)

    assert statuses(new_uid) == {
        "t_echo#0": TaskInstance.FINISHED,
        "t_both#0": TaskInstance.FINISHED,
        "t_chain#0": TaskInstance.FINISHED,
        "t_recorded#0": TaskInstance.SCHEDULED,
    }
    assert TriggerManager(new_uid).get_instance("t_both#0").result == {
        "received": {"a": {"n": 1}, "b": {"n": 2}}
    }
    assert handed_to_runner(new_uid) == ["t_recorded#0"]


def test_replay_session_prints_each_fire_and_what_it_scheduled(source, new_uid):
    lines = replay_session(source, new_uid).splitlines()

    assert lines[0] == (
        f"Created session {new_uid!r} with 4 task(s) configured from session {source.session_uid!r}"
    )
    assert [line.split(" (fired ")[0] for line in lines[1:5]] == [
        "  1. a",
        "  2. b",
        "  3. a",
        "  4. r",
    ]
    assert [line.split("): ")[1] for line in lines[1:5]] == [
        "scheduled t_echo#0",
        "scheduled t_both#0",
        "scheduled nothing",
        "scheduled t_recorded#0",
    ]
    assert lines[5] == f"Re-fired 4 application fire(s) of {source.session_uid!r} into {new_uid!r}"


def test_replay_session_reads_the_source_in_batches(source, new_uid):
    replay_session(source, new_uid, "--batch-size", "1")

    assert replayed_fires(new_uid) == [("a", {"n": 1}), ("b", {"n": 2}), ("a", {"n": 3}), ("r", {})]


def test_replay_session_configures_from_a_file_on_request(source, new_uid, tmp_path):
    configuration = {"t_other": {"after": ["b"], "run": ECHO, "using": RecordingRunner.name}}
    path = json_file(tmp_path / "conf.json", configuration)

    stdout = replay_session(source, new_uid, "--configuration", path)

    assert TriggerManager(new_uid).get_configuration() == configuration
    assert handed_to_runner(new_uid) == ["t_other#0"]
    assert f"configured from {path}" in stdout


def test_the_new_session_is_managed_by_the_sources_manager_class(source, new_uid):
    replay_session(source, new_uid)

    assert TriggerSession.objects.get(uid=new_uid).manager_class == SourceManager.class_path()


def test_the_source_session_is_left_as_it_was(source, new_uid):
    before = database_rows()

    replay_session(source, new_uid)

    after = database_rows()
    for label, rows in before.items():
        kept = [row for row in after[label] if row["id"] in {r["id"] for r in rows}]
        assert kept == rows


# -- dry run -----------------------------------------------------------------------------


def test_a_dry_run_keeps_nothing(source, new_uid):
    before = database_rows()

    replay_session(source, new_uid, "--dry-run")

    assert database_rows() == before
    assert not TriggerSession.objects.filter(uid=new_uid).exists()


def test_a_dry_run_dispatches_nothing(source, new_uid):
    replay_session(source, new_uid, "--dry-run")

    assert handed_to_runner(new_uid) == []


def test_a_dry_run_prints_what_would_be_scheduled(source, new_uid):
    lines = replay_session(source, new_uid, "--dry-run").splitlines()

    assert lines[1].startswith(f"Would create session {new_uid!r} with 4 task(s)")
    assert [line.split("): ")[1] for line in lines[2:6]] == [
        "would schedule t_echo#0",
        "would schedule t_both#0",
        "would schedule nothing",
        "would schedule t_recorded#0",
    ]
    assert lines[-1] == f"Rolled back: session {new_uid!r} was not created."


def test_a_dry_run_says_that_cascades_do_not_happen(source, new_uid):
    stdout = replay_session(source, new_uid, "--dry-run")

    assert stdout.startswith(
        "Dry run: nothing is kept and no task runs, so cascades do not happen."
    )


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--configuration", "/nonexistent/conf.json"], "cannot read configuration file"),
        (["--configuration", "BAD_JSON"], "is not valid JSON"),
        (["--configuration", "NOT_AN_OBJECT"], "must be a JSON object, not an array"),
        (["--configuration", "INVALID"], "Task 't_x', directive 'run'"),
        (["--batch-size", "0"], "--batch-size must be at least 1, not 0"),
        (["--batch-size", "many"], "invalid int value: 'many'"),
    ],
    ids=[
        "missing-file",
        "invalid-json",
        "not-an-object",
        "invalid-configuration",
        "batch-size-zero",
        "batch-size-not-a-number",
    ],
)
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["", "dry-run"])
def test_bad_input_is_refused_and_creates_no_session(
    source, new_uid, tmp_path, args, message, dry_run
):
    files = {
        "BAD_JSON": "{oops",
        "NOT_AN_OBJECT": "[]",
        "INVALID": '{"t_x": {"after": ["a"]}}',
    }
    for name, contents in files.items():
        (tmp_path / name).write_text(contents, encoding="utf-8")
    args = [str(tmp_path / arg) if arg in files else arg for arg in args]
    before = database_rows()

    with pytest.raises(CommandError, match=re.escape(message)):
        replay_session(source, new_uid, *args, *dry_run)

    assert database_rows() == before


def test_an_existing_new_session_is_refused_and_left_alone(source, new_uid):
    TriggerManager(new_uid).update_configuration({"t_x": {"after": ["x"], "run": ECHO}})
    before = database_rows()

    with pytest.raises(CommandError, match=re.escape(f"session {new_uid!r} already exists")):
        replay_session(source, new_uid)

    assert database_rows() == before


def test_replaying_a_session_into_itself_is_refused(source):
    before = database_rows()

    with pytest.raises(CommandError, match="already exists"):
        replay_session(source, source.session_uid)

    assert database_rows() == before


def test_a_source_configuration_that_no_longer_validates_is_refused(source, new_uid):
    TaskConfig.objects.filter(session=source.session, name="t_echo").update(run="tests.Removed")
    before = database_rows()

    with pytest.raises(CommandError) as raised:
        replay_session(source, new_uid)

    assert str(raised.value).startswith(
        f"session {source.session_uid!r}: Task 't_echo', directive 'run'"
    )
    assert database_rows() == before
