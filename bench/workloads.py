"""The session configurations the benchmark fires into.

All of them run :class:`bench.tasks.Noop`. The fire benchmarks hand their
scheduled instances to :class:`bench.runners.RecordingRunner` (the ``using``
directive); the cascade chain goes through the default runner, Celery.
"""

from __future__ import annotations

from typing import Any

from bench.runners import RecordingRunner

NOOP = "bench.Noop"

#: The two ``after`` triggers of the measured task of the fire benchmarks.
FIRST = "first"
SECOND = "second"
TARGET = "target"

#: The ``andEvery`` trigger of the session the memory benchmark fires into.
TICK = "tick"
START = "start"
TICKER = "ticker"

Configuration = dict[str, dict[str, Any]]


def fire_case_configuration(tasks: int) -> Configuration:
    """``tasks`` tasks: ``target`` after ``first`` and ``second``, the others after triggers
    nothing fires."""
    configuration: Configuration = {
        TARGET: {"after": [FIRST, SECOND], "run": NOOP, "using": RecordingRunner.name}
    }
    for i in range(1, tasks):
        configuration[f"other_{i}"] = {
            "after": [f"unrelated_{i}_a", f"unrelated_{i}_b"],
            "run": NOOP,
            "using": RecordingRunner.name,
        }
    return configuration


def one_trigger_tasks_configuration(triggers: list[str]) -> Configuration:
    """One task per trigger, each run as soon as its trigger fires."""
    return {
        f"on_{trigger}": {"after": [trigger], "run": NOOP, "using": RecordingRunner.name}
        for trigger in triggers
    }


def ticker_configuration() -> Configuration:
    """``ticker``: once ``start`` has fired, a new instance, scheduled at once, per ``tick``."""
    return {
        TICKER: {
            "after": [START],
            "andEvery": TICK,
            "run": NOOP,
            "using": RecordingRunner.name,
        }
    }


def chain_task(index: int) -> str:
    return f"t_{index}"


def chain_configuration(length: int) -> Configuration:
    """``t_0`` after ``start``, then ``t_i`` after ``t_{i-1}``: each one's cascade runs the next."""
    return {
        chain_task(i): {"after": [START if i == 0 else chain_task(i - 1)], "run": NOOP}
        for i in range(length)
    }
