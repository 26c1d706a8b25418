"""The ``triggers_configure`` and ``triggers_validate`` management commands."""

import json
import re

import pytest
from django.core.management import CommandError

from django_triggers.models import TriggerSession
from tests.test_commands import ECHO, database_rows, json_file, run_command

CONFIGURATION = {
    "t_a": {"after": ["start"], "run": ECHO},
    "t_b": {"after": ["t_a"], "andEvery": "page", "run": ECHO, "withParams": {"p": {"k": 1}}},
}

#: ``(name, contents, message)`` of configuration files that must be refused.
BAD_FILES = [
    ("not-json", "{oops", "is not valid JSON"),
    ("array", json.dumps([CONFIGURATION]), "must be a JSON object, not an array"),
    (
        "missing-run",
        json.dumps({"t_x": {"after": ["a"]}}),
        "Task 't_x', directive 'run': this directive is required",
    ),
    (
        "unregistered-task",
        json.dumps({"t_x": {"after": ["a"], "run": "tests.NoSuchTask"}}),
        "Task 't_x', directive 'run'",
    ),
    (
        "unencodable-params",
        '{"t_x": {"after": ["a"], "run": "tests.Echo", "withParams": {"p": {"v": NaN}}}}',
        "Task 't_x', directive 'withParams'",
    ),
    (
        "cycle",
        json.dumps(
            {"t_x": {"after": ["t_y"], "run": ECHO}, "t_y": {"after": ["t_x"], "run": ECHO}}
        ),
        "cycle",
    ),
]


@pytest.fixture
def configuration_file(tmp_path):
    return json_file(tmp_path / "configuration.json", CONFIGURATION)


@pytest.fixture
def bad_file(request, tmp_path):
    """A configuration file from :data:`BAD_FILES`, and the error it must cause."""
    name, contents, message = request.param
    path = tmp_path / f"{name}.json"
    path.write_text(contents, encoding="utf-8")
    return str(path), message


bad_files = pytest.mark.parametrize(
    "bad_file", BAD_FILES, ids=[name for name, _, _ in BAD_FILES], indirect=True
)


# -- triggers_configure ------------------------------------------------------------------


def test_configure_applies_the_file_to_the_session(trigger_manager, configuration_file):
    run_command("triggers_configure", trigger_manager.session_uid, configuration_file)

    assert trigger_manager.get_configuration() == CONFIGURATION


def test_configure_keeps_the_tasks_the_file_does_not_name(trigger_manager, configuration_file):
    trigger_manager.update_configuration({"t_kept": {"after": ["x"], "run": ECHO}})

    run_command("triggers_configure", trigger_manager.session_uid, configuration_file)

    assert set(trigger_manager.get_configuration()) == {"t_kept", "t_a", "t_b"}


def test_configure_prints_the_tasks_configured(trigger_manager, configuration_file):
    stdout, _ = run_command("triggers_configure", trigger_manager.session_uid, configuration_file)

    assert stdout == (
        f"Configured 2 task(s) in session '{trigger_manager.session_uid}': t_a, t_b\n"
    )


def test_configure_json_prints_the_whole_configuration(trigger_manager, configuration_file):
    trigger_manager.update_configuration({"t_kept": {"after": ["x"], "run": ECHO}})

    stdout, _ = run_command(
        "triggers_configure", trigger_manager.session_uid, configuration_file, "--json"
    )

    assert json.loads(stdout) == {
        "session": trigger_manager.session_uid,
        "configured": ["t_a", "t_b"],
        "configuration": {"t_kept": {"after": ["x"], "run": ECHO}, **CONFIGURATION},
    }


def test_configure_with_create_creates_the_session(transactional_db, configuration_file):
    run_command("triggers_configure", "made-by-configure", configuration_file, "--create")

    session = TriggerSession.objects.get(uid="made-by-configure")
    assert sorted(session.configs.values_list("name", flat=True)) == ["t_a", "t_b"]


@bad_files
def test_configure_refuses_a_bad_file_and_changes_nothing(trigger_manager, bad_file):
    path, message = bad_file
    trigger_manager.update_configuration({"t_kept": {"after": ["x"], "run": ECHO}})
    before = database_rows()

    with pytest.raises(CommandError, match=re.escape(message)):
        run_command("triggers_configure", trigger_manager.session_uid, path)

    assert database_rows() == before


def test_configure_names_the_file_in_a_configuration_error(trigger_manager, tmp_path):
    path = json_file(tmp_path / "conf.json", {"t_x": {"after": ["a"]}})

    with pytest.raises(CommandError) as raised:
        run_command("triggers_configure", trigger_manager.session_uid, path)

    assert str(raised.value).startswith(f"{path}: Task 't_x'")


def test_configure_refuses_a_missing_file(trigger_manager, tmp_path):
    with pytest.raises(CommandError, match="cannot read configuration file"):
        run_command("triggers_configure", trigger_manager.session_uid, str(tmp_path / "no.json"))

    assert trigger_manager.get_configuration() == {}


@bad_files
def test_configure_with_create_keeps_no_session_when_the_file_is_refused(
    transactional_db, bad_file
):
    path, message = bad_file

    with pytest.raises(CommandError, match=re.escape(message)):
        run_command("triggers_configure", "made-by-configure", path, "--create")

    assert not TriggerSession.objects.exists()


# -- triggers_validate -------------------------------------------------------------------


def test_validate_says_valid_for_a_valid_file(transactional_db, configuration_file):
    stdout, _ = run_command("triggers_validate", configuration_file)

    assert stdout == "valid: 2 task(s) (t_a, t_b)\n"


@bad_files
def test_validate_refuses_an_invalid_file_with_the_error(transactional_db, bad_file):
    path, message = bad_file

    with pytest.raises(CommandError, match=re.escape(message)):
        run_command("triggers_validate", path)


def test_validate_refuses_a_missing_file(transactional_db, tmp_path):
    with pytest.raises(CommandError, match="cannot read configuration file"):
        run_command("triggers_validate", str(tmp_path / "no.json"))


def test_validate_finds_a_cycle_through_the_sessions_tasks(trigger_manager, tmp_path):
    trigger_manager.update_configuration({"t_x": {"after": ["t_y"], "run": ECHO}})
    path = json_file(tmp_path / "conf.json", {"t_y": {"after": ["t_x"], "run": ECHO}})

    with pytest.raises(CommandError, match="cycle: t_y -> t_x -> t_y"):
        run_command("triggers_validate", path, "--session", trigger_manager.session_uid)


def test_validate_without_a_session_does_not_know_its_tasks(trigger_manager, tmp_path):
    trigger_manager.update_configuration({"t_x": {"after": ["t_y"], "run": ECHO}})
    path = json_file(tmp_path / "conf.json", {"t_y": {"after": ["t_x"], "run": ECHO}})

    stdout, _ = run_command("triggers_validate", path)

    assert stdout == "valid: 1 task(s) (t_y)\n"


def test_validate_against_a_session_names_it(trigger_manager, configuration_file):
    stdout, _ = run_command(
        "triggers_validate", configuration_file, "--session", trigger_manager.session_uid
    )

    assert stdout == f"valid for session '{trigger_manager.session_uid}': 2 task(s) (t_a, t_b)\n"


def test_validate_stores_nothing(trigger_manager, configuration_file):
    trigger_manager.update_configuration({"t_kept": {"after": ["x"], "run": ECHO}})
    before = database_rows()

    run_command("triggers_validate", configuration_file, "--session", trigger_manager.session_uid)

    assert database_rows() == before
