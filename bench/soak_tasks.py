"""The soak's workflow and its tasks, loaded by every process of a soak run.

The soak's workers load this module (``celery worker --include
bench.soak_tasks``), and so do its firing processes and the soak itself: a
configuration may only name registered trigger tasks. Import it once Django
is set up.

Every task body first notes its start in a table of the soak's own
(:data:`BODY_STARTS`, created by the soak with :data:`CREATE_BODY_STARTS`),
in a statement committed before the body goes on: that table, not the
library's rows, tells whether any instance's body ever ran twice.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from django.db import connections

import tests.celery_worker_queue  # noqa: F401  (cascades and retries go to the soak's queue)
from django_triggers.task import TaskContext, TriggerTask
from example_project.celery import app

#: Seconds ``t_remind`` may wait for ``remind`` before the sweep abandons it.
REMIND_WITHIN = 15.0
#: How many times ``soak.Flaky`` retries itself before it finishes.
FLAKY_RETRIES = 2
RETRY_COOLDOWN = 1.0
#: Seconds a message delivered to a worker that died stays invisible in Redis
#: before another worker gets it again (Celery's default is an hour, longer
#: than any soak).
VISIBILITY_TIMEOUT = 30

BODY_STARTS = "soak_body_start"
CREATE_BODY_STARTS = f"""
CREATE TABLE {BODY_STARTS} (
    id bigserial PRIMARY KEY,
    session_uid varchar(255) NOT NULL,
    instance_name varchar(255) NOT NULL,
    task_name varchar(255) NOT NULL,
    retries integer NOT NULL,
    parent_id bigint,
    celery_task_id varchar(255) NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX soak_body_start_instance ON {BODY_STARTS} (session_uid, instance_name);
"""

#: Every directive the soak checks: after (in any order), andEvery, unless,
#: within and the fallback on its timeout, a task that retries itself, one that
#: fails until it is replayed, and a join of those two.
WORKFLOW: dict[str, dict[str, Any]] = {
    "t_a": {"after": ["start", "data"], "run": "soak.Step"},
    "t_page": {"after": ["t_a", "page"], "andEvery": "page", "run": "soak.Step"},
    "t_flaky": {"after": ["t_a"], "run": "soak.Flaky"},
    "t_fragile": {"after": ["t_a"], "run": "soak.Fragile"},
    "t_done": {"after": ["t_flaky", "t_fragile"], "run": "soak.Step"},
    "t_remind": {
        "after": ["start", "remind"],
        "unless": ["cancel"],
        "within": REMIND_WITHIN,
        "run": "soak.Step",
    },
    "t_fallback": {"after": ["t_remind.timeout"], "run": "soak.Step"},
}

#: Tasks with one instance per session, replays and retries aside.
ONE_SHOT_TASKS = frozenset(name for name, task in WORKFLOW.items() if "andEvery" not in task)

# Faults restart Redis: give up publishing soon (the recovery sweep hands over
# what was not published), and let a dead worker's messages come back within
# the run.
app.conf.broker_connection_timeout = 2
app.conf.task_publish_retry_policy = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
app.conf.broker_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT}


class SoakFailure(RuntimeError):
    """Raised on purpose by ``soak.Fragile`` on its first attempt."""


class SoakRetry(RuntimeError):
    """Why ``soak.Flaky`` asks to be retried."""


def note_body_start(task: TriggerTask, context: TaskContext) -> None:
    """Record that this instance's body starts, committed before the body goes on."""
    instance = context.task_instance
    with connections[context.manager.database].cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {BODY_STARTS} (session_uid, instance_name, task_name, retries, "
            f"parent_id, celery_task_id, pid) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                context.session_uid,
                instance.name,
                instance.task_name,
                instance.retries,
                instance.parent_id,
                task.request.id or "",
                os.getpid(),
            ],
        )


def work() -> None:
    """Stand in for a body's work: long enough for a killed process to die inside it."""
    time.sleep(random.uniform(0.02, 0.2))


class Step(TriggerTask):
    """Note the start, work, finish."""

    name = "soak.Step"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        note_body_start(self, context)
        work()
        return {"done": context.instance_name}


class Flaky(TriggerTask):
    """Retry itself :data:`FLAKY_RETRIES` times (each retry a new instance), then finish."""

    name = "soak.Flaky"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        note_body_start(self, context)
        work()
        if context.task_instance.retries < FLAKY_RETRIES:
            raise self.retry(exc=SoakRetry("not yet"), cooldown=RETRY_COOLDOWN)
        return {"done": context.instance_name}


class Fragile(TriggerTask):
    """Fail on a first attempt; a replay finishes."""

    name = "soak.Fragile"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        note_body_start(self, context)
        work()
        if context.task_instance.parent_id is None:
            raise SoakFailure("fails on its first attempt, to be replayed")
        return {"done": context.instance_name}


app.register_task(Step())
app.register_task(Flaky())
app.register_task(Fragile())
