"""What the ``triggers_*`` commands do with input they cannot use: a message, never a traceback."""

import json
import re

import pytest
from django.core.management import CommandError
from django.db import DataError

from django_triggers.manager import TriggerManager
from django_triggers.models import TriggerSession
from tests.test_commands import ECHO, database_rows, json_file, run_command

FAIL = "tests.Fail"

#: A kwargs object whose value nests far deeper than any parser follows.
DEEP_KWARGS = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"


@pytest.fixture
def session(trigger_manager, triggers):
    """``t_echo`` runs after ``a``; ``t_fail#0`` failed."""
    trigger_manager.update_configuration(
        {"t_echo": {"after": ["a"], "run": ECHO}, "t_fail": {"after": ["f"], "run": FAIL}}
    )
    trigger_manager.fire("f")
    triggers.assertInstanceFailed("t_fail#0", ValueError)
    return trigger_manager


def configuration_naming_twice(tmp_path, task):
    """A configuration file naming ``task`` twice: JSON text allows it, json.loads hides it."""
    directives = json.dumps({"after": ["x"], "run": ECHO})
    path = tmp_path / "configuration.json"
    path.write_text(f'{{"{task}": {directives}, "{task}": {directives}}}', encoding="utf-8")
    return str(path)


def refused(*call, match):
    """Run the command; check it fails with ``match`` in its message and changes nothing."""
    before = database_rows()

    with pytest.raises(CommandError, match=re.escape(match)):
        run_command(*call)

    assert database_rows() == before


# -- JSON the parser refuses -------------------------------------------------------------


def test_fire_refuses_kwargs_nested_thousands_deep(session):
    refused(
        "triggers_fire",
        session.session_uid,
        "a",
        "--kwargs",
        DEEP_KWARGS,
        match="--kwargs is nested deeper than can be read: 5001 levels",
    )


def test_fire_refuses_kwargs_naming_a_key_twice(session):
    refused(
        "triggers_fire",
        session.session_uid,
        "a",
        "--kwargs",
        '{"answer": {"value": 1, "value": 2}}',
        match="--kwargs names the key 'value' twice in the object at answer",
    )


def test_fire_refuses_a_kwargs_file_naming_a_key_twice(session, tmp_path):
    path = tmp_path / "kwargs.json"
    path.write_text('{"id": 1, "id": 2}', encoding="utf-8")

    refused(
        "triggers_fire",
        session.session_uid,
        "a",
        "--kwargs-file",
        str(path),
        match=f"kwargs file '{path}' names the key 'id' twice in the top-level object",
    )


def test_configure_refuses_a_file_naming_a_task_twice(session, tmp_path):
    refused(
        "triggers_configure",
        session.session_uid,
        configuration_naming_twice(tmp_path, "t_new"),
        match="names the key 't_new' twice in the top-level object",
    )


def test_validate_refuses_a_file_naming_a_task_twice(transactional_db, tmp_path):
    path = configuration_naming_twice(tmp_path, "t_a")

    with pytest.raises(CommandError, match="names the key 't_a' twice"):
        run_command("triggers_validate", path)


def test_validate_refuses_a_task_naming_a_directive_twice(transactional_db, tmp_path):
    path = tmp_path / "configuration.json"
    path.write_text(
        f'{{"t_a": {{"after": ["x"], "run": "{ECHO}", "after": ["y"]}}}}', encoding="utf-8"
    )

    with pytest.raises(CommandError, match="names the key 'after' twice in the object at t_a"):
        run_command("triggers_validate", str(path))


def test_replay_session_refuses_a_configuration_naming_a_task_twice(session, tmp_path):
    refused(
        "triggers_replay_session",
        session.session_uid,
        "new-session",
        "--configuration",
        configuration_naming_twice(tmp_path, "t_a"),
        match="names the key 't_a' twice",
    )
    assert not TriggerSession.objects.filter(uid="new-session").exists()


def test_replay_refuses_kwargs_nested_thousands_deep(session):
    refused(
        "triggers_replay",
        session.session_uid,
        "t_fail#0",
        "--kwargs",
        DEEP_KWARGS,
        match="--kwargs is nested deeper than can be read",
    )


def test_skip_refuses_a_result_naming_a_key_twice(session):
    refused(
        "triggers_skip",
        session.session_uid,
        "t_fail#0",
        "--cascade",
        "--result",
        '{"subject": 1, "subject": 2}',
        match="--result names the key 'subject' twice",
    )


# -- values the manager refuses ----------------------------------------------------------


def test_fire_refuses_a_trigger_name_holding_a_nul_character(session):
    refused("triggers_fire", session.session_uid, "a\x00b", match="NUL character")


def test_fire_refuses_kwargs_holding_a_nul_character(session):
    refused(
        "triggers_fire",
        session.session_uid,
        "a",
        "--kwargs",
        '{"note": "x\\u0000y"}',
        match="the value at note holds a NUL character",
    )


def test_fire_refuses_kwargs_holding_a_lone_surrogate(session):
    refused(
        "triggers_fire",
        session.session_uid,
        "a",
        "--kwargs",
        '{"note": "\\ud800"}',
        match="the value at note holds a lone surrogate",
    )


def test_fire_refuses_kwargs_nested_deeper_than_can_be_stored(session):
    refused(
        "triggers_fire",
        session.session_uid,
        "a",
        "--kwargs",
        '{"a": ' + "[" * 150 + "]" * 150 + "}",
        match="nested deeper than 30 levels",
    )


def test_skip_refuses_a_result_holding_a_nul_character(session):
    refused(
        "triggers_skip",
        session.session_uid,
        "t_fail#0",
        "--result",
        '{"note": "\\u0000"}',
        match="holds a NUL character",
    )


def test_configure_refuses_a_task_name_holding_a_nul_character(session, tmp_path):
    path = json_file(tmp_path / "configuration.json", {"t_\x00": {"after": ["x"], "run": ECHO}})

    refused("triggers_configure", session.session_uid, path, match="NUL character")


def test_configure_refuses_a_within_of_more_than_a_century(session, tmp_path):
    path = json_file(
        tmp_path / "configuration.json",
        {"t_late": {"after": ["x"], "run": ECHO, "within": 10**12}},
    )

    refused(
        "triggers_configure",
        session.session_uid,
        path,
        match="Task 't_late', directive 'within'",
    )


def test_a_refusal_by_the_database_is_reported_as_a_command_error(session, monkeypatch):
    def refused_by_the_database(*args, **kwargs):
        raise DataError("value too long for type character varying(255)")

    monkeypatch.setattr(TriggerManager, "fire", refused_by_the_database)

    refused(
        "triggers_fire",
        session.session_uid,
        "a",
        match="the database refused a value: value too long",
    )


def test_a_value_too_deep_for_python_is_reported_as_a_command_error(session, monkeypatch):
    def too_deep(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(TriggerManager, "skip_failed_instance", too_deep)

    refused(
        "triggers_skip",
        session.session_uid,
        "t_fail#0",
        match="a value is nested too deeply to be stored",
    )


# -- names given on the command line -------------------------------------------------------

SESSION_UID_CALLS = {
    "fire": ["triggers_fire", "{uid}", "a"],
    "fire-create": ["triggers_fire", "{uid}", "a", "--create"],
    "configure": ["triggers_configure", "{uid}", "{configuration}"],
    "validate": ["triggers_validate", "{configuration}", "--session", "{uid}"],
    "replay": ["triggers_replay", "{uid}", "t_fail#0"],
    "skip": ["triggers_skip", "{uid}", "t_fail#0"],
    "replay-session": ["triggers_replay_session", "{uid}", "new-session"],
}


@pytest.mark.parametrize("call", SESSION_UID_CALLS.values(), ids=list(SESSION_UID_CALLS))
def test_a_session_uid_holding_a_nul_character_is_refused_naming_it(session, tmp_path, call):
    configuration = json_file(tmp_path / "c.json", {"t_x": {"after": ["x"], "run": ECHO}})
    uid = f"{session.session_uid}\x00"

    refused(
        *(arg.format(uid=uid, configuration=configuration) for arg in call),
        match=f"the session uid {uid!r} holds a NUL character (U+0000)",
    )


def test_replay_refuses_an_instance_name_holding_a_lone_surrogate(session):
    refused(
        "triggers_replay",
        session.session_uid,
        "t_fail#\udcff",
        match="the instance name 't_fail#\\udcff' holds a lone surrogate (U+DCFF)",
    )


def test_skip_refuses_an_instance_name_holding_a_nul_character(session):
    refused(
        "triggers_skip",
        session.session_uid,
        "t_fail#0\x00",
        match="the instance name 't_fail#0\\x00' holds a NUL character",
    )


def test_replay_session_refuses_a_new_uid_holding_a_nul_character(session):
    refused(
        "triggers_replay_session",
        session.session_uid,
        "new\x00",
        match="the new session uid 'new\\x00' holds a NUL character",
    )


def test_commands_spell_out_control_characters_of_the_names_they_print(trigger_manager, tmp_path):
    task = "t_\x1b[2Jclear"
    configuration = json_file(tmp_path / "c.json", {task: {"after": ["a"], "run": ECHO}})

    configured, _ = run_command("triggers_configure", trigger_manager.session_uid, configuration)
    validated, _ = run_command("triggers_validate", configuration)
    fired, _ = run_command("triggers_fire", trigger_manager.session_uid, "a")

    for output in (configured, validated, fired):
        assert "\x1b" not in output
        assert "t_\\x1b[2Jclear" in output
