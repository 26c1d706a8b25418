"""A task runner that only the ``TRIGGERS_RUNNERS`` setting makes known.

Nothing imports this module directly: a test lists the runner in the setting
and checks that ``using`` can name it.
"""

from django_triggers.runners import BaseTaskRunner

#: ``(session uid, instance name)`` of every instance handed to the runner.
HANDED_OVER: list[tuple[str, str]] = []


class SettingsOnlyRunner(BaseTaskRunner):
    """Records the instances it is handed, without running them."""

    name = "tests.settings_only"

    def run(self, manager, task_instance):
        HANDED_OVER.append((manager.session_uid, task_instance.name))
