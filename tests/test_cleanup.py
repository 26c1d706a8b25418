"""``django_triggers.cleanup``: deleting sessions that are over."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from django_triggers.cleanup import _delete, delete_resolved_sessions, parse_age
from django_triggers.manager import TriggerManager
from django_triggers.models import (
    FiredTrigger,
    TaskConfig,
    TaskInstance,
    TaskListener,
    TriggerSession,
)
from django_triggers.runners import ThreadingTaskRunner
from tests.test_commands import ECHO, RecordingRunner

FAIL = "tests.Fail"
MONTH = timedelta(days=30)


def make_session(uid, *, run=ECHO, fire=("a",), using=None, after=("a",)):
    """A session with task ``t`` after ``after``, and the triggers ``fire`` fired; tasks done."""
    manager = TriggerManager(uid)
    directives = {"after": list(after), "run": run}
    if using:
        directives["using"] = using
    manager.update_configuration({"t": directives})
    for trigger in fire:
        manager.fire(trigger)
    ThreadingTaskRunner.join_all(timeout=60)
    return manager


def age(uid, **ago):
    """Move every activity of the session into the past, by ``timedelta(**ago)``.

    Its creation, configuration, fires and instances' status changes.
    """
    then = timezone.now() - timedelta(**ago)
    TriggerSession.objects.filter(uid=uid).update(created=then)
    TaskConfig.objects.filter(session__uid=uid).update(created=then, updated=then)
    FiredTrigger.objects.filter(session__uid=uid).update(fired_at=then)
    TaskInstance.objects.filter(session__uid=uid).update(status_changed_at=then)


def remaining():
    return set(TriggerSession.objects.values_list("uid", flat=True))


@pytest.fixture(autouse=True)
def _threading(settings):
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"


def test_an_old_resolved_session_is_deleted_with_all_its_rows(transactional_db):
    make_session("old")
    make_session("kept", after=("a", "b"))
    age("old", days=40)
    assert TaskInstance.objects.get(session__uid="old").status == TaskInstance.FINISHED

    delete_resolved_sessions(MONTH)

    assert remaining() == {"kept"}
    for model in (TaskConfig, TaskListener, FiredTrigger, TaskInstance):
        assert not model.objects.filter(session__uid="old").exists()
        assert model.objects.filter(session__uid="kept").exists()


@pytest.mark.parametrize(
    "options",
    [
        {"after": ("a", "b")},
        {"run": FAIL},
        {"using": RecordingRunner.name},
    ],
    ids=["unstarted", "failed", "scheduled"],
)
def test_an_old_session_with_an_unresolved_instance_is_kept(transactional_db, options):
    manager = make_session("open", **options)
    age("open", days=40)
    assert manager.get_unresolved_instances()

    deleted = delete_resolved_sessions(MONTH)

    assert deleted == 0
    assert remaining() == {"open"}


def test_every_resolved_status_counts_as_resolved(transactional_db):
    manager = TriggerManager("resolved")
    manager.update_configuration(
        {
            "t_replayed": {"after": ["a"], "run": FAIL},
            "t_skipped": {"after": ["a"], "run": FAIL},
            "t_abandoned": {"after": ["a", "b"], "unless": ["stop"], "run": ECHO},
        }
    )
    manager.fire("a")
    ThreadingTaskRunner.join_all(timeout=60)
    manager.skip_failed_instance("t_skipped#0")
    manager.replay_failed_instance("t_replayed#0")
    ThreadingTaskRunner.join_all(timeout=60)
    manager.skip_failed_instance("t_replayed#1")
    manager.fire("stop")
    age("resolved", days=40)
    assert set(TaskInstance.objects.values_list("status", flat=True)) == {
        TaskInstance.REPLAYED,
        TaskInstance.SKIPPED,
        TaskInstance.ABANDONED,
    }

    assert delete_resolved_sessions(MONTH) == 1
    assert remaining() == set()


def test_a_session_fired_into_recently_is_kept(transactional_db):
    manager = make_session("busy")
    age("busy", days=40)
    manager.fire("later")

    assert delete_resolved_sessions(MONTH) == 0
    assert remaining() == {"busy"}


def test_an_empty_session_is_as_old_as_its_creation(transactional_db):
    TriggerManager("old-empty").session  # noqa: B018  (created)
    TriggerManager("new-empty").session  # noqa: B018  (created)
    age("old-empty", days=40)

    assert delete_resolved_sessions(MONTH) == 1
    assert remaining() == {"new-empty"}


def test_an_old_session_whose_task_was_never_triggered_is_kept(transactional_db):
    make_session("never-fired", fire=())
    age("never-fired", days=40)

    assert delete_resolved_sessions(MONTH) == 0
    assert remaining() == {"never-fired"}


def test_an_old_session_with_a_task_still_waiting_for_its_first_instance_is_kept(
    transactional_db,
):
    manager = make_session("half-done")
    manager.update_configuration({"t_later": {"after": ["b"], "run": ECHO}})
    age("half-done", days=40)
    assert TaskInstance.objects.get(session__uid="half-done").status == TaskInstance.FINISHED

    assert delete_resolved_sessions(MONTH) == 0
    assert remaining() == {"half-done"}


def test_an_old_session_fired_into_but_never_configured_is_kept(transactional_db):
    TriggerManager("unconfigured").fire("a")
    age("unconfigured", days=40)

    assert delete_resolved_sessions(MONTH) == 0
    assert remaining() == {"unconfigured"}


def test_a_session_given_a_new_task_recently_is_kept(transactional_db):
    manager = make_session("extended")
    age("extended", days=40)

    manager.update_configuration({"t_new": {"after": ["b"], "run": ECHO}})

    assert delete_resolved_sessions(MONTH) == 0
    assert remaining() == {"extended"}


def test_a_recent_configuration_change_counts_as_activity(transactional_db):
    make_session("reconfigured")
    age("reconfigured", days=40)
    TaskConfig.objects.filter(session__uid="reconfigured").update(updated=timezone.now())

    assert delete_resolved_sessions(MONTH) == 0
    assert remaining() == {"reconfigured"}


def test_replacing_a_task_today_counts_as_activity(transactional_db):
    manager = make_session("replaced-today")
    age("replaced-today", days=40)

    manager.update_configuration({"t": {"after": ["a"], "run": ECHO, "within": 60}})

    assert delete_resolved_sessions(MONTH) == 0
    assert remaining() == {"replaced-today"}


def test_a_recent_status_change_counts_as_activity(transactional_db):
    manager = make_session("skipped-today", run=FAIL)
    age("skipped-today", days=40)

    manager.skip_failed_instance("t#0")

    assert delete_resolved_sessions(MONTH) == 0
    assert remaining() == {"skipped-today"}


def test_the_age_is_measured_from_now_given(transactional_db):
    make_session("recent")

    assert delete_resolved_sessions(MONTH, now=timezone.now() + timedelta(days=29)) == 0
    assert delete_resolved_sessions(MONTH, now=timezone.now() + timedelta(days=31)) == 1
    assert remaining() == set()


def test_a_dry_run_counts_the_sessions_and_deletes_nothing(transactional_db):
    for uid in ("old-1", "old-2"):
        make_session(uid)
        age(uid, days=40)

    assert delete_resolved_sessions(MONTH, dry_run=True) == 2
    assert remaining() == {"old-1", "old-2"}


def test_sessions_are_deleted_in_batches_each_reported(transactional_db):
    for uid in ("old-1", "old-2", "old-3"):
        make_session(uid)
        age(uid, days=40)
    lines = []

    deleted = delete_resolved_sessions(MONTH, batch_size=1, progress=lines.append)

    assert deleted == 3
    assert remaining() == set()
    assert [line.split(" (")[0] for line in lines] == [
        "batch 1: deleted 1 session(s)",
        "batch 2: deleted 1 session(s)",
        "batch 3: deleted 1 session(s)",
    ]
    assert [line.split(", ")[-1] for line in lines] == ["1 so far", "2 so far", "3 so far"]


def test_a_dry_run_reports_its_batches_too(transactional_db):
    for uid in ("old-1", "old-2", "old-3"):
        make_session(uid)
        age(uid, days=40)
    lines = []

    counted = delete_resolved_sessions(MONTH, batch_size=2, dry_run=True, progress=lines.append)

    assert counted == 3
    assert lines == [
        "batch 1: would delete 2 session(s), 2 so far",
        "batch 2: would delete 1 session(s), 3 so far",
    ]
    assert remaining() == {"old-1", "old-2", "old-3"}


def test_a_batch_reports_the_rows_it_deleted(transactional_db):
    make_session("old")
    age("old", days=40)
    lines = []

    delete_resolved_sessions(MONTH, progress=lines.append)

    # The session, its task config and listener, one fire, one cascade, one instance.
    assert lines == ["batch 1: deleted 1 session(s) (6 rows), 1 so far"]


def test_a_batch_is_checked_again_before_it_is_deleted(transactional_db):
    # A session selected for deletion, then fired into before its batch is deleted.
    manager = make_session("selected")
    age("selected", days=40)
    inactive_since = timezone.now() - MONTH
    manager.fire("meanwhile")

    assert _delete([manager.session.pk], inactive_since) == (0, 0)
    assert remaining() == {"selected"}


def test_a_batch_reconfigured_after_it_was_selected_is_kept(transactional_db):
    manager = make_session("selected")
    age("selected", days=40)
    inactive_since = timezone.now() - MONTH
    manager.update_configuration({"t_new": {"after": ["b"], "run": ECHO}})

    assert _delete([manager.session.pk], inactive_since) == (0, 0)
    assert remaining() == {"selected"}


@pytest.mark.parametrize(
    ("older_than", "batch_size", "message"),
    [
        (timedelta(0), 10, "positive age"),
        (timedelta(days=-1), 10, "positive age"),
        (timedelta(days=999_999_999), 10, "too large"),
        (MONTH, 0, "batch_size must be at least 1"),
    ],
    ids=["zero-age", "negative-age", "age-too-large", "batch-size-zero"],
)
def test_bad_arguments_are_refused_before_anything_is_deleted(
    transactional_db, older_than, batch_size, message
):
    make_session("old")
    age("old", days=40)

    with pytest.raises(ValueError, match=re.escape(message)):
        delete_resolved_sessions(older_than, batch_size=batch_size)

    assert remaining() == {"old"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("3600", timedelta(seconds=3600)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_parse_age_reads_a_number_and_a_unit(text, expected):
    assert parse_age(text) == expected


@pytest.mark.parametrize(
    "text", ["", "d", "0", "0d", "-5", "1.5h", "30x", "30 d", "thirty", "99999999999999w"]
)
def test_parse_age_refuses_anything_else(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_age(text)
