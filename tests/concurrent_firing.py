"""Concurrent fires into one session, and what they must add up to.

Each worker fires its own triggers (each completing a one-shot task), the
shared ``tick`` (the ``andEvery`` of one task, and the single trigger of a
one-shot task), and ``shared_a``/``shared_b`` (together completing another
one-shot task). :func:`configure` sets up that session,
:func:`fire_from_processes` fires from several processes at once and
:func:`assert_exact_outcome` checks that every fire was applied once.

Run as ``python -m tests.concurrent_firing SESSION_UID WORKER_INDEX FIRES``:
prints ``ready``, waits for a line on stdin so that all processes start
together, fires, and prints one JSON line listing the instances this
process handed to a runner.
"""

import json
import os
import sys
from collections import Counter
from pathlib import Path

import django

from tests.helpers import RecordingRunner, run_processes_together, wait_for_the_start

ROOT = Path(__file__).resolve().parent.parent

RUNNER_NAME = RecordingRunner.name


def fire_all(session_uid: str, worker: int, fires: int) -> None:
    """Fire worker-specific triggers, shared triggers and an andEvery trigger."""
    from django_triggers.manager import TriggerManager

    manager = TriggerManager(session_uid)
    for n in range(fires):
        manager.fire(f"go_{worker}_{n}", {"worker": worker, "n": n})
        manager.fire("tick", {"worker": worker, "n": n})
        manager.fire("shared_a" if n % 2 else "shared_b", {"worker": worker})


def configure(session_uid: str, workers: int, fires: int):
    """Configure the session that ``workers * fires`` rounds of :func:`fire_all` complete."""
    from django_triggers.manager import TriggerManager

    manager = TriggerManager(session_uid)
    configuration = {
        f"t_go_{worker}_{n}": {"after": [f"go_{worker}_{n}"], "run": "tests.Echo"}
        for worker in range(workers)
        for n in range(fires)
    }
    configuration["t_everyTick"] = {"after": [], "andEvery": "tick", "run": "tests.Echo"}
    configuration["t_firstTick"] = {"after": ["tick"], "run": "tests.Echo"}
    configuration["t_shared"] = {"after": ["shared_a", "shared_b"], "run": "tests.Echo"}
    for directives in configuration.values():
        directives["using"] = RUNNER_NAME
    manager.update_configuration(configuration)
    return manager


def fire_from_processes(session_uid: str, workers: int, fires: int) -> list[str]:
    """Run :func:`fire_all` in ``workers`` processes started together; return what they dispatched.

    The processes use this process's database.
    """
    outputs = run_processes_together(
        [["tests.concurrent_firing", session_uid, str(w), str(fires)] for w in range(workers)]
    )
    return [name for output in outputs for name in output]


def outcome(session_uid: str, dispatched: list[str]) -> dict[str, object]:
    """What the fires added up to, to compare with :func:`expected_outcome`."""
    from django_triggers.models import FiredTrigger, TaskInstance

    fires_per_trigger = Counter(
        FiredTrigger.objects.filter(session__uid=session_uid).values_list("trigger_name", flat=True)
    )
    instances = TaskInstance.objects.filter(session__uid=session_uid)
    by_task = Counter(instances.values_list("task_name", flat=True))
    names = list(instances.values_list("name", flat=True))
    times_dispatched = Counter(dispatched)
    every_tick = sorted(instances.filter(task_name="t_everyTick").values_list("number", flat=True))
    return {
        "fires": sum(fires_per_trigger.values()),
        "fires of tick": fires_per_trigger["tick"],
        "instances of t_everyTick": by_task["t_everyTick"],
        "t_everyTick numbered 0, 1, 2...": every_tick == list(range(len(every_tick))),
        "instances of t_firstTick": by_task["t_firstTick"],
        "instances of t_shared": by_task["t_shared"],
        "t_go tasks with an instance": sum(1 for task in by_task if task.startswith("t_go_")),
        "t_go tasks with several instances": sorted(
            task for task, count in by_task.items() if task.startswith("t_go_") and count > 1
        ),
        "statuses": sorted(set(instances.values_list("status", flat=True))),
        # Every scheduled instance is handed to its runner exactly once.
        "instances not dispatched exactly once": sorted(
            name for name in names if times_dispatched[name] != 1
        ),
        "dispatched names of no instance": sorted(set(times_dispatched) - set(names)),
    }


def expected_outcome(workers: int, fires: int) -> dict[str, object]:
    """:func:`outcome` once ``workers * fires`` rounds of :func:`fire_all` are applied."""
    total = workers * fires
    return {
        "fires": 3 * total,
        "fires of tick": total,
        "instances of t_everyTick": total,
        "t_everyTick numbered 0, 1, 2...": True,
        "instances of t_firstTick": 1,
        "instances of t_shared": 1,
        "t_go tasks with an instance": total,
        "t_go tasks with several instances": [],
        "statuses": ["scheduled"],
        "instances not dispatched exactly once": [],
        "dispatched names of no instance": [],
    }


def main() -> None:
    session_uid, worker, fires = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    django.setup()
    import tests.tasks  # noqa: F401

    wait_for_the_start()
    fire_all(session_uid, worker, fires)
    print(json.dumps(RecordingRunner.dispatched), flush=True)


if __name__ == "__main__":
    main()
