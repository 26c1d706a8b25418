"""The fire measurements: latency by session size, throughput, memory.

Import this module once Django is set up (``bench.env.setup_django``).
Configuring sessions and firing what a measurement needs beforehand is
setup, never timed; every configuration goes through the public API
(``TriggerManager.update_configuration``).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench import workloads
from bench.processes import BenchmarkError, run_fire_processes, run_rss_process
from bench.runners import RecordingRunner
from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskInstance

Progress = Callable[[str], None]

#: Numbers of tasks configured in the session of the latency benchmark.
SIZES = (1, 10, 100, 1000)
#: (a) the fire applies one of the two ``after`` triggers of ``target``, creating
#: an unstarted instance; (b) it completes them, and the instance is scheduled
#: and handed to the recording runner.
CASES = ("a", "b")


@dataclass(frozen=True)
class Plan:
    """How much of everything a run does."""

    #: Fresh sessions (so timed fires) per session size.
    repetitions: dict[int, int]
    #: Further sessions per size whose fires are counted in queries, not timed.
    query_repetitions: int
    #: Sessions fired into, untimed, before the latency measurements.
    warmup_sessions: int
    processes: int
    fires_per_process: int
    #: Runs of each throughput measurement, fresh sessions each; the median
    #: run is reported (one run lasts about a second, so a burst of other
    #: work on the machine can halve it).
    throughput_runs: int
    #: Instances in the large session of the memory benchmark.
    rss_session_instances: int
    #: Fires of each memory-measuring process.
    rss_fires: int
    chain_length: int
    #: Timed runs of each chain, after one untimed warm-up run.
    chain_repetitions: int


FULL_PLAN = Plan(
    repetitions={1: 200, 10: 200, 100: 200, 1000: 30},
    query_repetitions=3,
    warmup_sessions=10,
    processes=4,
    fires_per_process=500,
    throughput_runs=3,
    rss_session_instances=10_000,
    rss_fires=200,
    chain_length=20,
    chain_repetitions=5,
)

QUICK_PLAN = Plan(
    repetitions={1: 30, 10: 30, 100: 30, 1000: 10},
    query_repetitions=1,
    warmup_sessions=3,
    processes=4,
    fires_per_process=100,
    throughput_runs=1,
    rss_session_instances=1_000,
    rss_fires=50,
    chain_length=20,
    chain_repetitions=3,
)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolating between ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def settle() -> None:
    """Leave the database as a long-running one would be after a setup phase wrote many rows.

    PostgreSQL: refresh the planner's statistics. SQLite: checkpoint the WAL,
    so that the checkpoint the setup's writes would cause does not land on a
    timed fire.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
        elif connection.vendor == "sqlite":
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def manager_of(uid: str) -> TriggerManager:
    """The manager of session ``uid``, its session read: untimed setup, as for an application.

    Constructing a manager reads nothing; the first use reads the session.
    Reading it here keeps that read out of the fires measured, which are
    then the statements of a fire alone.
    """
    manager = TriggerManager(uid)
    manager.session  # noqa: B018
    return manager


def configure(uid: str, configuration: workloads.Configuration) -> tuple[TriggerManager, float]:
    """A manager of a new session configured with ``configuration``; and how long that took."""
    manager = TriggerManager(uid)
    started = time.perf_counter()
    manager.update_configuration(configuration)
    return manager, time.perf_counter() - started


def require_autocommit() -> None:
    """Fires are timed in autocommit mode, so their on-commit work runs inside the call."""
    if not connection.get_autocommit() or connection.in_atomic_block:
        raise BenchmarkError("fires must be timed outside any transaction (autocommit mode)")


# -- latency by session size ---------------------------------------------------


@dataclass
class FireLatency:
    #: ``{case: {tasks in the session: value}}``
    p50_ms: dict[str, dict[int, float]] = field(default_factory=dict)
    p95_ms: dict[str, dict[int, float]] = field(default_factory=dict)
    queries: dict[str, dict[int, int]] = field(default_factory=dict)
    samples: dict[int, int] = field(default_factory=dict)
    #: Median time of one ``update_configuration`` of a whole session, per size.
    configure_ms: dict[int, float] = field(default_factory=dict)
    #: The statements of one case-b fire in the largest session.
    largest_fire_sql: list[str] = field(default_factory=list)

    @property
    def flatness(self) -> float:
        b = self.p50_ms["b"]
        return b[max(b)] / b[min(b)]


def _fire_case_a(manager: TriggerManager) -> None:
    scheduled = manager.fire(workloads.FIRST)
    if scheduled:
        raise BenchmarkError(f"firing {workloads.FIRST!r} alone scheduled {scheduled}")


def _fire_case_b(manager: TriggerManager) -> None:
    scheduled = manager.fire(workloads.SECOND)
    expected = f"{workloads.TARGET}#0"
    if [instance.name for instance in scheduled] != [expected]:
        raise BenchmarkError(f"firing {workloads.SECOND!r} scheduled {scheduled}, not {expected}")


def _interleaved(repetitions: dict[int, int]) -> list[tuple[int, int]]:
    """``(size, repetition)`` pairs with each size's repetitions spread evenly over the run.

    A burst of load elsewhere on the machine then slows every size alike,
    instead of whichever size happened to be measured at that moment.
    """
    events = [
        ((k + 0.5) / count, size, k) for size, count in repetitions.items() for k in range(count)
    ]
    return [(size, k) for _, size, k in sorted(events)]


def measure_fire_latency(plan: Plan, run_id: str, progress: Progress) -> FireLatency:
    result = FireLatency()
    for case in CASES:
        result.p50_ms[case], result.p95_ms[case], result.queries[case] = {}, {}, {}

    timed: dict[int, list[str]] = {}
    counted: dict[int, list[str]] = {}
    for size in SIZES:
        repetitions = plan.repetitions[size]
        configuration = workloads.fire_case_configuration(size)
        uids = [f"{run_id}-fire-{size}-{i}" for i in range(repetitions + plan.query_repetitions)]
        progress(f"fire latency: configuring {len(uids)} sessions of {size} task(s)")
        configure_s = [configure(uid, configuration)[1] for uid in uids]
        result.configure_ms[size] = statistics.median(configure_s) * 1000
        timed[size], counted[size] = uids[:repetitions], uids[repetitions:]
    for i in range(plan.warmup_sessions):
        manager, _ = configure(f"{run_id}-warmup-{i}", workloads.fire_case_configuration(1))
        _fire_case_a(manager)
        _fire_case_b(manager)
    settle()

    schedule = _interleaved(plan.repetitions)
    progress(f"fire latency: timing {len(schedule)} fires of each case, sizes interleaved")
    timings: dict[str, dict[int, list[float]]] = {
        case: {size: [] for size in SIZES} for case in CASES
    }
    for size, repetition in schedule:
        uid = timed[size][repetition]
        manager = manager_of(uid)
        RecordingRunner.reset()
        require_autocommit()
        started = time.perf_counter()
        _fire_case_a(manager)
        timings["a"][size].append(time.perf_counter() - started)
        started = time.perf_counter()
        _fire_case_b(manager)
        timings["b"][size].append(time.perf_counter() - started)
        if RecordingRunner.recorded != [(uid, f"{workloads.TARGET}#0")]:
            raise BenchmarkError(
                f"the runner was handed {RecordingRunner.recorded} in session {uid!r}"
            )

    for size in SIZES:
        counts: dict[str, list[int]] = {case: [] for case in CASES}
        for uid in counted[size]:
            manager = manager_of(uid)
            for case, fire in (("a", _fire_case_a), ("b", _fire_case_b)):
                with CaptureQueriesContext(connection) as captured:
                    fire(manager)
                counts[case].append(len(captured.captured_queries))
                if case == "b" and size == max(SIZES):
                    result.largest_fire_sql = [query["sql"] for query in captured.captured_queries]
        result.samples[size] = plan.repetitions[size]
        for case in CASES:
            result.p50_ms[case][size] = statistics.median(timings[case][size]) * 1000
            result.p95_ms[case][size] = percentile(timings[case][size], 95) * 1000
            result.queries[case][size] = round(statistics.median(counts[case]))
    return result


# -- throughput from several processes -------------------------------------------


@dataclass
class Throughput:
    fires: int
    wall_s: float
    #: Fires that left no trace: ``fires`` minus the fewest of (fires recorded,
    #: instances scheduled, instances handed to the runner).
    lost: int
    #: Instances handed to the runner more than once.
    duplicates: int
    #: Fires that raised, and a few of their messages.
    errors: int
    error_samples: list[str]
    #: Time to configure what the processes fire into (setup, not timed).
    setup_s: float
    #: Fires per second of every run, in order, when the measurement was
    #: repeated (see ``_median_run``).
    runs_fires_per_s: list[float] = field(default_factory=list)

    @property
    def fires_per_s(self) -> float:
        return self.fires / self.wall_s


def _median_run(
    runs: int, run_id: str, progress: Progress, measure: Callable[..., Throughput]
) -> Throughput:
    """Measure ``runs`` times: the median run, with the losses and errors of all of them.

    ``measure`` takes the ``run_id`` (its sessions' prefix) and ``progress`` of one run.
    """

    def run_progress(run: int) -> Progress:
        if runs == 1:
            return progress
        return lambda message: progress(f"{message} (run {run + 1} of {runs})")

    results = [measure(run_id=f"{run_id}-{run}", progress=run_progress(run)) for run in range(runs)]
    median = sorted(results, key=lambda result: result.fires_per_s)[len(results) // 2]
    return replace(
        median,
        lost=sum(result.lost for result in results),
        duplicates=sum(result.duplicates for result in results),
        errors=sum(result.errors for result in results),
        error_samples=[sample for result in results for sample in result.error_samples][:5],
        setup_s=sum(result.setup_s for result in results),
        runs_fires_per_s=[result.fires_per_s for result in results],
    )


def _outcome(
    reports: list[dict[str, Any]], wall_s: float, fires: int, stored: int, setup_s: float
) -> tuple[Counter[tuple[str, str]], Throughput]:
    recorded: Counter[tuple[str, str]] = Counter(
        (uid, name) for report in reports for uid, name in report["recorded"]
    )
    handed_over = len(recorded)
    return recorded, Throughput(
        fires=fires,
        wall_s=wall_s,
        lost=fires - min(stored, handed_over),
        duplicates=sum(count - 1 for count in recorded.values()),
        errors=sum(report["error_count"] for report in reports),
        error_samples=[error for report in reports for error in report["errors"]][:5],
        setup_s=setup_s,
    )


def measure_distinct_sessions(
    plan: Plan, run_id: str, workdir: Path, progress: Progress
) -> Throughput:
    """Each process completes ``target`` (case b) in sessions of its own, one fire each."""
    measure = partial(_distinct_sessions_run, plan, workdir=workdir)
    return _median_run(plan.throughput_runs, run_id, progress, measure)


def _distinct_sessions_run(
    plan: Plan, *, run_id: str, workdir: Path, progress: Progress
) -> Throughput:
    total = plan.processes * plan.fires_per_process
    configuration = workloads.fire_case_configuration(1)
    uids = [f"{run_id}-distinct-{i}" for i in range(total)]
    warmups = [
        [f"{run_id}-distinct-warmup-{p}-{i}" for i in range(3)] for p in range(plan.processes)
    ]
    progress(f"distinct sessions: preparing {total} sessions")
    started = time.perf_counter()
    for uid in [*uids, *(uid for group in warmups for uid in group)]:
        manager, _ = configure(uid, configuration)
        manager.fire(workloads.FIRST)
    setup_s = time.perf_counter() - started
    settle()

    jobs = [
        {
            "mode": "fires",
            "warmup": [[uid, workloads.SECOND] for uid in warmups[p]],
            "fires": [
                [uid, workloads.SECOND]
                for uid in uids[p * plan.fires_per_process : (p + 1) * plan.fires_per_process]
            ],
        }
        for p in range(plan.processes)
    ]
    progress(f"distinct sessions: {plan.processes} processes x {plan.fires_per_process} fires")
    reports, wall_s = run_fire_processes(jobs, workdir, "distinct")

    sessions = {"session__uid__in": uids}
    fired = FiredTrigger.objects.filter(trigger_name=workloads.SECOND, **sessions).count()
    scheduled = TaskInstance.objects.filter(
        name=f"{workloads.TARGET}#0", status=TaskInstance.SCHEDULED, **sessions
    ).count()
    recorded, throughput = _outcome(reports, wall_s, total, min(fired, scheduled), setup_s=setup_s)
    expected = {(uid, f"{workloads.TARGET}#0") for uid in uids}
    throughput.lost = max(throughput.lost, total - len(expected & recorded.keys()))
    return throughput


def measure_shared_session(
    plan: Plan, run_id: str, workdir: Path, progress: Progress
) -> Throughput:
    """The processes fire distinct triggers into one session, each completing a task."""
    measure = partial(_shared_session_run, plan, workdir=workdir)
    return _median_run(plan.throughput_runs, run_id, progress, measure)


def _shared_session_run(
    plan: Plan, *, run_id: str, workdir: Path, progress: Progress
) -> Throughput:
    total = plan.processes * plan.fires_per_process
    triggers = [f"s_{i}" for i in range(total)]
    uid = f"{run_id}-shared"
    warmup_uid = f"{run_id}-shared-warmup"
    warmups = [[f"w_{p}_{i}" for i in range(3)] for p in range(plan.processes)]
    progress(f"shared session: configuring one session with {total} tasks")
    _, setup_s = configure(uid, workloads.one_trigger_tasks_configuration(triggers))
    configure(
        warmup_uid,
        workloads.one_trigger_tasks_configuration([t for group in warmups for t in group]),
    )
    settle()

    jobs = [
        {
            "mode": "fires",
            "warmup": [[warmup_uid, trigger] for trigger in warmups[p]],
            "fires": [
                [uid, trigger]
                for trigger in triggers[
                    p * plan.fires_per_process : (p + 1) * plan.fires_per_process
                ]
            ],
        }
        for p in range(plan.processes)
    ]
    progress(f"shared session: {plan.processes} processes x {plan.fires_per_process} fires")
    reports, wall_s = run_fire_processes(jobs, workdir, "shared")

    fired = FiredTrigger.objects.filter(session__uid=uid).count()
    scheduled = TaskInstance.objects.filter(session__uid=uid, status=TaskInstance.SCHEDULED).count()
    recorded, throughput = _outcome(reports, wall_s, total, min(fired, scheduled), setup_s)
    handed_over = {name for (session, name) in recorded if session == uid}
    throughput.lost = max(throughput.lost, total - len(handed_over))
    return throughput


# -- memory ----------------------------------------------------------------------------


@dataclass
class Memory:
    instances: int
    fires: int
    #: Peak RSS, while it fired, of a process firing into the session of
    #: ``instances`` instances.
    peak_rss_mb: float
    #: The same, firing into a session configured alike but empty.
    peak_rss_empty_mb: float
    #: RSS of each process when it started firing (its peak was reset then).
    rss_before_fires_mb: float | None
    rss_before_fires_empty_mb: float | None
    #: Whether the peaks could be reset before the fires (Linux 4.0 and later).
    peak_reset: bool
    #: While the large session was built (one process, not concurrent): median
    #: ms of a fire among the first and among the last 5% of its fires.
    build_first_p50_ms: float
    build_last_p50_ms: float

    @property
    def growth_mb(self) -> float:
        return self.peak_rss_mb - self.peak_rss_empty_mb


def measure_memory(plan: Plan, run_id: str, workdir: Path, progress: Progress) -> Memory:
    """Peak RSS of a process firing into a session of many instances, beside an empty one."""
    large, empty = f"{run_id}-rss-large", f"{run_id}-rss-empty"
    managers = {}
    for uid in (large, empty):
        managers[uid], _ = configure(uid, workloads.ticker_configuration())
        managers[uid].fire(workloads.START)

    count = plan.rss_session_instances
    progress(f"memory: building a session of {count} instances ({count} fires)")
    durations: list[float] = []
    for i in range(count):
        started = time.perf_counter()
        managers[large].fire(workloads.TICK)
        durations.append(time.perf_counter() - started)
        if i % 1000 == 999:
            RecordingRunner.reset()
    RecordingRunner.reset()
    edge = max(1, count // 20)
    instances = TaskInstance.objects.filter(session__uid=large).count()
    if instances != count:
        raise BenchmarkError(f"the large session has {instances} instances, not {count}")
    settle()

    progress(f"memory: {plan.rss_fires} fires into the large session, then into an empty one")
    reports = {}
    for uid in (large, empty):
        job = {"mode": "rss", "session": uid, "trigger": workloads.TICK, "fires": plan.rss_fires}
        reports[uid] = run_rss_process(job, workdir / f"rss-{uid}.stderr", timeout=600)
    return Memory(
        instances=count,
        fires=plan.rss_fires,
        peak_rss_mb=reports[large]["peak_rss_mb"],
        peak_rss_empty_mb=reports[empty]["peak_rss_mb"],
        rss_before_fires_mb=reports[large]["rss_before_fires_mb"],
        rss_before_fires_empty_mb=reports[empty]["rss_before_fires_mb"],
        peak_reset=all(report["peak_reset_before_fires"] for report in reports.values()),
        build_first_p50_ms=statistics.median(durations[:edge]) * 1000,
        build_last_p50_ms=statistics.median(durations[-edge:]) * 1000,
    )
