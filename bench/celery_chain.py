"""Per-hop cost of a chain of cascading trigger tasks on a real Celery worker.

The run starts ``celery -A example_project worker --pool=solo`` against its
own database and broker, on a queue of its own, and times, on that worker, a
chain of trigger tasks that run one another through cascades beside a plain
``celery.chain`` of as many no-op tasks. Import this module once Django is
set up.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import chain

from bench import workloads
from bench.env import ROOT, child_environment
from bench.processes import BenchmarkError
from bench.scenarios import Plan, Progress, configure
from bench.tasks import plain_noop
from django_triggers.models import TaskInstance
from example_project.celery import app


def _drop_broker_connections() -> None:
    """Forget the app's connection and producer pools; the next message opens new ones."""
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


@contextmanager
def publishing_to(broker_url: str, queue: str) -> Iterator[None]:
    """Make this process's Celery app send its messages to ``queue`` on ``broker_url``."""
    saved = {key: getattr(app.conf, key) for key in ("broker_url", "task_default_queue")}
    _drop_broker_connections()
    app.conf.update(broker_url=broker_url, task_default_queue=queue)
    try:
        yield
    finally:
        _drop_broker_connections()
        app.conf.update(saved)


def check_broker(broker_url: str) -> None:
    """``BenchmarkError`` unless the broker accepts a connection."""
    try:
        with app.connection_for_write(broker_url) as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:
        raise BenchmarkError(f"cannot reach the Celery broker {broker_url}: {exc}") from exc


class CeleryWorker:
    """``celery -A example_project worker --pool=solo`` on the run's database and own queue."""

    def __init__(
        self,
        broker_url: str,
        queue: str,
        log_dir: Path,
        *,
        ready_timeout: float = 60.0,
        stop_timeout: float = 20.0,
    ):
        self.broker_url = broker_url
        self.queue = queue
        self.name = f"bench-{uuid.uuid4().hex[:12]}"
        self.log_path = log_dir / f"{self.name}.log"
        self.output_path = log_dir / f"{self.name}.out"
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.nodename: str | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "example_project",
            "worker",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{self.name}@%h",
            "-Q",
            self.queue,
            "--include",
            "bench.tasks",
            "--loglevel=INFO",
            f"--logfile={self.log_path}",
        ]

    def start(self) -> None:
        """Purge the queue, start the worker, and wait for its ``ready`` line."""
        self._purge_queue()
        env = child_environment()
        env["CELERY_BROKER_URL"] = self.broker_url
        env["TRIGGERS_DEFAULT_RUNNER"] = "celery"
        with self.output_path.open("ab") as output:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ready = re.compile(rf"({re.escape(self.name)}@\S+) ready\.")
        deadline = time.monotonic() + self.ready_timeout
        while not (found := ready.search(self._read(self.log_path))):
            if self.process.poll() is not None:
                raise BenchmarkError(
                    f"the Celery worker exited with status {self.process.returncode} before it "
                    f"was ready\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise BenchmarkError(
                    f"the Celery worker was not ready after {self.ready_timeout:g}s\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)
        self.nodename = found.group(1)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL to its process group if it lingers."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            self._wake_up()
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with suppress(Exception):
            self._delete_queue()

    def _wake_up(self) -> None:
        """A control message, so that an idle worker notices the signal at once."""
        if self.nodename is None:
            return
        with suppress(Exception), app.connection_for_write(self.broker_url) as conn:
            app.control.broadcast("ping", destination=[self.nodename], reply=False, connection=conn)

    @contextmanager
    def _bound_queue(self) -> Iterator[Any]:
        queue = app.amqp.queues[self.queue]
        with app.connection_for_write(self.broker_url) as conn:
            yield queue(conn.default_channel)

    def _purge_queue(self) -> None:
        with self._bound_queue() as queue:
            queue.declare()
            queue.purge()

    def _delete_queue(self) -> None:
        with self._bound_queue() as queue:
            queue.declare()
            queue.delete()
            queue.exchange.delete()

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        text = self._read(self.log_path) + self._read(self.output_path)
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last lines of {self.log_path} and {self.output_path.name} ---\n{tail}"

    def __enter__(self) -> CeleryWorker:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass
class ChainHops:
    length: int
    cascade_hop_ms: float
    celery_chain_hop_ms: float
    cascade_runs_ms: list[float]
    celery_runs_ms: list[float]

    @property
    def overhead(self) -> float:
        return self.cascade_hop_ms / self.celery_chain_hop_ms


def time_cascade(uid: str, length: int, worker: CeleryWorker, timeout: float = 120.0) -> float:
    """Per-hop ms from firing ``start`` to the last task of the chain finished."""
    manager, _ = configure(uid, workloads.chain_configuration(length))
    last = f"{workloads.chain_task(length - 1)}#0"
    instances = TaskInstance.objects.filter(session=manager.session)
    started = time.time()
    manager.fire(workloads.START)
    deadline = time.monotonic() + timeout
    while True:
        done = instances.filter(name=last, status=TaskInstance.FINISHED).first()
        if done is not None:
            finished: float = done.status_changed_at.timestamp()
            return (finished - started) / length * 1000
        failed = instances.filter(status=TaskInstance.FAILED).first()
        if failed is not None:
            raise BenchmarkError(
                f"{failed.name} failed on the worker: {failed.metadata.get('exception_type')}\n"
                f"{failed.metadata.get('traceback', '')}\n{worker.log_tail()}"
            )
        if time.monotonic() >= deadline:
            statuses = dict(instances.values_list("name", "status"))
            raise BenchmarkError(
                f"the cascade did not reach {last} within {timeout:g}s (instances: {statuses})"
                f"\n{worker.log_tail()}"
            )
        time.sleep(0.01)


def time_celery_chain(length: int, timeout: float = 120.0) -> float:
    """Per-hop ms of a plain ``celery.chain`` of ``length`` no-op tasks."""
    signature = chain(*(plain_noop.si() for _ in range(length)))
    started = time.time()
    result = signature.apply_async()
    finished = float(result.get(timeout=timeout, interval=0.01))
    return (finished - started) / length * 1000


def measure_chains(
    plan: Plan, run_id: str, broker_url: str, queue: str, workdir: Path, progress: Progress
) -> ChainHops:
    length = plan.chain_length
    progress("celery: starting a worker")
    with publishing_to(broker_url, queue), CeleryWorker(broker_url, queue, workdir) as worker:
        progress(f"celery: {plan.chain_repetitions} runs of each chain of {length} tasks")
        cascade: list[float] = []
        plain: list[float] = []
        # Run 0 warms the worker up (imports, connections) and is not counted.
        for run in range(plan.chain_repetitions + 1):
            cascade_ms = time_cascade(f"{run_id}-chain-{run}", length, worker)
            plain_ms = time_celery_chain(length)
            if run:
                cascade.append(cascade_ms)
                plain.append(plain_ms)
    return ChainHops(
        length=length,
        cascade_hop_ms=statistics.median(cascade),
        celery_chain_hop_ms=statistics.median(plain),
        cascade_runs_ms=cascade,
        celery_runs_ms=plain,
    )
