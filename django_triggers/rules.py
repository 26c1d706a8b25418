"""What a fire does, without I/O: from what it read to what it changes.

Given a fire's :class:`~django_triggers.stores.FireState` (the tasks
listening to the trigger, their open instances, the next instance numbers,
the latest kwargs of other triggers), :func:`plan_fire` decides which
instances the fire creates, which it feeds, which it schedules and which it
abandons. The instances are built and changed in memory; a store writes
them, and the engine sends the status changes once they are committed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django_triggers import statuses
from django_triggers.configuration import instance_name_for
from django_triggers.models import TaskConfig, TaskInstance, TriggerSession
from django_triggers.statuses import ABANDONED, SCHEDULED, UNSTARTED
from django_triggers.stores import FireState

#: ``(instance, old status, new status)``: a change to signal once committed.
StatusChange = tuple[TaskInstance, str | None, str]


@dataclass
class FirePlan:
    """What a fire changes."""

    #: New instances, unsaved.
    created: list[TaskInstance] = field(default_factory=list)
    #: Open instances the fire fed, changed in memory.
    touched: list[TaskInstance] = field(default_factory=list)
    #: Of both, those now ``scheduled``: to hand to their runners once committed.
    scheduled: list[TaskInstance] = field(default_factory=list)
    #: Every change of status, in order.
    status_changes: list[StatusChange] = field(default_factory=list)


def plan_fire(
    session: TriggerSession,
    state: FireState,
    trigger_name: str,
    kwargs: dict[str, Any],
    now: datetime,
) -> FirePlan:
    """The instances a fire of ``trigger_name`` with ``kwargs`` creates, feeds and schedules."""
    plan = FirePlan()
    needs_new: list[TaskConfig] = []
    for config in state.configs:
        if state.next_numbers[config.id] == 0:  # no instance yet
            needs_new.append(config)
            continue
        taken = False
        for instance in state.open_instances[config.id]:
            applied_after, applied_unless = apply_trigger(instance, config, trigger_name, kwargs)
            taken = taken or applied_after
            if applied_after or applied_unless:
                plan.touched.append(instance)
        if trigger_name == config.and_every and not taken:
            needs_new.append(config)

    latest = state.latest_kwargs
    for config in needs_new:
        instance = new_instance(
            session,
            config,
            number=state.next_number(config),
            status=UNSTARTED,
            kwargs={name: latest[name] for name in config.after if name in latest},
            unless_fired=[name for name in config.unless if name in latest],
            now=now,
            changes=plan.status_changes,
        )
        apply_trigger(instance, config, trigger_name, kwargs)
        plan.created.append(instance)

    for instance in (*plan.touched, *plan.created):
        config = instance.config
        if config.unless and set(config.unless) <= set(instance.unless_fired):
            change_status(instance, ABANDONED, now, plan.status_changes)
        elif set(config.after) <= instance.kwargs.keys():
            change_status(instance, SCHEDULED, now, plan.status_changes)
            instance.dispatched_at = now
            plan.scheduled.append(instance)
        else:
            stamp(instance, now)
    return plan


def apply_trigger(
    instance: TaskInstance, config: TaskConfig, trigger_name: str, kwargs: dict[str, Any]
) -> tuple[bool, bool]:
    """Let an unstarted instance see a fire; return (applied as after, applied as unless).

    An instance keeps the kwargs of the first fire of each trigger it sees.
    """
    applied_after = trigger_name in config.after and trigger_name not in instance.kwargs
    if applied_after:
        instance.kwargs[trigger_name] = kwargs
    applied_unless = trigger_name in config.unless and trigger_name not in instance.unless_fired
    if applied_unless:
        instance.unless_fired.append(trigger_name)
    return applied_after, applied_unless


def new_instance(
    session: TriggerSession,
    config: TaskConfig,
    *,
    number: int,
    status: str,
    kwargs: dict[str, Any],
    unless_fired: list[str],
    now: datetime,
    changes: list[StatusChange],
    parent: TaskInstance | None = None,
    eta: datetime | None = None,
) -> TaskInstance:
    """Instance ``number`` of ``config`` (unsaved), created in ``status``; noted in ``changes``."""
    name = instance_name_for(config.name, number)
    statuses.check_transition(name, None, status)
    iso = now.isoformat()
    deadline = None
    if config.within is not None and status == UNSTARTED:
        deadline = now + timedelta(seconds=config.within)
    instance = TaskInstance(
        session=session,
        config=config,
        name=name,
        task_name=config.name,
        number=number,
        status=status,
        kwargs=kwargs,
        unless_fired=unless_fired,
        metadata={"timestamps": {"created": iso, "last_modified": iso, status: iso}},
        parent=parent,
        retries=parent.retries + 1 if parent is not None else 0,
        eta=eta,
        deadline=deadline,
        celery_task_id=str(uuid.uuid4()) if status == SCHEDULED else "",
        dispatched_at=now if status == SCHEDULED else None,
        status_changed_at=now,
        created=now,
        modified=now,
    )
    changes.append((instance, None, status))
    return instance


def change_status(
    instance: TaskInstance, status: str, now: datetime, changes: list[StatusChange]
) -> None:
    """Move the instance to ``status`` in memory, if the status machine allows it.

    Stamps when it happened, gives a newly scheduled instance the id of its
    Celery task, and notes the change in ``changes``.
    """
    old = instance.status
    statuses.check_transition(instance.name, old, status)
    instance.status = status
    instance.status_changed_at = now
    stamp(instance, now)
    instance.metadata["timestamps"][status] = now.isoformat()
    if status == SCHEDULED and not instance.celery_task_id:
        instance.celery_task_id = str(uuid.uuid4())
    changes.append((instance, old, status))


def stamp(instance: TaskInstance, now: datetime) -> None:
    """Note in the instance that it changed at ``now``."""
    instance.metadata.setdefault("timestamps", {})["last_modified"] = now.isoformat()
    instance.modified = now
