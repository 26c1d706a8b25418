"""What a fire does, decided without the database (``django_triggers.rules``).

These tests have no database: pytest-django refuses any query, so each one
also shows that the rules read and write nothing.
"""

from datetime import UTC, datetime
from typing import Any

import pytest

from django_triggers.models import TaskConfig, TaskInstance, TriggerSession
from django_triggers.rules import plan_fire
from django_triggers.statuses import InvalidTransition
from django_triggers.stores import FireState

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
SESSION = TriggerSession(id=1, uid="rules")


def config(pk: int, name: str, after: list[str], **directives: Any) -> TaskConfig:
    return TaskConfig(
        id=pk,
        session=SESSION,
        name=name,
        after=after,
        run="tests.Echo",
        and_every=directives.get("and_every", ""),
        unless=directives.get("unless", []),
        within=directives.get("within"),
    )


def open_instance(task: TaskConfig, number: int, **kwargs: Any) -> TaskInstance:
    return TaskInstance(
        id=100 + number,
        session=SESSION,
        config=task,
        name=f"{task.name}#{number}",
        task_name=task.name,
        number=number,
        status=TaskInstance.UNSTARTED,
        kwargs=dict(kwargs),
        unless_fired=[],
        metadata={"timestamps": {}},
    )


def state(*configs: TaskConfig, open_instances=(), next_numbers=None, latest=None) -> FireState:
    read = FireState(manager_class="", configs=list(configs), latest_kwargs=latest or {})
    for instance in open_instances:
        read.open_instances[instance.config.id].append(instance)
    read.next_numbers = next_numbers or {c.id: None for c in configs}
    return read


def test_a_first_fire_creates_instance_0_waiting_for_the_other_triggers():
    t = config(1, "t", ["a", "b"])

    plan = plan_fire(SESSION, state(t, next_numbers={1: 0}), "a", {"x": 1}, NOW)

    [created] = plan.created
    assert (created.name, created.status, created.kwargs) == ("t#0", "unstarted", {"a": {"x": 1}})
    assert plan.scheduled == []
    assert plan.status_changes == [(created, None, "unstarted")]


def test_the_last_after_trigger_schedules_the_open_instance():
    t = config(1, "t", ["a", "b"])
    waiting = open_instance(t, 0, a={"x": 1})

    plan = plan_fire(SESSION, state(t, open_instances=[waiting]), "b", {"y": 2}, NOW)

    assert plan.touched == plan.scheduled == [waiting]
    assert waiting.status == TaskInstance.SCHEDULED
    assert waiting.kwargs == {"a": {"x": 1}, "b": {"y": 2}}
    assert (waiting.dispatched_at, bool(waiting.celery_task_id)) == (NOW, True)
    assert plan.status_changes == [(waiting, "unstarted", "scheduled")]


def test_an_instance_keeps_the_kwargs_of_the_first_fire_of_a_trigger():
    t = config(1, "t", ["a", "b"])
    waiting = open_instance(t, 0, a={"first": True})

    plan = plan_fire(SESSION, state(t, open_instances=[waiting]), "a", {"first": False}, NOW)

    assert plan.touched == []
    assert waiting.kwargs == {"a": {"first": True}}


def test_the_last_unless_trigger_abandons_the_open_instance():
    t = config(1, "t", ["a", "b"], unless=["cancel"])
    waiting = open_instance(t, 0, a={})

    plan = plan_fire(SESSION, state(t, open_instances=[waiting]), "cancel", {}, NOW)

    assert waiting.status == TaskInstance.ABANDONED
    assert plan.scheduled == []
    assert plan.status_changes == [(waiting, "unstarted", "abandoned")]


def test_and_every_creates_a_new_instance_with_the_latest_kwargs_of_the_other_triggers():
    t = config(1, "t", ["page", "user"], and_every="page")
    waiting = open_instance(t, 3, page={"n": 3})
    read = state(t, open_instances=[waiting], next_numbers={1: 4}, latest={"user": {"id": 7}})

    plan = plan_fire(SESSION, read, "page", {"n": 4}, NOW)

    [created] = plan.created
    assert created.name == "t#4"
    assert created.kwargs == {"user": {"id": 7}, "page": {"n": 4}}
    assert plan.scheduled == [created]


def test_a_new_instance_of_a_task_with_within_gets_its_deadline():
    t = config(1, "t", ["a", "b"], within=60)

    plan = plan_fire(SESSION, state(t, next_numbers={1: 0}), "a", {}, NOW)

    assert plan.created[0].deadline == datetime(2026, 12, 6, 9, 1, tzinfo=UTC)


def test_a_fire_cannot_move_an_instance_the_status_machine_does_not_let_it():
    t = config(1, "t", ["a"])
    running = open_instance(t, 0)
    running.status = TaskInstance.RUNNING

    with pytest.raises(InvalidTransition, match="cannot go from running to scheduled"):
        plan_fire(SESSION, state(t, open_instances=[running]), "a", {}, NOW)
