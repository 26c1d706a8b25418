"""The ``triggers_cleanup`` management command."""

import json
import re
from datetime import datetime, timedelta

import pytest
from django.core.management import CommandError
from django.utils import timezone

from tests.test_cleanup import age, make_session, remaining
from tests.test_commands import database_rows, run_command


@pytest.fixture
def sessions(transactional_db, settings):
    """``old`` is over; ``old-open`` waits for ``b``; ``recent`` is over but was active lately."""
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"
    make_session("old")
    make_session("old-open", after=("a", "b"))
    make_session("recent")
    age("old", days=40)
    age("old-open", days=40)
    age("recent", days=10)


def test_cleanup_deletes_old_resolved_sessions_only(sessions):
    stdout, _ = run_command("triggers_cleanup", "--older-than", "30d")

    assert remaining() == {"old-open", "recent"}
    assert stdout.startswith("Deleted 1 session(s) resolved and inactive since ")


def test_cleanup_keeps_an_old_session_whose_task_has_no_instance_yet(sessions):
    make_session("never-fired", fire=())
    age("never-fired", days=40)

    stdout, _ = run_command("triggers_cleanup", "--older-than", "30d")

    assert remaining() == {"old-open", "recent", "never-fired"}
    assert stdout.startswith("Deleted 1 session(s) ")


def test_cleanup_reads_a_plain_number_as_seconds(transactional_db, settings):
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"
    for uid, minutes in (("two-hours", 120), ("half-hour", 30)):
        make_session(uid)
        age(uid, minutes=minutes)

    run_command("triggers_cleanup", "--older-than", "3600")

    assert remaining() == {"half-hour"}


def test_cleanup_reports_each_batch_on_stderr(sessions):
    age("recent", days=40)

    _, stderr = run_command("triggers_cleanup", "--older-than", "30d", "--batch-size", "1")

    assert [line.split(" (")[0] for line in stderr.splitlines()] == [
        "batch 1: deleted 1 session(s)",
        "batch 2: deleted 1 session(s)",
    ]
    assert remaining() == {"old-open"}


def test_a_dry_run_says_what_it_would_delete_and_deletes_nothing(sessions):
    before = database_rows()

    stdout, stderr = run_command("triggers_cleanup", "--older-than", "30d", "--dry-run")

    assert stdout.startswith("Would delete 1 session(s) resolved and inactive since ")
    assert stderr == "batch 1: would delete 1 session(s), 1 so far\n"
    assert database_rows() == before


def test_cleanup_json_prints_the_count(sessions):
    stdout, stderr = run_command("triggers_cleanup", "--older-than", "30d", "--json")

    data = json.loads(stdout)
    assert data["sessions"] == 1
    assert data["dry_run"] is False
    inactive_since = datetime.fromisoformat(data["inactive_since"])
    assert abs(timezone.now() - timedelta(days=30) - inactive_since) < timedelta(minutes=1)
    assert stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: --older-than"),
        (["--older-than", "abc"], "--older-than: expected an age"),
        (["--older-than", "0"], "greater than 0"),
        (["--older-than=-5d"], "'-5d'"),
        (["--older-than", "30x"], "'30x'"),
        (["--older-than", "1.5h"], "'1.5h'"),
        (["--older-than", "99999999999999w"], "too large"),
        (["--older-than", "9999999d"], "too large"),
        (["--older-than", "30d", "--batch-size", "0"], "--batch-size must be at least 1"),
    ],
    ids=[
        "missing",
        "not-a-duration",
        "zero",
        "negative",
        "unknown-unit",
        "fraction",
        "too-large-for-a-timedelta",
        "too-large-for-a-date",
        "batch-size-zero",
    ],
)
def test_bad_input_is_refused_and_deletes_nothing(sessions, args, message):
    before = database_rows()

    with pytest.raises(CommandError, match=re.escape(message)):
        run_command("triggers_cleanup", *args)

    assert database_rows() == before
