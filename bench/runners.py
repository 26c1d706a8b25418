"""A task runner that runs nothing: it notes which instances it was handed.

Fire benchmarks configure their tasks with ``"using": RecordingRunner.name``,
so that a fire's dispatch costs what the library does and not what a broker
does, and so that the run can check that every scheduled instance reached a
runner exactly once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from django_triggers.runners import BaseTaskRunner

if TYPE_CHECKING:
    from django_triggers.manager import TriggerManager
    from django_triggers.models import TaskInstance


class RecordingRunner(BaseTaskRunner):
    name = "bench.record"

    #: ``(session uid, instance name)`` of every instance handed over, in order.
    recorded: ClassVar[list[tuple[str, str]]] = []

    def run(self, manager: TriggerManager, task_instance: TaskInstance) -> None:
        self.recorded.append((manager.session_uid, task_instance.name))

    @classmethod
    def reset(cls) -> None:
        cls.recorded.clear()
