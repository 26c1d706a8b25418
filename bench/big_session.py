"""A big session, written straight into the tables: for measuring and testing the admin.

:func:`build_big_session` creates, with ``bulk_create`` and in a few seconds,
a session as a long-running application leaves it: 2,000 configured tasks in
chains (each task after the one twenty before it, so a hundred steps deep),
5,000 instances, most finished, some failed, in flight, waiting or replayed,
about 4,800 fires several seconds apart, and a few hundred tasks without an
instance yet. Task names are not in workflow order alphabetically.

The rows are written as the manager would leave them, listeners included, so
that the session can still be fired into, but no manager code runs: only the
reading side (the admin, ``triggers_show``) is measured.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction

from django_triggers.models import (
    FiredTrigger,
    TaskConfig,
    TaskInstance,
    TaskListener,
    TriggerSession,
)

#: Words task names start with, so that alphabetical order mixes the steps.
WORDS = ("validate", "send", "import", "export", "archive", "notify", "compute", "clean")
#: How many chains run side by side: the width of each step of the workflow.
CHAINS = 20
TRACEBACK = "".join(
    f'  File "/srv/app/pipeline/steps.py", line {100 + line}, in step_{line}\n'
    f"    result = handler(payload, context=context, retries=retries)\n"
    for line in range(12)
)


@dataclass(frozen=True)
class BigSession:
    session: TriggerSession
    tasks: int
    instances: int
    fires: int
    failed: list[str]


def task_name(index: int) -> str:
    return f"{WORDS[index % len(WORDS)]}_{index:04d}"


def build_big_session(
    uid: str = "big-session",
    *,
    tasks: int = 2000,
    instances: int = 5000,
    fires: int = 4800,
    failed: int = 30,
    in_flight: int = 20,
    waiting: int = 200,
    not_started: int = 300,
    started: datetime | None = None,
) -> BigSession:
    """Create the session ``uid`` (see the module's documentation); return what it holds."""
    started = started or datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    with transaction.atomic():
        session = TriggerSession.objects.create(uid=uid)
        configs = []
        for index in range(tasks):
            after = ["start"] if index < CHAINS else [task_name(index - CHAINS)]
            and_every = "page" if index % 10 == 5 else ""
            if and_every:
                after.append(and_every)
            configs.append(
                TaskConfig(
                    session=session,
                    name=task_name(index),
                    after=after,
                    and_every=and_every,
                    unless=["cancel"] if index % 50 == 7 else [],
                    run="pipeline.tasks.Step",
                    with_params={"step": index},
                )
            )
        TaskConfig.objects.bulk_create(configs)
        configs = list(TaskConfig.objects.filter(session=session).order_by("id"))
        TaskListener.objects.bulk_create(
            [
                TaskListener(session=session, config=config, trigger_name=name, role=role)
                for config in configs
                for role, names in ((TaskListener.AFTER, config.after), ("unless", config.unless))
                for name in names
            ]
        )

        # Instances: one per started task, more for the tasks repeated on each page.
        with_instances = configs[: tasks - not_started]
        counts = {config.name: 1 for config in with_instances}
        repeated = [config.name for config in with_instances if config.and_every]
        extra = instances - len(with_instances)
        for position in range(max(extra, 0)):
            counts[repeated[position % len(repeated)]] += 1
        # The last started tasks are those failed, in flight or waiting.
        special = [config.name for config in with_instances[::-1] if not config.and_every]
        status_of = {}
        for name in special[:waiting]:
            status_of[name] = TaskInstance.UNSTARTED
        for name in special[waiting : waiting + in_flight]:
            status_of[name] = TaskInstance.RUNNING if len(status_of) % 2 else TaskInstance.SCHEDULED
        failed_names = special[waiting + in_flight : waiting + in_flight + failed]
        for name in failed_names:
            status_of[name] = TaskInstance.FAILED

        rows = []
        moment = started
        for config in with_instances:
            for number in range(counts[config.name]):
                moment += timedelta(seconds=1)
                last = number == counts[config.name] - 1
                status = status_of.get(config.name, TaskInstance.FINISHED) if last else "finished"
                kwargs = {
                    name: {"value": number, "note": "x" * (400 if number == 3 else 8)}
                    for name in config.after
                }
                if status == TaskInstance.UNSTARTED:
                    kwargs = {}
                metadata: dict[str, object] = {"timestamps": {"created": moment.isoformat()}}
                if status == TaskInstance.FAILED:
                    metadata.update(
                        exception_type="pipeline.errors.StepError",
                        exception_message=f"step {config.name} could not read its input",
                        traceback=f"Traceback (most recent call last):\n{TRACEBACK}StepError\n",
                    )
                rows.append(
                    TaskInstance(
                        session=session,
                        config=config,
                        name=f"{config.name}#{number}",
                        task_name=config.name,
                        number=number,
                        status=status,
                        kwargs=kwargs,
                        result={"rows": number} if status == TaskInstance.FINISHED else None,
                        metadata=metadata,
                        log_level=logging.ERROR if status == TaskInstance.FAILED else 0,
                        status_changed_at=moment,
                        created=moment,
                        dispatched_at=moment if status != TaskInstance.UNSTARTED else None,
                    )
                )
        TaskInstance.objects.bulk_create(rows, batch_size=1000)

        fire_rows = []
        names = [config.name for config in with_instances]
        for number in range(fires):
            trigger = "page" if number % 3 == 0 else names[number % len(names)]
            fire_rows.append(
                FiredTrigger(
                    session=session,
                    trigger_name=trigger,
                    kwargs={"page": number} if trigger == "page" else {"rows": number},
                    source=FiredTrigger.APPLICATION if trigger == "page" else FiredTrigger.CASCADE,
                    scheduled_instances=[] if trigger == "page" else [f"{trigger}#0"],
                )
            )
        FiredTrigger.objects.bulk_create(fire_rows, batch_size=1000)
        # fired_at is set on creation: spread the fires, ten every seven seconds.
        ids = list(
            FiredTrigger.objects.filter(session=session).order_by("id").values_list("id", flat=True)
        )
        for offset in range(0, len(ids), 10):
            FiredTrigger.objects.filter(id__in=ids[offset : offset + 10]).update(
                fired_at=started + timedelta(seconds=offset * 0.7)
            )
    return BigSession(session, tasks, len(rows), fires, failed_names)


def build_small_sessions(count: int, prefix: str = "small") -> None:
    """``count`` small sessions of three tasks and a few instances, around the big one."""
    with transaction.atomic():
        sessions = TriggerSession.objects.bulk_create(
            [TriggerSession(uid=f"{prefix}-{index}") for index in range(count)]
        )
        sessions = list(TriggerSession.objects.filter(uid__startswith=f"{prefix}-"))
        TaskConfig.objects.bulk_create(
            [
                TaskConfig(session=session, name=name, after=after, run="pipeline.tasks.Step")
                for session in sessions
                for name, after in (("fetch", ["start"]), ("store", ["fetch"]), ("mail", ["store"]))
            ]
        )
        configs = TaskConfig.objects.filter(session__in=sessions, name__in=["fetch", "store"])
        TaskInstance.objects.bulk_create(
            [
                TaskInstance(
                    session_id=config.session_id,
                    config=config,
                    name=f"{config.name}#0",
                    task_name=config.name,
                    number=0,
                    status=TaskInstance.FINISHED,
                )
                for config in configs
            ]
        )
