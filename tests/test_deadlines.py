"""The ``within`` directive: instances still waiting at their deadline are abandoned."""

import math
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from django_triggers.exceptions import ConfigurationError
from django_triggers.models import FiredTrigger, TaskConfig, TaskInstance
from django_triggers.recovery import recover
from tests.helpers import RecordingRunner

ECHO = "tests.Echo"

#: Instance names handed to the recording runner, in order.
DISPATCHED = RecordingRunner.dispatched


@pytest.fixture(autouse=True)
def _fresh_records():
    DISPATCHED.clear()
    yield
    DISPATCHED.clear()


@pytest.fixture
def waiting(trigger_manager):
    """``t_x#0`` waits for ``b`` after ``a`` fired; it has 30 seconds."""
    trigger_manager.update_configuration({"t_x": {"after": ["a", "b"], "run": ECHO, "within": 30}})
    trigger_manager.fire("a", {"v": 1})
    return trigger_manager.get_instance("t_x#0")


def timeout_fires(manager):
    return [
        (fired.trigger_name, fired.kwargs, fired.source)
        for fired in FiredTrigger.objects.filter(
            session=manager.session, trigger_name__endswith=".timeout"
        ).order_by("id")
    ]


# -- configuration -----------------------------------------------------------------


@pytest.mark.parametrize("within", [30, 0.5, 86400])
def test_within_accepts_a_positive_number_of_seconds(trigger_manager, within):
    trigger_manager.update_configuration({"t_x": {"after": ["a"], "run": ECHO, "within": within}})

    assert TaskConfig.objects.get(session=trigger_manager.session, name="t_x").within == within
    assert trigger_manager.get_configuration()["t_x"]["within"] == within


def test_a_task_without_within_has_no_deadline(trigger_manager):
    trigger_manager.update_configuration({"t_x": {"after": ["a", "b"], "run": ECHO}})
    trigger_manager.fire("a")

    assert TaskConfig.objects.get(session=trigger_manager.session, name="t_x").within is None
    assert "within" not in trigger_manager.get_configuration()["t_x"]
    assert trigger_manager.get_instance("t_x#0").deadline is None


@pytest.mark.parametrize(
    "within",
    [0, 0.0, -5, True, False, "30", math.nan, math.inf, -math.inf, [30]],
    ids=["zero", "zero-float", "negative", "true", "false", "str", "nan", "inf", "-inf", "list"],
)
def test_an_invalid_within_raises_configuration_error_and_stores_nothing(trigger_manager, within):
    with pytest.raises(ConfigurationError) as raised:
        trigger_manager.update_configuration(
            {"t_x": {"after": ["a"], "run": ECHO, "within": within}}
        )

    assert raised.value.task == "t_x"
    assert raised.value.directive == "within"
    assert "t_x" in str(raised.value)
    assert "within" in str(raised.value)
    assert not TaskConfig.objects.filter(session=trigger_manager.session).exists()


# -- deadlines -----------------------------------------------------------------------


def test_an_unstarted_instance_gets_its_deadline_within_seconds_after_its_creation(waiting):
    assert waiting.status == TaskInstance.UNSTARTED
    assert waiting.deadline == waiting.created + timedelta(seconds=30)


def test_each_instance_of_an_and_every_task_gets_its_own_deadline(trigger_manager):
    trigger_manager.update_configuration(
        {"t_each": {"after": ["ready"], "andEvery": "page", "run": ECHO, "within": 60}}
    )
    trigger_manager.fire("page", {"n": 0})
    trigger_manager.fire("page", {"n": 1})

    instances = trigger_manager.instances_of_task("t_each")
    assert [instance.status for instance in instances] == [TaskInstance.UNSTARTED] * 2
    created = [
        datetime.fromisoformat(instance.metadata["timestamps"]["created"]) for instance in instances
    ]
    assert [instance.deadline for instance in instances] == [
        moment + timedelta(seconds=60) for moment in created
    ]
    assert created[0] < created[1]


def test_recover_after_the_deadline_abandons_the_instance(trigger_manager, triggers, waiting):
    recover(now=waiting.deadline + timedelta(seconds=1))

    triggers.assertInstanceAbandoned("t_x#0")


def test_an_expired_instance_records_why_it_was_abandoned(trigger_manager, waiting):
    recover(now=waiting.deadline + timedelta(seconds=1))

    reason = trigger_manager.get_instance("t_x#0").metadata["abandoned_reason"]
    assert reason["reason"] == "deadline"
    assert reason["missing_triggers"] == ["b"]
    assert reason["within"] == 30


def test_an_expired_instance_records_the_abandoned_timestamp(trigger_manager, waiting):
    recover(now=waiting.deadline + timedelta(seconds=1))

    timestamps = trigger_manager.get_instance("t_x#0").metadata["timestamps"]
    assert "abandoned" in timestamps
    assert timestamps["created"] <= timestamps["abandoned"]


def test_an_expired_instance_fires_task_timeout_with_the_missing_triggers(trigger_manager, waiting):
    recover(now=waiting.deadline + timedelta(seconds=1))

    assert timeout_fires(trigger_manager) == [
        (
            "t_x.timeout",
            {"instance": "t_x#0", "missing_triggers": ["b"]},
            FiredTrigger.DEADLINE,
        )
    ]


def test_a_fallback_task_after_the_timeout_runs_when_the_deadline_passes(
    trigger_manager, triggers, waiting
):
    trigger_manager.update_configuration({"t_fallback": {"after": ["t_x.timeout"], "run": ECHO}})

    recover(now=waiting.deadline + timedelta(seconds=1))

    triggers.assertInstanceFinished(
        "t_fallback#0",
        {"received": {"t_x.timeout": {"instance": "t_x#0", "missing_triggers": ["b"]}}},
    )


def test_the_report_lists_the_expired_instance(trigger_manager, waiting):
    report = recover(now=waiting.deadline + timedelta(seconds=1))

    assert report.expired == [(trigger_manager.session_uid, "t_x#0")]


def test_recover_before_the_deadline_changes_nothing(trigger_manager, triggers, waiting):
    report = recover(now=waiting.deadline - timedelta(seconds=1))

    assert report.expired == []
    triggers.assertInstanceUnstarted("t_x#0")
    assert "abandoned_reason" not in trigger_manager.get_instance("t_x#0").metadata
    assert timeout_fires(trigger_manager) == []


def test_running_recover_twice_expires_the_instance_once(trigger_manager, triggers, waiting):
    trigger_manager.update_configuration(
        {"t_fallback": {"after": [], "andEvery": "t_x.timeout", "run": ECHO}}
    )
    later = waiting.deadline + timedelta(seconds=1)

    first = recover(now=later)
    second = recover(now=later)

    assert first.expired == [(trigger_manager.session_uid, "t_x#0")]
    assert second.expired == []
    assert len(timeout_fires(trigger_manager)) == 1
    triggers.assertInstanceFinished("t_fallback#0")
    triggers.assertInstanceMissing("t_fallback#1")


def past_deadline(manager, name):
    """Move the deadline of instance ``name`` one second into the past."""
    moved = TaskInstance.objects.filter(session=manager.session, name=name).update(
        deadline=timezone.now() - timedelta(seconds=1)
    )
    assert moved == 1


def test_a_finished_instance_is_not_expired(trigger_manager, triggers, waiting):
    trigger_manager.fire("b", {"v": 2})
    triggers.assertInstanceFinished("t_x#0")
    past_deadline(trigger_manager, "t_x#0")

    report = recover()

    assert report.expired == []
    triggers.assertInstanceFinished("t_x#0")
    assert "abandoned_reason" not in trigger_manager.get_instance("t_x#0").metadata
    assert timeout_fires(trigger_manager) == []


def test_a_scheduled_instance_is_not_expired(trigger_manager):
    trigger_manager.update_configuration(
        {"t_x": {"after": ["a"], "run": ECHO, "within": 30, "using": RecordingRunner.name}}
    )
    trigger_manager.fire("a")
    past_deadline(trigger_manager, "t_x#0")

    report = recover()

    assert report.expired == []
    assert trigger_manager.get_instance("t_x#0").status == TaskInstance.SCHEDULED
    assert DISPATCHED == ["t_x#0"]
    assert timeout_fires(trigger_manager) == []


def test_an_abandoned_instance_is_not_expired_again(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_x": {"after": ["a", "b"], "unless": ["stop"], "run": ECHO, "within": 30}}
    )
    trigger_manager.fire("a")
    trigger_manager.fire("stop")
    triggers.assertInstanceAbandoned("t_x#0")
    past_deadline(trigger_manager, "t_x#0")

    report = recover()

    assert report.expired == []
    assert "abandoned_reason" not in trigger_manager.get_instance("t_x#0").metadata
    assert timeout_fires(trigger_manager) == []


def test_an_unstarted_instance_whose_deadline_was_moved_into_the_past_is_expired(
    trigger_manager, triggers
):
    trigger_manager.update_configuration(
        {"t_x": {"after": ["a", "b"], "run": ECHO, "within": 3600}}
    )
    trigger_manager.fire("a")
    past_deadline(trigger_manager, "t_x#0")

    report = recover()

    assert report.expired == [(trigger_manager.session_uid, "t_x#0")]
    triggers.assertInstanceAbandoned("t_x#0")


def test_only_instances_past_their_deadline_are_expired(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_short": {"after": ["a", "b"], "run": ECHO, "within": 10},
            "t_long": {"after": ["a", "b"], "run": ECHO, "within": 1000},
        }
    )
    trigger_manager.fire("a")
    short = trigger_manager.get_instance("t_short#0")

    report = recover(now=short.deadline + timedelta(seconds=1))

    assert report.expired == [(trigger_manager.session_uid, "t_short#0")]
    triggers.assertInstanceAbandoned("t_short#0")
    triggers.assertInstanceUnstarted("t_long#0")
