"""The soak's workers and the faults it injects. Import it once Django is set up.

* :class:`SoakWorker`: a prefork Celery worker of the tests
  (:class:`tests.celery_worker.CeleryWorker`) on the soak's shared queue.
* :class:`Faults`: SIGKILL of a pool process (preferably one running a task
  body), SIGKILL of a whole worker (restarted at once), a restart of Redis,
  and ``pg_terminate_backend`` of every connection to the soak's database but
  the soak's own control connection.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from bench.soak_broker import RedisServer
from bench.soak_tasks import BODY_STARTS
from tests.celery_worker import CeleryWorker


class SoakWorker(CeleryWorker):
    """A prefork worker consuming the soak's shared queue.

    Starting it does not purge the queue, which another worker consumes too
    and which holds the messages of the run.
    """

    def __init__(self, broker_url: str, log_dir: Path, queue: str):
        super().__init__(
            broker_url, log_dir, pool="prefork", concurrency=2, include=("bench.soak_tasks",)
        )
        self.queue = queue

    def purge_queue(self) -> None:
        return None

    def pool_pids(self) -> list[int]:
        """The pids of the worker's pool processes (the children of its main process)."""
        if not self.is_running():
            return []
        assert self.process is not None
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return []
        return [int(child) for child in children]


class Faults:
    """Injects each kind of fault at its own random moments, and counts them.

    ``intervals`` maps each kind to the mean number of seconds between two of
    its faults; each wait is drawn between 0.6 and 1.4 times that, and the
    first one between 0.3 and 1 times, so a run as long as the interval
    still gets one fault of each kind. A killed worker and a killed Redis
    stay down for ``DOWNTIME`` seconds (drawn at random) while the run, and
    the other faults, go on.
    """

    KINDS = ("pool_process_kill", "worker_kill", "redis_restart", "pg_terminate")
    DOWNTIME = (1.0, 5.0)

    def __init__(
        self,
        *,
        redis: RedisServer,
        workers: list[SoakWorker],
        control: Any,
        database: str,
        instance_table: str,
        session_table: str,
        intervals: dict[str, float],
        rng: random.Random,
        progress: Callable[[str], None],
    ):
        self.redis = redis
        self.workers = workers
        self.control = control
        self.database = database
        self.instance_table = instance_table
        self.session_table = session_table
        self.intervals = intervals
        self.rng = rng
        self.progress = progress
        self.counts: Counter[str] = Counter({kind: 0 for kind in self.KINDS})
        self.details: Counter[str] = Counter()
        now = time.monotonic()
        self.next_at = {
            kind: now + self.rng.uniform(0.3, 1.0) * interval
            for kind, interval in intervals.items()
        }
        #: When Redis, and each killed worker, are to be started again.
        self.redis_back_at: float | None = None
        self.workers_back_at: dict[str, float] = {}

    def due(self) -> float:
        """When the next fault, or the next restart, is due (``time.monotonic()``)."""
        restarts = [*self.workers_back_at.values()]
        if self.redis_back_at is not None:
            restarts.append(self.redis_back_at)
        return min(*self.next_at.values(), *restarts)

    def inject_due(self) -> None:
        """Inject the faults that are due, and start again what is due back."""
        now = time.monotonic()
        if self.redis_back_at is not None and self.redis_back_at <= now:
            self.redis.start()
            self.redis_back_at = None
            self.progress("Redis is back")
        for kind, at in sorted(self.next_at.items(), key=lambda item: item[1]):
            if at > now:
                continue
            getattr(self, kind)()
            self.counts[kind] += 1
            self.next_at[kind] = (
                time.monotonic() + self.rng.uniform(0.6, 1.4) * (self.intervals[kind])
            )
        self.restart_workers(time.monotonic())

    def restart_workers(self, now: float) -> None:
        """Start the killed workers that are due back, and those that exited on their own.

        Not while Redis is down: a worker's start waits until it has
        connected to the broker.
        """
        if self.redis_back_at is not None:
            return
        for worker in self.workers:
            if worker.is_running():
                continue
            back_at = self.workers_back_at.get(worker.name)
            if back_at is None:
                self.progress(f"{worker.name} exited on its own; starting it again")
                self.details["worker_exited_on_its_own"] += 1
            elif back_at > now:
                continue
            worker.start()
            self.workers_back_at.pop(worker.name, None)

    def stop(self) -> None:
        """End the faults: start again whatever is down."""
        self.next_at = dict.fromkeys(self.next_at, float("inf"))
        if self.redis_back_at is not None:
            self.redis_back_at = time.monotonic()
        self.workers_back_at = dict.fromkeys(self.workers_back_at, time.monotonic())
        self.inject_due()

    # -- the faults ---------------------------------------------------------------

    def pool_process_kill(self) -> None:
        """SIGKILL one pool process, one running a task body if there is one."""
        pools = {pid: worker for worker in self.workers for pid in worker.pool_pids()}
        busy = [pid for pid in self._pids_in_a_body() if pid in pools]
        candidates = busy or list(pools)
        if not candidates:
            self.progress("fault: no pool process to kill")
            return
        pid = self.rng.choice(candidates)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.details["pool_process_kill_in_body"] += bool(busy)
        self.progress(
            f"fault: SIGKILL pool process {pid} of {pools[pid].name}"
            f"{' (in a task body)' if busy else ''}"
        )

    def _pids_in_a_body(self) -> list[int]:
        """Processes that started a body in the last second whose instance is still running."""
        rows = self.control.execute(
            f"SELECT DISTINCT b.pid FROM {BODY_STARTS} b "
            f"JOIN {self.session_table} s ON s.uid = b.session_uid "
            f"JOIN {self.instance_table} i ON i.session_id = s.id "
            f"AND i.name = b.instance_name AND i.status = 'running' "
            f"WHERE b.started_at > clock_timestamp() - interval '1 second'"
        ).fetchall()
        return [row[0] for row in rows]

    def worker_kill(self) -> None:
        """SIGKILL a whole worker (main and pool processes); it is started again later."""
        running = [worker for worker in self.workers if worker.is_running()]
        if not running:
            self.progress("fault: no worker to kill")
            return
        worker = self.rng.choice(running)
        downtime = self.rng.uniform(*self.DOWNTIME)
        self.progress(f"fault: SIGKILL worker {worker.name}, down for {downtime:.1f}s")
        worker.kill()
        self.workers_back_at[worker.name] = time.monotonic() + downtime

    def redis_restart(self) -> None:
        """Kill the broker; it comes back empty: queued and unacknowledged messages are lost."""
        if self.redis_back_at is not None:
            return
        downtime = self.rng.uniform(*self.DOWNTIME)
        self.progress(f"fault: SIGKILL Redis, down for {downtime:.1f}s (its messages are lost)")
        self.redis.stop()
        self.redis_back_at = time.monotonic() + downtime

    def pg_terminate(self) -> None:
        """``pg_terminate_backend`` of every connection to the soak's database but this one."""
        rows = self.control.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            [self.database],
        ).fetchall()
        terminated = sum(1 for (done,) in rows if done)
        self.details["pg_backends_terminated"] += terminated
        self.progress(f"fault: terminated {terminated} PostgreSQL connections")
