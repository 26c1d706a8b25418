"""Entry point of the benchmark's fire processes: ``python -m bench.fire_worker``.

The process reads one JSON job from the first line of its stdin, sets Django
up from the environment the run hands it, and runs the job:

``{"mode": "fires", "warmup": [[uid, trigger], ...], "fires": [[uid, trigger], ...]}``
    Builds a manager per session, fires the warm-up list, reports ``ready``,
    waits for a ``go`` line on stdin, fires the list, and reports when it
    started and finished (``time.time()``), the instances it handed to the
    runner, and the fires that raised.
``{"mode": "rss", "session": uid, "trigger": name, "fires": n}``
    Fires ``trigger`` ``n`` times into one session and reports the peak
    resident set size of the process while it fired (see :func:`peak_rss_mb`).

Each report is one line of stdout: ``BENCH `` followed by a JSON object.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from typing import Any

from bench.env import setup_django

PREFIX = "BENCH "


def report(message: dict[str, Any]) -> None:
    sys.stdout.write(PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def _status_mb(field: str) -> float | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux), in MB; ``None`` elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Make the peak RSS start again from the current RSS (Linux 4.0+); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def ru_maxrss_mb() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in MB (macOS counts bytes, Linux kilobytes)."""
    unit = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / unit


def peak_rss_mb() -> float:
    """Peak resident set size of this process's memory.

    ``ru_maxrss`` is not used when ``VmHWM`` is available: on Linux a process
    started by ``subprocess`` inherits, through ``exec``, the peak RSS of
    the process that started it, so a fire process started by a large run
    would report the run's peak, not its own. ``VmHWM`` is the peak of the
    process's own memory, and :func:`reset_peak_rss` can restart it.
    """
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else ru_maxrss_mb()


def run_fires(job: dict[str, Any]) -> int:
    from bench.runners import RecordingRunner
    from bench.scenarios import manager_of
    from django_triggers.manager import TriggerManager

    managers: dict[str, TriggerManager] = {}

    def manager_for(uid: str) -> TriggerManager:
        if uid not in managers:
            managers[uid] = manager_of(uid)
        return managers[uid]

    for uid, trigger in job["warmup"]:
        manager_for(uid).fire(trigger)
    fires = [(manager_for(uid), trigger) for uid, trigger in job["fires"]]
    RecordingRunner.reset()
    report({"ready": True, "pid": os.getpid()})

    if sys.stdin.readline().strip() != "go":
        return 2
    errors: list[str] = []
    started = time.time()
    for manager, trigger in fires:
        try:
            manager.fire(trigger)
        except Exception as exc:
            errors.append(f"{manager.session_uid} {trigger}: {type(exc).__name__}: {exc}")
    finished = time.time()
    report(
        {
            "started": started,
            "finished": finished,
            "fires": len(fires),
            "recorded": RecordingRunner.recorded,
            "error_count": len(errors),
            "errors": errors[:10],
        }
    )
    return 0


def run_rss(job: dict[str, Any]) -> int:
    from django_triggers.manager import TriggerManager

    manager = TriggerManager(job["session"])
    # The peak of the imports and of Django's setup would hide what the fires
    # need: the peak starts again here, from what the process holds now.
    gc.collect()
    reset = reset_peak_rss()
    rss_before = _status_mb("VmRSS")
    started = time.perf_counter()
    for _ in range(job["fires"]):
        manager.fire(job["trigger"])
    elapsed = time.perf_counter() - started
    report(
        {
            "peak_rss_mb": peak_rss_mb(),
            "peak_reset_before_fires": reset,
            "rss_before_fires_mb": rss_before,
            "ru_maxrss_mb": ru_maxrss_mb(),
            "fires": job["fires"],
            "elapsed_s": elapsed,
        }
    )
    return 0


def main() -> int:
    job = json.loads(sys.stdin.readline())
    setup_django()
    if job["mode"] == "fires":
        return run_fires(job)
    if job["mode"] == "rss":
        return run_rss(job)
    raise ValueError(f"unknown job mode {job['mode']!r}")


if __name__ == "__main__":
    sys.exit(main())
