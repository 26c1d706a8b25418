"""Found by ``app.autodiscover_tasks()`` in ``example_project/celery.py``, as ``<app>.tasks``."""

from typing import Any

from django_triggers.task import TaskContext, TriggerTask
from example_project.celery import app


class Discovered(TriggerTask):
    name = "tests.autodiscovered.Discovered"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        return {"discovered": True}


app.register_task(Discovered())
