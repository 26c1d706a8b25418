"""Fire triggers into one session from a separate process (used by test_concurrency).

Run as ``python -m tests.concurrent_firing SESSION_UID WORKER_INDEX FIRES``:
prints ``ready``, waits for a line on stdin so that all processes start
together, fires, and prints one JSON line listing the instances this
process handed to a runner.
"""

import json
import os
import sys
import threading

import django

from django_triggers.runners import BaseTaskRunner

RUNNER_NAME = "recording"


class RecordingRunner(BaseTaskRunner):
    """Records the instances it is handed instead of running them."""

    name = RUNNER_NAME
    dispatched: list[str] = []
    lock = threading.Lock()

    def run(self, manager, task_instance):
        with self.lock:
            self.dispatched.append(task_instance.name)


def fire_all(session_uid: str, worker: int, fires: int) -> None:
    """Fire worker-specific triggers, shared triggers and an andEvery trigger."""
    from django_triggers.manager import TriggerManager

    manager = TriggerManager(session_uid)
    for n in range(fires):
        manager.fire(f"go_{worker}_{n}", {"worker": worker, "n": n})
        manager.fire("tick", {"worker": worker, "n": n})
        manager.fire("shared_a" if n % 2 else "shared_b", {"worker": worker})


def main() -> None:
    session_uid, worker, fires = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    django.setup()
    import tests.tasks  # noqa: F401

    print("ready", flush=True)
    sys.stdin.readline()
    fire_all(session_uid, worker, fires)
    print(json.dumps(RecordingRunner.dispatched), flush=True)


if __name__ == "__main__":
    main()
