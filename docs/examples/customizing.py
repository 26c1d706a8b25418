"""The examples of the Custom managers and runners page."""

import logging

from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance
from django_triggers.runners import BaseTaskRunner
from django_triggers.task import get_trigger_task

audit = logging.getLogger("questionnaire.audit")


class AuditedManager(TriggerManager):
    """A manager that writes an audit line for every fire, replay and skip."""

    def _post_fire(self, trigger_name: str, tasks_scheduled: list[TaskInstance]) -> None:
        names = ", ".join(instance.name for instance in tasks_scheduled) or "nothing"
        audit.info("%s: %s fired, scheduling %s", self.session_uid, trigger_name, names)

    def _post_replay(self, new_instance: TaskInstance) -> None:
        audit.info("%s: %s replays a failed instance", self.session_uid, new_instance.name)

    def _post_skip(self, instance: TaskInstance, cascade: bool) -> None:
        audit.info("%s: %s skipped (cascade: %s)", self.session_uid, instance.name, cascade)


class InlineTaskRunner(BaseTaskRunner):
    """Run each instance at once, in the thread that committed the fire.

    ``fire()`` then returns only when the task, and its cascades, have run:
    handy in scripts and data migrations, never in a web request.
    """

    name = "inline"

    def run(self, manager: TriggerManager, task_instance: TaskInstance) -> None:
        task = get_trigger_task(task_instance.config.run)  # the task named by "run"
        task.execute(type(manager), manager.session_uid, task_instance.name)


class InlineManager(AuditedManager):
    """Tasks without ``using`` run inline in this manager's sessions."""

    default_task_runner_name = "inline"
