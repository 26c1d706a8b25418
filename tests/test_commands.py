"""What every ``triggers_*`` command does alike, and helpers for their test modules."""

import io
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from django.core.management import CommandError, call_command, load_command_class

from django_triggers.models import (
    FiredTrigger,
    TaskConfig,
    TaskInstance,
    TaskListener,
    TriggerSession,
)
from django_triggers.runners import BaseTaskRunner

ECHO = "tests.Echo"


class RecordingRunner(BaseTaskRunner):
    """Records the instances it is handed, by session, instead of running them."""

    name = "test_commands.recording"
    handed: ClassVar[list[tuple[str, str]]] = []

    def run(self, manager: Any, task_instance: TaskInstance) -> None:
        self.handed.append((manager.session_uid, task_instance.name))


def handed_to_runner(session_uid: str) -> list[str]:
    """Names of the instances of the session handed to :class:`RecordingRunner`."""
    return [name for uid, name in RecordingRunner.handed if uid == session_uid]


def run_command(name: str, *args: Any, **options: Any) -> tuple[str, str]:
    """Run a management command; return what it wrote to stdout and stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=stdout, stderr=stderr, **options)
    return stdout.getvalue(), stderr.getvalue()


def database_rows() -> dict[str, list[dict[str, Any]]]:
    """Every row the app stores, to check that a refused command changed nothing."""
    return {
        model._meta.label: list(model.objects.order_by("pk").values())
        for model in (TriggerSession, TaskConfig, TaskListener, FiredTrigger, TaskInstance)
    }


def json_file(path: Path, data: Any) -> str:
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


# -- every command -------------------------------------------------------------------

COMMAND_OPTIONS = {
    "triggers_show": ["--json"],
    "triggers_fire": ["--kwargs", "--kwargs-file", "--event-id", "--create", "--json"],
    "triggers_configure": ["--create", "--json"],
    "triggers_validate": ["--session"],
    "triggers_replay": ["--all-failed", "--kwargs", "--json"],
    "triggers_skip": ["--cascade", "--result", "--json"],
    "triggers_graph": ["--format"],
    "triggers_replay_session": ["--configuration", "--dry-run", "--batch-size"],
    "triggers_cleanup": ["--older-than", "--dry-run", "--batch-size", "--json"],
}


@pytest.mark.parametrize(("name", "options"), COMMAND_OPTIONS.items(), ids=list(COMMAND_OPTIONS))
def test_each_command_has_a_help_text_documenting_its_options(name, options):
    command = load_command_class("django_triggers", name)
    # Without whitespace: argparse wraps lines, even inside hyphenated words.
    usage = "".join(command.create_parser("manage.py", name).format_help().split())

    assert len(command.help) > 40
    assert "".join(command.help.split()) in usage
    for option in options:
        assert option in usage


@pytest.fixture
def configuration_file(tmp_path):
    return json_file(tmp_path / "configuration.json", {"t_echo": {"after": ["a"], "run": ECHO}})


UNKNOWN_SESSION_CALLS = {
    "show": ["triggers_show", "nope"],
    "show-json": ["triggers_show", "nope", "--json"],
    "fire": ["triggers_fire", "nope", "a"],
    "configure": ["triggers_configure", "nope", "{configuration}"],
    "validate": ["triggers_validate", "{configuration}", "--session", "nope"],
    "replay": ["triggers_replay", "nope", "t_echo#0"],
    "replay-all-failed": ["triggers_replay", "nope", "--all-failed"],
    "skip": ["triggers_skip", "nope", "t_echo#0"],
    "graph": ["triggers_graph", "nope"],
    "replay-session": ["triggers_replay_session", "nope", "new-session"],
}


@pytest.mark.parametrize("call", UNKNOWN_SESSION_CALLS.values(), ids=list(UNKNOWN_SESSION_CALLS))
def test_an_unknown_session_is_an_error_and_creates_no_session(
    transactional_db, configuration_file, call
):
    name, *args = (arg.format(configuration=configuration_file) for arg in call)

    with pytest.raises(CommandError, match="no trigger session has the uid 'nope'"):
        run_command(name, *args)

    assert not TriggerSession.objects.exists()


@pytest.mark.parametrize(
    "call",
    [["triggers_fire", "nope", "a"], ["triggers_configure", "nope", "{configuration}"]],
    ids=["fire", "configure"],
)
def test_commands_that_can_create_a_session_say_how(transactional_db, configuration_file, call):
    name, *args = (arg.format(configuration=configuration_file) for arg in call)

    with pytest.raises(CommandError, match="use --create to create it"):
        run_command(name, *args)


def test_a_change_to_a_session_whose_manager_class_cannot_be_imported_is_refused(
    trigger_manager,
):
    trigger_manager.update_configuration({"t_echo": {"after": ["a"], "run": ECHO}})
    TriggerSession.objects.filter(uid=trigger_manager.session_uid).update(
        manager_class="nowhere.Missing"
    )
    before = database_rows()

    with pytest.raises(CommandError, match=r"nowhere\.Missing"):
        run_command("triggers_fire", trigger_manager.session_uid, "a")

    assert database_rows() == before
