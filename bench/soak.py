"""``python -m bench.soak --minutes N``: the guarantees, under faults that overlap.

On a PostgreSQL database of its own (``triggers_soak`` by default, dropped and
created again, then migrated) and a private Redis broker (a ``redis-server``
child process on a free port), the soak runs two prefork Celery workers
(concurrency 2) and a few firing processes (:mod:`bench.soak_fire`) that fire
into many sessions of :data:`bench.soak_tasks.WORKFLOW`. Meanwhile it kills
pool processes and whole workers, restarts Redis, terminates the database
connections of every process but its own control connection
(:mod:`bench.soak_faults`), and, as an operator's cron would, runs the
recovery sweep and replays failed instances.

Then it stops the faults, keeps the workers up, sweeps and replays until
nothing is left to do, and checks the outcome (:mod:`bench.soak_checks`).
Progress goes to stderr; the last line of stdout is one JSON summary. The exit
status is 1 if any violation was found, 2 if the soak itself could not run.
See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

from bench.env import (
    CELERY_ENV_OVERRIDES,
    ROOT,
    BenchmarkSetupError,
    migrate,
    postgres_connection_kwargs,
    recreate_postgres_database,
    setup_django,
)
from bench.soak_broker import BrokerError, RedisServer, free_port

DEFAULT_PG_NAME = "triggers_soak"

#: Mean seconds between two faults of each kind in a long run; a run shorter
#: than twice an interval gets them at half its length, so that even a
#: one-minute run injects every kind.
FAULT_INTERVALS = {
    "pool_process_kill": 30.0,
    "worker_kill": 150.0,
    "redis_restart": 120.0,
    "pg_terminate": 20.0,
}
#: While the faults run, the recovery sweep runs as cron would run it, more
#: often than the production advice (every minute) so that a short run sees it.
SWEEP_EVERY = 10.0
REDISPATCH_AFTER = timedelta(seconds=5)
STUCK_AFTER = timedelta(seconds=30)
REPLAY_EVERY = 5.0
#: Once the faults stop: no task body lasts this long, so what still runs is lost.
SETTLE_STUCK_AFTER = timedelta(seconds=10)
#: Read by ``tests.celery_worker_queue`` (which every process of the run imports,
#: through ``bench.soak_tasks``): the queue the app publishes to.
QUEUE_ENV = "TRIGGERS_TEST_CELERY_QUEUE"
#: A chain of replays is given up (its last instance stays failed) at this many retries.
MAX_REPLAYED_RETRIES = 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Fire into many sessions on PostgreSQL and a private Redis while faults "
        "are injected; check that nothing was lost or run twice.",
    )
    parser.add_argument(
        "--minutes", type=float, default=1.0, help="how long faults run (default 1; may be 0.5)"
    )
    parser.add_argument(
        "--pg-name",
        default=DEFAULT_PG_NAME,
        help=f"PostgreSQL database, dropped and recreated (default {DEFAULT_PG_NAME}; "
        f"must contain 'soak')",
    )
    parser.add_argument("--fire-processes", type=int, default=2, help="firing processes (2)")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.25,
        help="mean seconds a firing process waits between two fires (0.25)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the random choices")
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=300.0,
        help="seconds allowed, once the faults stop, for everything to settle (300)",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the logs directory even when all is well"
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    if "soak" not in args.pg_name:
        parser.error(
            f"refusing to use the database {args.pg_name!r}: the soak drops and recreates it, "
            f"so its name must contain 'soak'"
        )
    if args.fire_processes < 1:
        parser.error("--fire-processes must be at least 1")
    return args


def progress(message: str) -> None:
    sys.stderr.write(f"[soak {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def _terminate(signum: int, frame: object) -> NoReturn:
    # Unwind through the ExitStack, which stops every process the soak started.
    raise SystemExit(128 + signum)


def prepare_environment(pg_name: str, broker_url: str, queue: str) -> None:
    """Create the soak's database and set the variables every process of the run gets."""
    recreate_postgres_database(pg_name)
    # One database and one broker, the soak's own: nothing inherited may add others.
    for key in (*CELERY_ENV_OVERRIDES, "TRIGGERS_SHARDS"):
        os.environ.pop(key, None)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "example_project.settings",
            "DJANGO_DEBUG": "0",
            "TRIGGERS_DB": "postgres",
            "TRIGGERS_PG_NAME": pg_name,
            "TRIGGERS_DEFAULT_RUNNER": "celery",
            "CELERY_BROKER_URL": broker_url,
            QUEUE_ENV: queue,
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
    )


def log_to_file(path: Path) -> None:
    """Send this process's logs to ``path``: with the broker down, every fire logs a traceback."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("", "django_triggers"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False


def reset_connections() -> None:
    """Forget connections a fault broke, so that the next statement connects again."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except Exception:
            connection.connection = None


class Operator:
    """What an operator's cron does: the recovery sweep, and replays of failed instances.

    Each round starts as a Celery beat task or a request does, with
    ``close_old_connections()``: a connection terminated while idle is
    checked (``CONN_HEALTH_CHECKS``) and replaced before its first statement.
    """

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.counts: Counter[str] = Counter()
        self.replays_by_reason: Counter[str] = Counter()
        self.given_up: set[tuple[str, str]] = set()

    def sweep(self, *, redispatch_after: timedelta, stuck_after: timedelta) -> int:
        """Run the sweep once (as ``triggers_recover --fail-stuck``); how much it did."""
        from django.db import Error, close_old_connections

        from django_triggers.recovery import recover

        self.counts["sweeps"] += 1
        close_old_connections()
        try:
            report = recover(
                redispatch_after=redispatch_after, stuck_after=stuck_after, fail_stuck=True
            )
        except Error as exc:
            self.counts["sweeps_interrupted"] += 1
            progress(f"sweep interrupted: {type(exc).__name__}: {exc}".strip())
            reset_connections()
            return 1
        found = {
            "never_dispatched": len(report.never_dispatched),
            "stuck_scheduled": len(report.stuck_scheduled),
            "expired": len(report.expired),
            "stuck_running": len(report.stuck_running),
            "failed_stuck": len(report.failed_stuck),
            "sweep_errors": len(report.errors),
        }
        self.counts.update(found)
        return sum(found.values())

    def replay_failed(self) -> int:
        """Replay every failed instance of the run, through the public API; how many."""
        from django.db import Error, close_old_connections

        from django_triggers.manager import TriggerManager
        from django_triggers.models import TaskInstance

        replayed = 0
        close_old_connections()
        try:
            failed = list(
                TaskInstance.objects.filter(
                    session__uid__startswith=self.prefix, status=TaskInstance.FAILED
                ).values_list("session__uid", "name", "retries", "metadata__exception_type")
            )
            for uid, name, retries, reason in failed:
                if retries >= MAX_REPLAYED_RETRIES:
                    self.given_up.add((uid, name))
                    continue
                try:
                    TriggerManager.for_existing_session(uid).replay_failed_instance(name)
                except ValueError:
                    continue  # no longer failed: replayed meanwhile
                replayed += 1
                self.replays_by_reason[reason or "?"] += 1
        except Error as exc:
            self.counts["replays_interrupted"] += 1
            progress(f"replays interrupted: {type(exc).__name__}: {exc}".strip())
            reset_connections()
        self.counts["replays"] += replayed
        return replayed

    def pending(self) -> dict[str, int]:
        """Instances that can still move: in flight, failed and replayable, or with a deadline."""
        from django.db.models import Count, Q

        from django_triggers.models import TaskInstance

        ours = TaskInstance.objects.filter(session__uid__startswith=self.prefix)
        counts = ours.aggregate(
            scheduled=Count("pk", filter=Q(status=TaskInstance.SCHEDULED)),
            running=Count("pk", filter=Q(status=TaskInstance.RUNNING)),
            failed=Count(
                "pk",
                filter=Q(status=TaskInstance.FAILED, retries__lt=MAX_REPLAYED_RETRIES),
            ),
            waiting_for_deadline=Count(
                "pk", filter=Q(status=TaskInstance.UNSTARTED, deadline__isnull=False)
            ),
        )
        return {key: int(value) for key, value in counts.items()}


class FireProcesses:
    """The firing processes (``python -m bench.soak_fire``) of the run."""

    def __init__(self, count: int, *, run_id: str, until: float, pause: float, workdir: Path):
        self.outputs: list[Path] = []
        self.processes: list[subprocess.Popen[str]] = []
        self.stderr_paths: list[Path] = []
        for index in range(count):
            output = workdir / f"fires-{index}.jsonl"
            stderr_path = workdir / f"fires-{index}.stderr"
            job = {
                "prefix": f"soak-{run_id}-p{index}",
                "until": until,
                "pause": pause,
                "sessions_at_once": 4,
                "seed": random.getrandbits(32),
                "output": str(output),
            }
            with stderr_path.open("w") as stderr:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bench.soak_fire", json.dumps(job)],
                        cwd=ROOT,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                        text=True,
                    )
                )
            self.outputs.append(output)
            self.stderr_paths.append(stderr_path)

    def check_alive(self) -> None:
        for process, stderr_path in zip(self.processes, self.stderr_paths, strict=True):
            if process.poll() not in (None, 0):
                raise SoakError(
                    f"firing process {process.pid} exited with status {process.returncode}; "
                    f"see {stderr_path}"
                )

    def wait(self, timeout: float) -> list[dict[str, Any]]:
        """Wait for every process to finish its sessions; their summaries."""
        summaries = []
        for process in self.processes:
            stdout, _ = process.communicate(timeout=timeout)
            self.check_alive()
            summaries.append(json.loads(stdout.strip().splitlines()[-1]))
        return summaries

    def records(self) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        for output in self.outputs:
            with output.open() as file:
                lines.extend(json.loads(line) for line in file if line.strip())
        return lines

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()


class SoakError(RuntimeError):
    """The soak could not run to its end (not a violation of the guarantees)."""


def fault_intervals(duration: float) -> dict[str, float]:
    return {kind: min(interval, duration / 2) for kind, interval in FAULT_INTERVALS.items()}


def count_in_logs(paths: list[Path], needles: dict[str, str]) -> dict[str, int]:
    counts = dict.fromkeys(needles, 0)
    for path in paths:
        if not path.exists():
            continue
        with path.open(errors="replace") as file:
            for line in file:
                for key, needle in needles.items():
                    if needle in line:
                        counts[key] += 1
    return counts


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The whole soak; its summary."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    started = time.monotonic()
    duration = args.minutes * 60
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    random.seed(seed)
    rng = random.Random(seed)
    run_id = uuid.uuid4().hex[:8]
    prefix = f"soak-{run_id}-"
    queue = f"triggers-soak-{run_id}"

    with ExitStack() as stack:
        redis = RedisServer(free_port(), workdir / "redis.log")
        redis.start()
        stack.callback(redis.stop)
        progress(f"Redis on port {redis.port}; database {args.pg_name}; logs in {workdir}")
        prepare_environment(args.pg_name, redis.url, queue)
        setup_django()
        log_to_file(workdir / "soak.log")
        migrate()

        from django.db import connection

        import bench.soak_tasks
        from bench.soak_checks import VIOLATION_KINDS, check
        from bench.soak_faults import Faults, SoakWorker
        from django_triggers.models import TaskInstance, TriggerSession

        with connection.cursor() as cursor:
            cursor.execute(bench.soak_tasks.CREATE_BODY_STARTS)

        workers = [SoakWorker(redis.url, workdir, queue) for _ in range(2)]
        for worker in workers:
            stack.callback(worker.kill)
            worker.start()
        progress(f"workers ready: {', '.join(worker.name for worker in workers)}")

        control = psycopg.connect(
            make_conninfo(**postgres_connection_kwargs(args.pg_name)), autocommit=True
        )
        stack.callback(control.close)
        operator = Operator(prefix)
        faults = Faults(
            redis=redis,
            workers=workers,
            control=control,
            database=args.pg_name,
            instance_table=TaskInstance._meta.db_table,
            session_table=TriggerSession._meta.db_table,
            intervals=fault_intervals(duration),
            rng=rng,
            progress=progress,
        )

        firing = FireProcesses(
            args.fire_processes,
            run_id=run_id,
            until=time.time() + duration,
            pause=args.pause,
            workdir=workdir,
        )
        stack.callback(firing.stop)
        progress(f"firing for {duration:g}s with {args.fire_processes} processes, under faults")

        faults_started = time.monotonic()
        end = faults_started + duration
        next_sweep = faults_started + min(SWEEP_EVERY, duration / 3)
        next_replay = faults_started + min(REPLAY_EVERY, duration / 4)
        next_report = faults_started + 30
        while (now := time.monotonic()) < end:
            if faults.due() <= now:
                faults.inject_due()
            if now >= next_sweep:
                operator.sweep(redispatch_after=REDISPATCH_AFTER, stuck_after=STUCK_AFTER)
                next_sweep = time.monotonic() + SWEEP_EVERY
            if now >= next_replay:
                operator.replay_failed()
                next_replay = time.monotonic() + REPLAY_EVERY
            if now >= next_report:
                progress(f"{int(now - faults_started)}s: faults {dict(faults.counts)}")
                next_report = now + 30
            faults.restart_workers(time.monotonic())
            firing.check_alive()
            wake = min(faults.due(), next_sweep, next_replay, next_report, end)
            time.sleep(max(0.0, min(wake - time.monotonic(), 1.0)))
        faults.stop()
        faults_s = time.monotonic() - faults_started

        progress("faults stopped; waiting for the firing processes to finish their sessions")
        fire_summaries = firing.wait(timeout=300)

        progress("settling: sweeping and replaying until nothing is left to do")
        settle_started = time.monotonic()
        quiet_rounds = 0
        pending: dict[str, int] = {}
        while True:
            did = operator.sweep(redispatch_after=timedelta(0), stuck_after=SETTLE_STUCK_AFTER)
            did += operator.replay_failed()
            pending = operator.pending()
            quiet_rounds = 0 if did or any(pending.values()) else quiet_rounds + 1
            if quiet_rounds >= 2:
                break
            if time.monotonic() - settle_started > args.settle_timeout:
                progress(f"not settled after {args.settle_timeout:g}s: {pending}")
                break
            faults.restart_workers(time.monotonic())
            time.sleep(1.0)
        settle_s = time.monotonic() - settle_started
        settled = quiet_rounds >= 2

        progress("checking")
        records = firing.records()
        findings = check(prefix, records)
        violations = dict(findings.violations)
        if not settled:
            violations["not_settled"] = 1
        logs = [path for worker in workers for path in (worker.log_path, worker.output_path)]
        from_logs = count_in_logs(
            logs,
            {
                "duplicate_deliveries_ignored": "not scheduled: not starting it",
                "late_outcomes_dropped": "its outcome is not recorded",
                "outcome_writes_retried": "Writing the outcome of a task",
            },
        )
        for worker in workers:
            worker.stop()

    fires: Counter[str] = Counter()
    for summary in fire_summaries:
        fires.update(summary)
    return {
        "minutes": args.minutes,
        "seed": seed,
        "database": args.pg_name,
        "duration_s": round(time.monotonic() - started, 1),
        "faults_s": round(faults_s, 1),
        "settle_s": round(settle_s, 1),
        "settled": settled,
        "fires": {
            **dict(fires),
            "records": len(records),
            "seen_ok": sum(1 for record in records if record["ok"]),
        },
        "faults": dict(faults.counts),
        "fault_effects": {key: faults.details[key] for key in sorted(faults.details)},
        "recoveries": {
            **{key: operator.counts[key] for key in sorted(operator.counts)},
            "replays_by_reason": dict(operator.replays_by_reason.most_common()),
            "given_up": len(operator.given_up),
            **from_logs,
        },
        "outcome": findings.stats,
        "violations": {kind: violations.get(kind, 0) for kind in (*VIOLATION_KINDS, "not_settled")},
        "violation_count": sum(violations.values()),
        "violation_examples": dict(findings.examples),
        "pending_at_end": pending,
        "logs": str(workdir),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="triggers-soak-"))
    try:
        summary = run(args, workdir)
    except (SoakError, BrokerError, BenchmarkSetupError) as exc:
        progress(f"the soak could not run: {exc}; logs kept in {workdir}")
        return 2
    except Exception:
        traceback.print_exc()
        progress(f"the soak crashed; logs kept in {workdir}")
        return 2
    except (KeyboardInterrupt, SystemExit):
        progress(f"interrupted; logs kept in {workdir}")
        raise
    failed = summary["violation_count"] > 0
    if failed or args.keep_logs:
        progress(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        summary["logs"] = None
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
