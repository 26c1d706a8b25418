"""One step of the library raced by several processes: ``python -m tests.racing ACTION UID NAME``.

Run by :func:`tests.helpers.run_processes_together`: each process is ready,
waits for the others, then does ``ACTION`` to instance ``NAME`` of session
``UID``, and prints what it got, in JSON. What it schedules is only recorded
(``RecordingRunner``), not run.
"""

import json
import os
import sys
from typing import Any

import django


def start(session_uid: str, instance_name: str) -> dict[str, Any]:
    """What a worker does first with a message: start the instance, if it is scheduled."""
    from django_triggers.manager import TriggerManager

    _, instance = TriggerManager.start_for_worker(session_uid, instance_name)
    return {"started": instance is not None}


def replay(session_uid: str, instance_name: str) -> dict[str, Any]:
    """What an operator does to a failed instance: replay it."""
    from django_triggers.manager import TriggerManager

    manager = TriggerManager.for_existing_session(session_uid)
    try:
        clone = manager.replay_failed_instance(instance_name)
    except ValueError as exc:
        return {"clone": None, "refused": str(exc)}
    return {"clone": clone.name}


ACTIONS = {"start": start, "replay": replay}


def main() -> None:
    action, session_uid, instance_name = sys.argv[1:4]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    django.setup()
    from django.conf import settings

    import tests.tasks  # noqa: F401
    from tests.helpers import RecordingRunner, wait_for_the_start

    settings.TRIGGERS_DEFAULT_RUNNER = RecordingRunner.name
    wait_for_the_start()
    print(json.dumps(ACTIONS[action](session_uid, instance_name)), flush=True)


if __name__ == "__main__":
    main()
