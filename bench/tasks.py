"""Tasks of the benchmark, registered with the example project's Celery app.

The benchmark's worker loads this module (``celery worker --include
bench.tasks``), and so does every benchmark process, since a configuration
may only name registered trigger tasks.
"""

from __future__ import annotations

import time

from django_triggers.task import TaskContext, TriggerTask
from example_project.celery import app


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
