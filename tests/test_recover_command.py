"""The ``triggers_recover`` management command."""

import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_triggers.management.commands.triggers_recover import Command
from django_triggers.models import FiredTrigger, TaskInstance, TriggerSession
from django_triggers.runners import BaseTaskRunner

ROOT = Path(__file__).resolve().parent.parent
ECHO = "tests.Echo"
STUCK_INSTANCE = "django_triggers.exceptions.StuckInstance"
REPORT_KEYS = {
    "redispatched",
    "never_dispatched",
    "expired",
    "stuck_scheduled",
    "stuck_running",
    "failed_stuck",
    "errors",
}

#: ``True`` while the broker is down for :class:`FlakyRunner`.
BROKER_DOWN = {"down": False}
DISPATCHED: list[str] = []


class FlakyRunner(BaseTaskRunner):
    """Records what it is handed; raises while ``BROKER_DOWN`` says so."""

    name = "test_recover_command.flaky"

    def run(self, manager, task_instance):
        if BROKER_DOWN["down"]:
            raise ConnectionError("broker down")
        DISPATCHED.append(task_instance.name)


@pytest.fixture(autouse=True)
def _fresh_runner():
    BROKER_DOWN["down"] = False
    DISPATCHED.clear()
    yield
    BROKER_DOWN["down"] = False
    DISPATCHED.clear()


@pytest.fixture
def session(trigger_manager):
    """A session with ``t_x#0`` past its deadline, ``t_r#0`` running for two hours,
    and ``t_u#0`` scheduled ten minutes ago while the broker was down."""
    trigger_manager.update_configuration(
        {
            "t_x": {"after": ["a", "b"], "run": ECHO, "within": 30},
            "t_r": {"after": ["a"], "run": ECHO, "using": FlakyRunner.name},
            "t_u": {"after": ["c"], "run": ECHO, "using": FlakyRunner.name},
        }
    )
    trigger_manager.fire("a")
    trigger_manager.update_instance_status("t_r#0", TaskInstance.RUNNING)
    BROKER_DOWN["down"] = True
    trigger_manager.fire("c")
    BROKER_DOWN["down"] = False
    DISPATCHED.clear()
    now = timezone.now()
    instances = TaskInstance.objects.filter(session=trigger_manager.session)
    assert instances.filter(name="t_x#0").update(deadline=now - timedelta(seconds=1)) == 1
    assert instances.filter(name="t_r#0").update(status_changed_at=now - timedelta(hours=2)) == 1
    assert instances.filter(name="t_u#0").update(modified=now - timedelta(minutes=10)) == 1
    return trigger_manager


@pytest.fixture
def lost_messages(session):
    """``session``, plus ``t_l#0`` and ``t_m#0`` handed to their runner two hours ago and
    still scheduled: their messages were lost."""
    session.update_configuration(
        {name: {"after": ["d"], "run": ECHO, "using": FlakyRunner.name} for name in ("t_l", "t_m")}
    )
    session.fire("d")
    DISPATCHED.clear()
    two_hours_ago = timezone.now() - timedelta(hours=2)
    assert (
        TaskInstance.objects.filter(session=session.session, name__in=["t_l#0", "t_m#0"]).update(
            status_changed_at=two_hours_ago, dispatched_at=two_hours_ago
        )
        == 2
    )
    return session


def run(*args: str) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("triggers_recover", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def statuses(manager) -> dict[str, str]:
    return dict(TaskInstance.objects.filter(session=manager.session).values_list("name", "status"))


def test_plain_output_counts_each_section_and_lists_its_instances(session):
    stdout, _ = run()

    uid = session.session_uid
    assert stdout.splitlines() == [
        "redispatched: 1",
        f"  {uid} t_u#0 (never dispatched)",
        "expired: 1",
        f"  {uid} t_x#0",
        "stuck running: 1",
        f"  {uid} t_r#0",
        "failed stuck: 0",
        "errors: 0",
    ]


def test_instances_whose_message_was_lost_are_counted_as_redispatched(lost_messages):
    stdout, _ = run()

    uid = lost_messages.session_uid
    assert stdout.splitlines()[:4] == [
        "redispatched: 3",
        f"  {uid} t_u#0 (never dispatched)",
        f"  {uid} t_l#0 (stuck scheduled)",
        f"  {uid} t_m#0 (stuck scheduled)",
    ]
    assert sorted(DISPATCHED) == ["t_l#0", "t_m#0", "t_u#0"]


def test_json_lists_every_instance_handed_over_again_under_redispatched(lost_messages):
    stdout, _ = run("--json")

    report = json.loads(stdout)
    uid = lost_messages.session_uid
    assert report["redispatched"] == [
        {"session": uid, "instance": name} for name in ("t_u#0", "t_l#0", "t_m#0")
    ]
    assert report["never_dispatched"] == [{"session": uid, "instance": "t_u#0"}]
    assert report["stuck_scheduled"] == [
        {"session": uid, "instance": name} for name in ("t_l#0", "t_m#0")
    ]


def test_the_summary_on_stdout_is_all_the_command_prints(session):
    stdout, stderr = run()

    assert stderr == ""
    assert stdout.splitlines()[0] == "redispatched: 1"


def test_verbosity_2_reports_each_sweep_on_stdout_before_the_summary(session):
    stdout, stderr = run("--verbosity", "2")

    assert stderr == ""
    assert stdout.splitlines()[:5] == [
        "deadlines: 1 of 1 examined",
        "never dispatched: 1 of 1 examined",
        "stuck scheduled: 0 of 0 examined",
        "stuck running: 1 of 1 examined",
        "redispatched: 1",
    ]


def test_json_output_is_only_the_report_whatever_the_verbosity(session):
    stdout, stderr = run("--json", "--verbosity", "2")

    assert set(json.loads(stdout)) == REPORT_KEYS
    assert stderr == ""


def test_control_characters_in_uids_names_and_errors_are_spelled_out(session):
    uid = f"{session.session_uid}\x1b[2J"
    TriggerSession.objects.filter(uid=session.session_uid).update(
        uid=uid, manager_class="evil\x1b]0;owned\x07.Manager"
    )

    stdout, _ = run()

    assert "\x1b" not in stdout
    assert "\x07" not in stdout
    errors = stdout[stdout.index("errors: 2") :]
    assert f"  {session.session_uid}\\x1b[2J t_u#0: " in errors
    assert "evil\\x1b]0;owned\\x07" in errors


def test_the_command_expires_redispatches_and_leaves_running_instances_alone(session):
    run()

    assert statuses(session) == {
        "t_x#0": TaskInstance.ABANDONED,
        "t_r#0": TaskInstance.RUNNING,
        "t_u#0": TaskInstance.SCHEDULED,
    }
    assert DISPATCHED == ["t_u#0"]
    assert session.get_instance("t_u#0").dispatched_at is not None
    assert FiredTrigger.objects.filter(
        session=session.session, trigger_name="t_x.timeout", source=FiredTrigger.DEADLINE
    ).exists()


def test_json_output_is_the_report_as_json(session):
    stdout, _ = run("--json")

    report = json.loads(stdout)
    uid = session.session_uid
    assert set(report) == REPORT_KEYS
    assert report["redispatched"] == [{"session": uid, "instance": "t_u#0"}]
    assert report["never_dispatched"] == [{"session": uid, "instance": "t_u#0"}]
    assert report["expired"] == [{"session": uid, "instance": "t_x#0"}]
    assert report["stuck_scheduled"] == []
    assert report["stuck_running"] == [{"session": uid, "instance": "t_r#0"}]
    assert report["failed_stuck"] == []
    assert report["errors"] == []


def test_fail_stuck_fails_instances_running_for_too_long(session):
    stdout, _ = run("--json", "--fail-stuck")

    report = json.loads(stdout)
    assert report["failed_stuck"] == [{"session": session.session_uid, "instance": "t_r#0"}]
    instance = session.get_instance("t_r#0")
    assert instance.status == TaskInstance.FAILED
    assert instance.metadata["exception_type"] == STUCK_INSTANCE


def test_stuck_after_sets_how_long_an_instance_may_run(session):
    stdout, _ = run("--json", "--fail-stuck", "--stuck-after", str(3 * 3600))

    report = json.loads(stdout)
    assert report["stuck_running"] == []
    assert report["failed_stuck"] == []
    assert session.get_instance("t_r#0").status == TaskInstance.RUNNING


def test_redispatch_after_sets_how_long_an_undispatched_instance_waits(session):
    stdout, _ = run("--json", "--redispatch-after", "3600")

    assert json.loads(stdout)["redispatched"] == []
    assert DISPATCHED == []
    assert session.get_instance("t_u#0").dispatched_at is None


def test_a_session_whose_manager_class_cannot_be_imported_is_listed_under_errors(session):
    TriggerSession.objects.filter(uid=session.session_uid).update(manager_class="nowhere.Missing")

    stdout, _ = run("--json")

    errors = json.loads(stdout)["errors"]
    assert sorted(error["instance"] for error in errors) == ["t_u#0", "t_x#0"]
    assert all(error["session"] == session.session_uid for error in errors)
    assert all("nowhere.Missing" in error["error"] for error in errors)
    assert statuses(session)["t_x#0"] == TaskInstance.UNSTARTED


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--stuck-after", "abc"], ["seconds", "'abc'"]),
        (["--stuck-after=-1"], ["seconds", "'-1'"]),
        (["--stuck-after", "nan"], ["seconds", "'nan'"]),
        (["--stuck-after", "inf"], ["seconds", "'inf'"]),
        (["--redispatch-after", "soon"], ["seconds", "'soon'"]),
        (["--redispatch-after=-5"], ["seconds", "'-5'"]),
        (["--batch-size", "0"], ["--batch-size", "0"]),
        (["--batch-size", "abc"], ["--batch-size", "'abc'"]),
    ],
    ids=[
        "stuck-after-not-a-number",
        "stuck-after-negative",
        "stuck-after-nan",
        "stuck-after-inf",
        "redispatch-after-not-a-number",
        "redispatch-after-negative",
        "batch-size-zero",
        "batch-size-not-a-number",
    ],
)
def test_bad_input_raises_command_error_and_changes_nothing(session, args, expected):
    before = statuses(session)

    with pytest.raises(CommandError) as raised:
        run("--fail-stuck", *args)

    for fragment in expected:
        assert fragment in str(raised.value)
    assert statuses(session) == before
    assert session.get_instance("t_u#0").dispatched_at is None
    assert DISPATCHED == []
    assert not FiredTrigger.objects.filter(trigger_name__endswith=".timeout").exists()


@pytest.mark.parametrize("option", ["--stuck-after", "--redispatch-after"])
@pytest.mark.parametrize("value", ["1e12", "1e300", "3155760001"])
def test_a_wait_beyond_100_years_is_refused_naming_the_option_and_changes_nothing(
    session, option, value
):
    before = statuses(session)

    with pytest.raises(CommandError) as raised:
        run("--fail-stuck", option, value)

    message = str(raised.value)
    assert message.startswith(f"{option} ")
    assert "from 0 to 3155760000 (100 years)" in message
    assert repr(value) in message
    assert statuses(session) == before
    assert session.get_instance("t_u#0").dispatched_at is None
    assert DISPATCHED == []


def test_the_help_text_says_what_the_command_does():
    text = Command.help.lower()

    assert "deadline" in text
    assert "scheduled" in text
    assert "running" in text


def test_help_on_the_command_line_describes_the_command_and_its_options():
    completed = subprocess.run(
        [sys.executable, "manage.py", "triggers_recover", "--help"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "example_project.settings"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    out = " ".join(completed.stdout.split())
    assert "deadline" in out
    for option in ("--redispatch-after", "--stuck-after", "--fail-stuck", "--batch-size", "--json"):
        assert option in out
