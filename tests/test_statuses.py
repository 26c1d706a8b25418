"""The status machine: the transitions it declares are the only ones made, on every path."""

import re
from pathlib import Path

import pytest
from django.db.models.signals import post_save

from django_triggers.models import TaskInstance
from django_triggers.statuses import (
    ALLOWED,
    FINAL,
    TRANSITIONS,
    InvalidTransition,
    StatusConflict,
    check_transition,
)
from django_triggers.stores import store_for
from tests.helpers import RecordingRunner

DOCS = Path(__file__).resolve().parent.parent / "docs" / "statuses.rst"


@pytest.fixture
def scheduled(trigger_manager):
    """``t#0`` scheduled, handed to a runner that keeps it."""
    trigger_manager.update_configuration(
        {"t": {"after": ["go"], "run": "tests.Echo", "using": RecordingRunner.name}}
    )
    trigger_manager.fire("go")
    return trigger_manager.get_instance("t#0")


def test_the_final_statuses_are_the_resolved_ones():
    assert FINAL == TaskInstance.RESOLVED_STATUSES


@pytest.mark.parametrize("final", sorted(TaskInstance.RESOLVED_STATUSES))
def test_nothing_leaves_a_final_status(final):
    for target in TaskInstance.STATUSES:
        with pytest.raises(InvalidTransition, match="that status is final"):
            check_transition("t#0", final, target)


def test_an_unknown_status_is_refused_naming_the_known_ones():
    with pytest.raises(InvalidTransition, match="unknown status 'done'; expected one of"):
        check_transition("t#0", TaskInstance.RUNNING, "done")


def test_update_instance_status_refuses_a_transition_the_machine_does_not_declare(
    trigger_manager, triggers
):
    trigger_manager.update_configuration({"t": {"after": ["go"], "run": "tests.Echo"}})
    trigger_manager.fire("go")
    triggers.assertInstanceFinished("t#0")
    before = trigger_manager.get_instance("t#0")

    with pytest.raises(InvalidTransition, match="cannot go from finished to failed"):
        trigger_manager.update_instance_status("t#0", TaskInstance.FAILED, metadata={"x": 1})

    after = trigger_manager.get_instance("t#0")
    assert (after.status, after.metadata) == (before.status, before.metadata)


def test_update_instance_status_takes_a_declared_transition(trigger_manager, scheduled):
    assert TaskInstance.ABANDONED in ALLOWED[TaskInstance.SCHEDULED]

    trigger_manager.update_instance_status(scheduled, TaskInstance.ABANDONED)

    assert trigger_manager.get_instance("t#0").status == TaskInstance.ABANDONED


def test_a_status_write_is_guarded_by_the_status_it_starts_from(trigger_manager, scheduled):
    scheduled.status = TaskInstance.RUNNING

    with pytest.raises(StatusConflict, match="no longer running"):
        store_for("default").update_instance(
            scheduled, ["status"], expected_status=TaskInstance.RUNNING
        )

    assert trigger_manager.get_instance("t#0").status == TaskInstance.SCHEDULED


def test_post_save_is_never_sent_for_task_instances(trigger_manager, triggers):
    saved = []

    def note(sender, instance, **kwargs):
        saved.append(instance.name)

    post_save.connect(note, sender=TaskInstance)
    try:
        trigger_manager.update_configuration(
            {
                "t_fail": {"after": ["go"], "run": "tests.FailUntilReplayed"},
                "t_next": {"after": ["t_fail"], "run": "tests.Echo"},
                "t_skip": {"after": ["go"], "run": "tests.SkipSelf"},
                "t_wait": {"after": ["go", "never"], "run": "tests.Echo"},
            }
        )
        trigger_manager.fire("go")
        triggers.assertInstanceFailed("t_fail#0", RuntimeError)
        trigger_manager.replay_failed_instance("t_fail#0")
        triggers.assertInstanceFinished("t_next#0")
        trigger_manager.update_instance_status("t_wait#0", TaskInstance.ABANDONED)
        trigger_manager.update_instance_metadata("t_skip#0", {"seen": True})
    finally:
        post_save.disconnect(note, sender=TaskInstance)

    triggers.assertInstanceSkipped("t_skip#0")
    assert saved == []


def test_the_documented_transitions_are_the_declared_ones():
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(".. transitions-table-start")
    table = text[start : text.index(".. transitions-table-end")]
    rows = re.findall(r"\* - (\S+)\n\s+- ``(\w+)``", table)

    documented = {
        (None if source == "(new)" else source.strip("`"), target) for source, target in rows
    }

    assert documented == {(t.source, t.target) for t in TRANSITIONS}
