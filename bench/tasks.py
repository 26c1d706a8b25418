"""Tasks of the benchmark, registered with the example project's Celery app.

The benchmark's worker loads this module (``celery worker --include
bench.tasks``), and so does every benchmark process, since a configuration
may only name registered trigger tasks. When ``BENCH_CELERY_QUEUE`` is set,
the app's default queue becomes that queue, so that what the worker sends
(cascades) goes back to the worker of the run and nowhere else.
"""

from __future__ import annotations

import os
import time

from bench.env import QUEUE_ENV
from django_triggers.task import TaskContext, TriggerTask
from example_project.celery import app

if os.environ.get(QUEUE_ENV):
    app.conf.task_default_queue = os.environ[QUEUE_ENV]


class Noop(TriggerTask):
    """A trigger task that does nothing; finishing it fires its name with ``{}``."""

    name = "bench.Noop"

    def _run(self, context: TaskContext) -> None:
        return None


app.register_task(Noop())


@app.task(name="bench.plain_noop")
def plain_noop() -> float:
    """A plain Celery task that does nothing but say when it ran (``time.time()``)."""
    return time.time()
