"""Cookbook: run a task once every other task of the session is resolved."""

from collections import Counter
from typing import Any

from django_triggers.manager import TriggerManager
from django_triggers.models import TaskConfig, TaskInstance
from django_triggers.task import TaskContext, TriggerTask
from example_project.celery import app

#: Fired once per session, when every task not marked as a finalizer is resolved.
ALL_RESOLVED = "allTasksResolved"
#: The custom directive marking the tasks that wait for ALL_RESOLVED.
FINALIZER = "finalizer"


class FinalizingManager(TriggerManager):
    """Fires ``allTasksResolved`` once the session's work is over."""

    def _post_fire(self, trigger_name: str, tasks_scheduled: list[TaskInstance]) -> None:
        if trigger_name != ALL_RESOLVED:
            self.finalize_if_done()

    def _post_skip(self, instance: TaskInstance, cascade: bool) -> None:
        self.finalize_if_done()

    def finalize_if_done(self) -> None:
        """Fire ALL_RESOLVED if every task but the finalizers is resolved.

        Call it after changing a status with ``update_instance_status``,
        which runs no hook.
        """
        watched = {
            config.name
            for config in TaskConfig.objects.filter(session=self.session)
            if not config.extras.get(FINALIZER)
        }
        unresolved = {config.name for config in self.get_unresolved_tasks()}
        if watched and not watched & unresolved:
            # Hooks of concurrent cascades may all get here: the event id
            # makes every fire after the first change nothing.
            self.fire(ALL_RESOLVED, event_id=ALL_RESOLVED)


class SendReport(TriggerTask):
    """Sum up how the session's instances ended."""

    name = "cookbook.SendReport"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        own_task = context.task_instance.task_name
        others = context.manager.session.instances.exclude(task_name=own_task)
        statuses = Counter(others.values_list("status", flat=True))
        return {"statuses": dict(sorted(statuses.items()))}


class Step(TriggerTask):
    """A step of the workflow; fails when its kwargs say so."""

    name = "cookbook.Step"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        if any(kwargs.get("fail") for kwargs in context.trigger_kwargs.values()):
            raise RuntimeError("this step failed")
        return {"done": context.instance_name}


app.register_task(SendReport())
app.register_task(Step())

CONFIGURATION: dict[str, dict[str, Any]] = {
    "t_importSubject": {
        "after": ["firstPageReceived", "questionnaireComplete"],
        "run": Step.name,
    },
    "t_importResponses": {"after": ["t_importSubject"], "run": Step.name},
    "t_computeScore": {"after": ["t_importResponses"], "run": Step.name},
    "t_sendReport": {"after": [ALL_RESOLVED], "run": SendReport.name, FINALIZER: True},
}
