"""Per-hop cost of a chain of cascading trigger tasks on a real Celery worker.

The run starts ``celery -A example_project worker --pool=solo`` against its
own database and broker, on a queue of its own (the worker the end-to-end
tests use, :class:`tests.celery_worker.CeleryWorker`), and times, on that
worker, a chain of trigger tasks that run one another through cascades
beside a plain ``celery.chain`` of as many no-op tasks. Import this module
once Django is set up.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from celery import chain

from bench import workloads
from bench.processes import BenchmarkError
from bench.scenarios import Plan, Progress, configure
from bench.tasks import plain_noop
from django_triggers.models import TaskInstance
from example_project.celery import app
from tests.celery_worker import CeleryWorker, app_publishing_to


def check_broker(broker_url: str) -> None:
    """``BenchmarkError`` unless the broker accepts a connection."""
    try:
        with app.connection_for_write(broker_url) as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:
        raise BenchmarkError(f"cannot reach the Celery broker {broker_url}: {exc}") from exc


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
    plan: Plan, run_id: str, broker_url: str, workdir: Path, progress: Progress
) -> ChainHops:
    length = plan.chain_length
    progress("celery: starting a worker")
    worker = CeleryWorker(broker_url, workdir, include=("bench.tasks",))
    with worker, app_publishing_to(broker_url, worker.queue):
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
