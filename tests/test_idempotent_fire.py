"""Idempotent fires: ``fire(..., event_id=...)`` applies an event once per session."""

import uuid
from datetime import date
from decimal import Decimal

import pytest
from django.db import transaction

from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskInstance
from tests.helpers import RecordingRunner, run_together

ECHO = "tests.Echo"

#: Instance names handed to the recording runner, in order.
DISPATCHED = RecordingRunner.dispatched


#: Trigger names ``_post_fire`` was called with, in order.
HOOKED: list[str] = []


class HookCountingManager(TriggerManager):
    def _post_fire(self, trigger_name, tasks_scheduled):
        HOOKED.append(trigger_name)


@pytest.fixture(autouse=True)
def _fresh_records():
    DISPATCHED.clear()
    HOOKED.clear()
    yield
    DISPATCHED.clear()
    HOOKED.clear()


@pytest.fixture
def every_page(trigger_manager):
    """A session where every fire of ``page`` makes (and schedules) a new instance."""
    trigger_manager.update_configuration(
        {
            "t_each": {
                "after": [],
                "andEvery": "page",
                "run": ECHO,
                "using": RecordingRunner.name,
            },
            "t_other": {"after": ["other"], "run": ECHO, "using": RecordingRunner.name},
        }
    )
    return trigger_manager


def fires_of(manager: TriggerManager) -> list[tuple[str, dict, str]]:
    return [
        (fired.trigger_name, fired.kwargs, fired.event_id)
        for fired in FiredTrigger.objects.filter(session=manager.session).order_by("id")
    ]


def instance_names(manager: TriggerManager) -> list[str]:
    return sorted(
        TaskInstance.objects.filter(session=manager.session).values_list("name", flat=True)
    )


def names(instances: list[TaskInstance]) -> list[str]:
    return [instance.name for instance in instances]


def test_a_first_fire_with_an_event_id_is_applied_and_records_the_id(every_page):
    scheduled = every_page.fire("page", {"n": 1}, event_id="evt-1")

    assert names(scheduled) == ["t_each#0"]
    assert fires_of(every_page) == [("page", {"n": 1}, "evt-1")]
    assert instance_names(every_page) == ["t_each#0"]
    assert every_page.get_instance("t_each#0").status == TaskInstance.SCHEDULED
    assert DISPATCHED == ["t_each#0"]


def test_repeating_a_fire_with_the_same_event_id_stores_and_dispatches_nothing(every_page):
    every_page.fire("page", {"n": 1}, event_id="evt-1")

    every_page.fire("page", {"n": 1}, event_id="evt-1")

    assert fires_of(every_page) == [("page", {"n": 1}, "evt-1")]
    assert instance_names(every_page) == ["t_each#0"]
    assert DISPATCHED == ["t_each#0"]


def test_repeating_a_fire_with_the_same_event_id_returns_the_first_fires_instances(every_page):
    first = every_page.fire("page", {"n": 1}, event_id="evt-1")

    repeated = every_page.fire("page", {"n": 1}, event_id="evt-1")

    assert names(repeated) == names(first) == ["t_each#0"]
    assert [instance.pk for instance in repeated] == [instance.pk for instance in first]


def test_repeating_a_fire_that_scheduled_nothing_returns_nothing(every_page):
    every_page.update_configuration({"t_pair": {"after": ["left", "right"], "run": ECHO}})
    assert every_page.fire("left", {"side": "L"}, event_id="evt-left") == []

    assert every_page.fire("left", {"side": "L"}, event_id="evt-left") == []
    assert fires_of(every_page) == [("left", {"side": "L"}, "evt-left")]
    assert every_page.get_instance("t_pair#0").kwargs == {"left": {"side": "L"}}


def test_a_repeated_event_does_not_call_post_fire_again(every_page):
    manager = HookCountingManager(every_page.session_uid)
    manager.fire("page", {"n": 1}, event_id="evt-1")

    manager.fire("page", {"n": 1}, event_id="evt-1")

    assert HOOKED == ["page"]


def test_a_repeat_with_kwargs_stored_in_another_form_is_recognised(every_page):
    kwargs = {"when": date(2024, 1, 2), "amount": Decimal("1.50"), "pair": (1, 2)}
    every_page.fire("page", kwargs, event_id="evt-1")

    repeated = every_page.fire("page", dict(kwargs), event_id="evt-1")

    assert names(repeated) == ["t_each#0"]
    assert instance_names(every_page) == ["t_each#0"]


def test_a_repeat_without_kwargs_matches_a_first_fire_with_empty_kwargs(every_page):
    every_page.fire("page", {}, event_id="evt-1")

    repeated = every_page.fire("page", event_id="evt-1")

    assert names(repeated) == ["t_each#0"]
    assert instance_names(every_page) == ["t_each#0"]


def test_an_event_id_of_a_rolled_back_fire_can_be_used_again(every_page):
    with pytest.raises(RuntimeError, match="roll back"), transaction.atomic():
        every_page.fire("page", {"n": 1}, event_id="evt-1")
        raise RuntimeError("roll back")

    scheduled = every_page.fire("page", {"n": 2}, event_id="evt-1")

    assert names(scheduled) == ["t_each#0"]
    assert fires_of(every_page) == [("page", {"n": 2}, "evt-1")]
    assert DISPATCHED == ["t_each#0"]


def test_fires_without_an_event_id_are_all_applied(every_page):
    every_page.fire("page", {"n": 1})
    every_page.fire("page", {"n": 1})

    assert fires_of(every_page) == [("page", {"n": 1}, ""), ("page", {"n": 1}, "")]
    assert instance_names(every_page) == ["t_each#0", "t_each#1"]


def test_fires_with_different_event_ids_are_all_applied(every_page):
    every_page.fire("page", {"n": 1}, event_id="evt-1")
    every_page.fire("page", {"n": 1}, event_id="evt-2")

    assert instance_names(every_page) == ["t_each#0", "t_each#1"]
    assert DISPATCHED == ["t_each#0", "t_each#1"]


def test_reusing_an_event_id_for_another_trigger_raises_and_stores_nothing(every_page):
    every_page.fire("page", {"n": 1}, event_id="evt-1")

    with pytest.raises(ValueError, match="evt-1"):
        every_page.fire("other", {"n": 1}, event_id="evt-1")

    assert fires_of(every_page) == [("page", {"n": 1}, "evt-1")]
    assert instance_names(every_page) == ["t_each#0"]
    assert DISPATCHED == ["t_each#0"]


def test_reusing_an_event_id_with_other_kwargs_raises_and_stores_nothing(every_page):
    every_page.fire("page", {"n": 1}, event_id="evt-1")

    with pytest.raises(ValueError, match="evt-1"):
        every_page.fire("page", {"n": 2}, event_id="evt-1")

    assert fires_of(every_page) == [("page", {"n": 1}, "evt-1")]
    assert instance_names(every_page) == ["t_each#0"]
    assert DISPATCHED == ["t_each#0"]


def test_reusing_an_event_id_without_kwargs_after_a_fire_with_kwargs_raises(every_page):
    every_page.fire("page", {"n": 1}, event_id="evt-1")

    with pytest.raises(ValueError, match="evt-1"):
        every_page.fire("page", event_id="evt-1")

    assert instance_names(every_page) == ["t_each#0"]


def test_the_same_event_id_in_two_sessions_is_applied_in_each(every_page):
    elsewhere = TriggerManager(f"test-{uuid.uuid4().hex}")
    elsewhere.update_configuration(
        {"t_each": {"after": [], "andEvery": "page", "run": ECHO, "using": RecordingRunner.name}}
    )

    mine = every_page.fire("page", {"n": 1}, event_id="evt-1")
    theirs = elsewhere.fire("page", {"n": 2}, event_id="evt-1")

    assert names(mine) == names(theirs) == ["t_each#0"]
    assert mine[0].pk != theirs[0].pk
    assert fires_of(every_page) == [("page", {"n": 1}, "evt-1")]
    assert fires_of(elsewhere) == [("page", {"n": 2}, "evt-1")]
    assert DISPATCHED == ["t_each#0", "t_each#0"]


def test_an_event_id_of_255_characters_is_accepted(every_page):
    event_id = "e" * 255

    every_page.fire("page", {"n": 1}, event_id=event_id)

    assert fires_of(every_page) == [("page", {"n": 1}, event_id)]


@pytest.mark.parametrize(
    "event_id",
    ["", "e" * 256, 42, b"evt-1", ["evt-1"]],
    ids=["empty", "256-chars", "int", "bytes", "list"],
)
def test_an_invalid_event_id_raises_value_error_and_stores_nothing(every_page, event_id):
    with pytest.raises(ValueError, match="event id"):
        every_page.fire("page", {"n": 1}, event_id=event_id)

    assert fires_of(every_page) == []
    assert instance_names(every_page) == []
    assert DISPATCHED == []


def test_concurrent_fires_of_one_event_are_applied_once(every_page):
    def fire_once() -> list[str]:
        manager = TriggerManager(every_page.session_uid)
        return names(manager.fire("page", {"n": 1}, event_id="evt-concurrent"))

    returned = run_together([fire_once] * 4)

    assert returned == [["t_each#0"]] * 4
    assert fires_of(every_page) == [("page", {"n": 1}, "evt-concurrent")]
    assert instance_names(every_page) == ["t_each#0"]
    assert DISPATCHED == ["t_each#0"]


def test_a_fired_trigger_lists_the_instances_it_scheduled(trigger_manager):
    trigger_manager.update_configuration(
        {
            "t_one": {"after": ["a"], "run": ECHO, "using": RecordingRunner.name},
            "t_two": {"after": ["a"], "run": ECHO, "using": RecordingRunner.name},
            "t_waiting": {"after": ["a", "b"], "run": ECHO, "using": RecordingRunner.name},
        }
    )

    trigger_manager.fire("a", event_id="evt-a")

    fired = FiredTrigger.objects.get(session=trigger_manager.session)
    assert sorted(fired.scheduled_instances) == ["t_one#0", "t_two#0"]


def test_a_fired_trigger_that_scheduled_nothing_lists_no_instances(trigger_manager):
    trigger_manager.update_configuration(
        {"t_waiting": {"after": ["a", "b"], "run": ECHO, "using": RecordingRunner.name}}
    )

    trigger_manager.fire("a")

    fired = FiredTrigger.objects.get(session=trigger_manager.session)
    assert fired.scheduled_instances == []
    assert trigger_manager.get_instance("t_waiting#0").status == TaskInstance.UNSTARTED


def test_a_fired_trigger_without_an_event_id_also_lists_what_it_scheduled(trigger_manager):
    trigger_manager.update_configuration(
        {"t_one": {"after": ["a"], "run": ECHO, "using": RecordingRunner.name}}
    )

    trigger_manager.fire("a")

    fired = FiredTrigger.objects.get(session=trigger_manager.session)
    assert fired.scheduled_instances == ["t_one#0"]
