"""The ``triggers_fire`` management command."""

import json
import re

import pytest
from django.core.management import CommandError

from django_triggers.models import FiredTrigger, TaskInstance, TriggerSession
from tests.test_commands import (
    ECHO,
    RecordingRunner,
    database_rows,
    handed_to_runner,
    json_file,
    run_command,
)


@pytest.fixture
def session(trigger_manager):
    """``t_echo`` runs after ``a``; ``t_recorded`` after ``r``, handed to the recording runner."""
    trigger_manager.update_configuration(
        {
            "t_echo": {"after": ["a"], "run": ECHO},
            "t_recorded": {"after": ["r"], "run": ECHO, "using": RecordingRunner.name},
        }
    )
    return trigger_manager


def fire(manager, trigger, *args):
    stdout, _ = run_command("triggers_fire", manager.session_uid, trigger, *args)
    return stdout


def test_fire_prints_the_instances_it_scheduled(session):
    stdout = fire(session, "a")

    assert stdout == f"Fired 'a' in session '{session.session_uid}': scheduled t_echo#0\n"


def test_fire_says_when_it_scheduled_nothing(session):
    stdout = fire(session, "unknown")

    assert stdout.endswith(": scheduled nothing\n")


def test_fire_hands_the_scheduled_instances_to_their_runner(session):
    fire(session, "r")

    assert handed_to_runner(session.session_uid) == ["t_recorded#0"]


def test_fire_waits_for_the_instances_it_runs_in_threads(session):
    fire(session, "a")

    instance = session.get_instance("t_echo#0")
    assert instance.status == TaskInstance.FINISHED
    assert instance.result == {"received": {"a": {}}}


def test_fire_records_the_command_as_the_source(session):
    fire(session, "a")

    fired = FiredTrigger.objects.get(session=session.session, trigger_name="a")
    assert fired.source == FiredTrigger.COMMAND


def test_fire_passes_the_kwargs_given_as_json(session):
    fire(session, "a", "--kwargs", '{"answer": 42, "nested": {"ok": true}}')

    assert session.get_instance("t_echo#0").result == {
        "received": {"a": {"answer": 42, "nested": {"ok": True}}}
    }


def test_fire_reads_the_kwargs_from_a_file(session, tmp_path):
    path = json_file(tmp_path / "kwargs.json", {"from": "file"})

    fire(session, "a", "--kwargs-file", path)

    assert session.get_instance("t_echo#0").result == {"received": {"a": {"from": "file"}}}


def test_fire_json_lists_the_scheduled_instances(session):
    data = json.loads(fire(session, "a", "--json"))

    assert data == {"session": session.session_uid, "trigger": "a", "scheduled": ["t_echo#0"]}


def test_fire_with_an_event_id_twice_fires_once(session):
    first = json.loads(fire(session, "r", "--event-id", "evt-1", "--json"))
    second = json.loads(fire(session, "r", "--event-id", "evt-1", "--json"))

    assert first["scheduled"] == second["scheduled"] == ["t_recorded#0"]
    assert FiredTrigger.objects.filter(session=session.session, trigger_name="r").count() == 1
    assert handed_to_runner(session.session_uid) == ["t_recorded#0"]


def test_fire_with_create_creates_the_session_and_fires_into_it(transactional_db):
    stdout, _ = run_command("triggers_fire", "made-by-fire", "a", "--create")

    session = TriggerSession.objects.get(uid="made-by-fire")
    assert list(session.fired.values_list("trigger_name", "source")) == [("a", "command")]
    assert stdout.endswith("scheduled nothing\n")


def test_fire_with_create_keeps_no_session_when_the_fire_is_refused(transactional_db):
    with pytest.raises(CommandError, match="the value at x is not encodable"):
        run_command("triggers_fire", "made-by-fire", "a", "--create", "--kwargs", '{"x": NaN}')

    assert not TriggerSession.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a", "--kwargs", "{not json"], "--kwargs is not valid JSON"),
        (["a", "--kwargs", "[1, 2]"], "--kwargs must be a JSON object, not an array"),
        (["a", "--kwargs", '"text"'], "--kwargs must be a JSON object, not a string"),
        (["a", "--kwargs", "null"], "--kwargs must be a JSON object, not null"),
        (["a", "--kwargs", '{"deep": {"x": Infinity}}'], "the value at deep.x is not encodable"),
        (["a", "--kwargs-file", "/nonexistent/kwargs.json"], "cannot read kwargs file"),
        (["a", "--kwargs-file", "BAD_FILE"], "is not valid JSON"),
        (["a", "--kwargs", "{}", "--kwargs-file", "BAD_FILE"], "not allowed with argument"),
        (["", "--kwargs", "{}"], "a trigger name must be a non-empty string"),
        (["r", "--event-id", "evt-0", "--kwargs", '{"other": 1}'], "event id 'evt-0'"),
    ],
    ids=[
        "invalid-json",
        "array",
        "string",
        "null",
        "unencodable",
        "missing-file",
        "invalid-json-file",
        "kwargs-and-kwargs-file",
        "empty-trigger-name",
        "event-id-reused-for-other-kwargs",
    ],
)
def test_bad_input_is_refused_and_changes_nothing(session, tmp_path, args, message):
    fire(session, "r", "--event-id", "evt-0")
    bad_file = tmp_path / "bad.json"
    bad_file.write_text("{oops", encoding="utf-8")
    before = database_rows()

    with pytest.raises(CommandError, match=re.escape(message)):
        fire(session, *(arg.replace("BAD_FILE", str(bad_file)) for arg in args))

    assert database_rows() == before
    assert handed_to_runner(session.session_uid) == ["t_recorded#0"]


def test_kwargs_and_kwargs_file_given_as_options_are_refused(session, tmp_path):
    path = json_file(tmp_path / "kwargs.json", {})

    with pytest.raises(CommandError, match="not both"):
        run_command("triggers_fire", session.session_uid, "a", kwargs="{}", kwargs_file=path)

    assert not FiredTrigger.objects.filter(session=session.session).exists()
