"""Helpers shared by the test modules."""

import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from django.db import connections

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
