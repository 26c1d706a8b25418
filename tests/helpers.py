"""Helpers shared by the test modules."""

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from django.db import connection, connections

from django_triggers.runners import BaseTaskRunner

T = TypeVar("T")


class RecordingRunner(BaseTaskRunner):
    """Records the names of the instances it is handed, instead of running them."""

    name = "recording"
    dispatched: ClassVar[list[str]] = []
    lock: ClassVar[threading.Lock] = threading.Lock()

    def run(self, manager: Any, task_instance: Any) -> None:
        with self.lock:
            self.dispatched.append(task_instance.name)


def run_together(calls: Sequence[Callable[[], T]], timeout: float = 120.0) -> list[T]:
    """Run each call in a thread of its own (so, its own database connection), all at once.

    Returns their results in order; re-raises the first exception any of them raised.
    """
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], T]) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = call()
        except BaseException as exc:  # re-raised by the calling thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if any(thread.is_alive() for thread in threads):
        raise AssertionError(f"threads still running after {timeout:g}s")
    if errors:
        raise errors[0]
    return results


def database_env() -> dict[str, str]:
    """Environment pointing ``example_project.settings`` at this process's database.

    For the processes a test starts (workers, firing processes), which must
    use the test database.
    """
    settings_dict = connection.settings_dict
    if connection.vendor == "postgresql":
        return {
            "TRIGGERS_DB": "postgres",
            "TRIGGERS_PG_NAME": str(settings_dict["NAME"]),
            "TRIGGERS_PG_HOST": str(settings_dict["HOST"] or "127.0.0.1"),
            "TRIGGERS_PG_PORT": str(settings_dict["PORT"] or "5432"),
            "TRIGGERS_PG_USER": str(settings_dict["USER"] or "postgres"),
            "TRIGGERS_PG_PASSWORD": str(settings_dict["PASSWORD"] or ""),
        }
    if connection.vendor == "mysql":
        return {
            "TRIGGERS_DB": "mariadb",
            "TRIGGERS_MYSQL_NAME": str(settings_dict["NAME"]),
            "TRIGGERS_MYSQL_HOST": str(settings_dict["HOST"] or "127.0.0.1"),
            "TRIGGERS_MYSQL_PORT": str(settings_dict["PORT"] or "3306"),
            "TRIGGERS_MYSQL_USER": str(settings_dict["USER"] or "root"),
            "TRIGGERS_MYSQL_PASSWORD": str(settings_dict["PASSWORD"] or ""),
        }
    return {"TRIGGERS_DB": "sqlite", "TRIGGERS_SQLITE_PATH": str(settings_dict["NAME"])}


ROOT = Path(__file__).resolve().parent.parent


def run_processes_together(commands: Sequence[Sequence[str]], timeout: float = 300.0) -> list[Any]:
    """Run ``python -m`` each command in a process of its own, all released at once.

    Each process uses this process's database (:func:`database_env`), calls
    :func:`wait_for_the_start` once it is ready, and prints its result as
    the last line of its output, in JSON; returns those results in order.
    """
    env = {**os.environ, **database_env()}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    try:
        for process in processes:
            line = process.stdout.readline().strip()  # type: ignore[union-attr]
            if line != "ready":
                raise RuntimeError(f"a process said {line!r} instead of 'ready'")
        for process in processes:
            process.stdin.write("go\n")  # type: ignore[union-attr]
            process.stdin.flush()  # type: ignore[union-attr]
        outputs = [process.communicate(timeout=timeout)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    statuses = [process.returncode for process in processes]
    if any(statuses):
        raise RuntimeError(f"processes exited with statuses {statuses}")
    return [json.loads(output.splitlines()[-1]) for output in outputs]


def wait_for_the_start() -> None:
    """In a process of :func:`run_processes_together`: say it is ready, wait for the others."""
    print("ready", flush=True)
    sys.stdin.readline()


def set_status(manager: Any, name: str, status: str, **fields: Any) -> None:
    """Test set-up: put instance ``name`` of the manager's session in ``status``, as it is.

    Written straight to its row, past the status machine, so that a test can
    start from any status; the library itself moves instances only along
    the machine's transitions.
    """
    from django_triggers.models import TaskInstance

    updated = TaskInstance.objects.filter(session=manager.session, name=name).update(
        status=status, **fields
    )
    assert updated == 1, f"no instance {name!r} in {manager.session_uid!r}"
