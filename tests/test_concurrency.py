"""Concurrent fires into one session: none lost, nothing scheduled twice.

Each worker fires its own triggers (each completing a one-shot task), the
shared ``tick`` (the ``andEvery`` of one task, and the single trigger of a
one-shot task), and ``shared_a``/``shared_b`` (together completing another
one-shot task).
"""

import json
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection, connections

from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskInstance
from tests.concurrent_firing import RUNNER_NAME, RecordingRunner, fire_all

WORKERS = 4
FIRES = 25
ROOT = Path(__file__).resolve().parent.parent


def configure(session_uid: str) -> TriggerManager:
    manager = TriggerManager(session_uid)
    configuration = {
        f"t_go_{worker}_{n}": {"after": [f"go_{worker}_{n}"], "run": "tests.Echo"}
        for worker in range(WORKERS)
        for n in range(FIRES)
    }
    configuration["t_everyTick"] = {"after": [], "andEvery": "tick", "run": "tests.Echo"}
    configuration["t_firstTick"] = {"after": ["tick"], "run": "tests.Echo"}
    configuration["t_shared"] = {"after": ["shared_a", "shared_b"], "run": "tests.Echo"}
    for directives in configuration.values():
        directives["using"] = RUNNER_NAME
    manager.update_configuration(configuration)
    return manager


def assert_exact_outcome(session_uid: str, dispatched: list[str]) -> None:
    fires_per_trigger = Counter(
        FiredTrigger.objects.filter(session__uid=session_uid).values_list("trigger_name", flat=True)
    )
    total = WORKERS * FIRES
    assert sum(fires_per_trigger.values()) == 3 * total
    assert fires_per_trigger["tick"] == total

    instances = TaskInstance.objects.filter(session__uid=session_uid)
    by_task = Counter(instances.values_list("task_name", flat=True))
    assert by_task["t_everyTick"] == total
    assert by_task["t_firstTick"] == 1
    assert by_task["t_shared"] == 1
    assert sum(1 for task in by_task if task.startswith("t_go_")) == total
    assert all(count == 1 for task, count in by_task.items() if task.startswith("t_go_"))
    assert set(instances.values_list("status", flat=True)) == {TaskInstance.SCHEDULED}

    # Every scheduled instance was handed to its runner exactly once.
    assert Counter(dispatched) == Counter(instances.values_list("name", flat=True))
    numbers = sorted(instances.filter(task_name="t_everyTick").values_list("number", flat=True))
    assert numbers == list(range(total))


@pytest.mark.django_db(transaction=True)
def test_fires_from_threads_into_one_session_are_all_applied_once():
    session_uid = f"threads-{uuid.uuid4().hex}"
    configure(session_uid)
    RecordingRunner.dispatched.clear()
    barrier = threading.Barrier(WORKERS)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            barrier.wait()
            fire_all(session_uid, worker, FIRES)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert_exact_outcome(session_uid, list(RecordingRunner.dispatched))


@pytest.mark.django_db(transaction=True)
def test_fires_from_processes_into_one_session_are_all_applied_once():
    session_uid = f"processes-{uuid.uuid4().hex}"
    configure(session_uid)
    env = dict(os.environ)
    if connection.vendor == "postgresql":
        env["TRIGGERS_PG_NAME"] = connection.settings_dict["NAME"]
    else:
        env["TRIGGERS_SQLITE_PATH"] = str(connection.settings_dict["NAME"])
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.concurrent_firing", session_uid, str(w), str(FIRES)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(WORKERS)
    ]
    try:
        for process in processes:
            assert process.stdout.readline().strip() == "ready"
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=300)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    assert [process.returncode for process in processes] == [0] * WORKERS
    dispatched = [name for output in outputs for name in json.loads(output.splitlines()[-1])]
    assert_exact_outcome(session_uid, dispatched)
