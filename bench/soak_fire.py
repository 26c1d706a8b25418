"""A firing process of the soak: ``python -m bench.soak_fire JOB_JSON``.

It plays, until the job's ``until`` time, scripts of fires into new sessions
of :data:`bench.soak_tasks.WORKFLOW`, a few sessions at once, interleaved, and
then finishes the scripts it started, so that no session is left half fired.
Each fire carries a unique ``marker`` in its kwargs. Most carry an
``event_id`` and are sent again after a database error until they succeed;
some are sent twice on purpose, as a retried request would be. Page fires
without an ``event_id`` are sent once: after an error, the caller cannot know
whether the fire was applied, and sending it again could apply it twice.

Every outcome the caller saw is one line of the job's ``output`` file (JSON):
``{"session", "trigger", "event_id", "marker", "ok", "attempts",
"duplicate"}``, with ``"error"`` when the fire did not succeed; ``ok`` lines
are the fires that must be recorded exactly once. The last line of stdout is
a JSON summary.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bench.env import setup_django

#: How long a fire with an ``event_id`` keeps being sent after database errors.
RETRY_FOR = 60.0


@dataclass
class Fire:
    trigger: str
    kwargs: dict[str, Any]
    event_id: str | None
    duplicate: bool = False


@dataclass
class Script:
    """The fires of one session, in the order they will be sent."""

    uid: str
    fires: list[Fire]
    configured: bool = False
    manager: Any = None
    done: int = field(default=0)


def build_script(uid: str, rng: random.Random, marker: Any) -> Script:
    """A session's fires: ``start`` and ``data``, pages, and a way through ``t_remind``.

    Whatever the order, every instance of the session can end: the first
    page has an ``event_id`` (it is sent until it succeeds), so ``t_page``
    never waits for a page that will not come, and ``t_remind`` either gets
    ``remind``, or is abandoned by ``cancel`` or by its deadline.
    """

    def fire(trigger: str, with_event_id: bool, **extra: Any) -> Fire:
        mark = marker()
        return Fire(
            trigger,
            {"marker": mark, **extra},
            f"{uid}:{trigger}:{mark}" if with_event_id else None,
        )

    fires = [fire("start", True), fire("data", True)]
    for page in range(rng.randint(2, 4)):
        fires.append(fire("page", page == 0 or rng.random() < 0.5, page=page))
    path = rng.choice(("remind", "cancel", "both", "deadline"))
    if path in ("remind", "both"):
        fires.append(fire("remind", True))
    if path in ("cancel", "both"):
        fires.append(fire("cancel", True))
    rng.shuffle(fires)
    # A request retried by its client, or an event delivered twice upstream.
    if rng.random() < 0.3:
        with_ids = [index for index, f in enumerate(fires) if f.event_id is not None]
        original = fires[rng.choice(with_ids)]
        copy = Fire(original.trigger, original.kwargs, original.event_id, duplicate=True)
        position = rng.randint(fires.index(original) + 1, len(fires))
        fires.insert(position, copy)
    return Script(uid, fires)


class Firer:
    def __init__(self, job: dict[str, Any], output: TextIO):
        self.job = job
        self.output = output
        self.rng = random.Random(job["seed"])
        self.counts: dict[str, int] = {
            "sessions": 0,
            "fires_ok": 0,
            "fires_with_event_id": 0,
            "duplicates_sent": 0,
            "retried_after_error": 0,
            "uncertain": 0,
            "unexpected_errors": 0,
            "database_errors": 0,
        }
        self._sequence = 0
        self._parent = os.getppid()

    def marker(self) -> str:
        self._sequence += 1
        return f"{self.job['prefix']}-{self._sequence}"

    def record(self, line: dict[str, Any]) -> None:
        self.output.write(json.dumps(line) + "\n")
        self.output.flush()

    def reset_connections(self) -> None:
        """Drop the broken connection: Django would otherwise keep reusing it."""
        from django.db import connections

        for connection in connections.all(initialized_only=True):
            try:
                connection.close()
            except Exception:
                connection.connection = None

    def configure(self, script: Script) -> None:
        from django.db import Error

        from bench.soak_tasks import WORKFLOW
        from django_triggers.manager import TriggerManager

        deadline = time.monotonic() + RETRY_FOR
        while True:
            try:
                script.manager = TriggerManager(script.uid)
                script.manager.update_configuration(WORKFLOW)
                script.configured = True
                return
            except Error:
                self.counts["database_errors"] += 1
                self.reset_connections()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def send(self, script: Script, fire: Fire) -> None:
        from django.db import Error

        line: dict[str, Any] = {
            "session": script.uid,
            "trigger": fire.trigger,
            "event_id": fire.event_id,
            "marker": fire.kwargs["marker"],
            "duplicate": fire.duplicate,
        }
        deadline = time.monotonic() + RETRY_FOR
        attempts = 0
        while True:
            attempts += 1
            try:
                script.manager.fire(fire.trigger, fire.kwargs, event_id=fire.event_id)
            except Error as exc:
                self.counts["database_errors"] += 1
                self.reset_connections()
                if fire.event_id is not None and time.monotonic() < deadline:
                    time.sleep(min(0.05 * attempts, 0.5))
                    continue
                self.counts["uncertain"] += 1
                self.record({**line, "ok": False, "attempts": attempts, "error": repr(exc)})
                return
            except Exception as exc:
                self.counts["unexpected_errors"] += 1
                self.record(
                    {**line, "ok": False, "attempts": attempts, "error": repr(exc), "bug": True}
                )
                return
            break
        self.counts["fires_ok"] += 1
        self.counts["fires_with_event_id"] += fire.event_id is not None
        self.counts["duplicates_sent"] += fire.duplicate
        self.counts["retried_after_error"] += attempts > 1
        self.record({**line, "ok": True, "attempts": attempts})

    def run(self) -> None:
        until = self.job["until"]
        width = self.job["sessions_at_once"]
        pause = self.job["pause"]
        active: list[Script] = []
        while True:
            if os.getppid() != self._parent:
                raise SystemExit("the soak that started this process is gone")
            running = time.time() < until
            if running and len(active) < width:
                self.counts["sessions"] += 1
                uid = f"{self.job['prefix']}-s{self.counts['sessions']}"
                script = build_script(uid, self.rng, self.marker)
                self.configure(script)
                active.append(script)
            if not active:
                return
            script = self.rng.choice(active)
            self.send(script, script.fires[script.done])
            script.done += 1
            if script.done == len(script.fires):
                active.remove(script)
            if running:
                time.sleep(self.rng.uniform(0.5, 1.5) * pause)


def main() -> int:
    job = json.loads(sys.argv[1])
    setup_django()
    import bench.soak_tasks  # noqa: F401  (the workflow's tasks must be registered)

    with Path(job["output"]).open("a") as output:
        firer = Firer(job, output)
        firer.run()
    sys.stdout.write(json.dumps(firer.counts) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
