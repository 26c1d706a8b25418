"""``python -m bench [--db sqlite|postgres|mariadb] [--quick]``: run the benchmark.

Prints progress on stderr, then a table of figures on stdout, and as the last
line of stdout one JSON object holding them all. Exits with status 1 if a
measurement failed or a fire was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from bench.env import (
    DEFAULT_BROKER,
    DEFAULT_PG_NAME,
    ROOT,
    BenchmarkSetupError,
    migrate,
    prepare_environment,
    setup_django,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark django-triggers on a dedicated database."
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "mariadb"), default="sqlite")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of about a minute: fewer repetitions, smaller sessions",
    )
    parser.add_argument(
        "--broker",
        default=DEFAULT_BROKER,
        help=f"Celery broker of the worker the run starts (default {DEFAULT_BROKER})",
    )
    parser.add_argument(
        "--pg-name",
        default=DEFAULT_PG_NAME,
        help=(
            f"PostgreSQL or MariaDB database, dropped and recreated by the run "
            f"(default {DEFAULT_PG_NAME})"
        ),
    )
    parser.add_argument(
        "--show-queries",
        action="store_true",
        help="print the SQL of one case-b fire in a 1000-task session (on stderr)",
    )
    return parser.parse_args(argv)


def _terminate(signum: int, frame: object) -> NoReturn:
    # Unwind through the finally blocks, which stop the processes the run started.
    raise SystemExit(128 + signum)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _by_size(values: dict[int, Any], digits: int = 3) -> dict[str, Any]:
    return {str(size): _round(value, digits) for size, value in values.items()}


def cpu_probe_ms() -> float:
    """CPU milliseconds of a fixed piece of pure Python work: the machine's speed, now.

    On a virtual machine whose host is busy, the same work can take twice as
    long from one minute to the next while the load average stays low; a
    probe at each end of the run shows it.
    """
    started = time.process_time()
    total = 0
    for i in range(1_000_000):
        total += i * i
    return round((time.process_time() - started) * 1000, 1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="django-triggers-bench-"))
    try:
        return run(args, workdir)
    except (KeyboardInterrupt, SystemExit):
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def run(args: argparse.Namespace, workdir: Path) -> int:
    """Run every measurement, print the figures; the exit status."""
    clock_start = time.perf_counter()
    load_start = round(os.getloadavg()[0], 2)
    probe_start = cpu_probe_ms()
    revision = source_revision()

    def progress(message: str) -> None:
        elapsed = time.perf_counter() - clock_start
        print(f"[bench {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    run_id = uuid.uuid4().hex[:8]
    try:
        progress(f"preparing the {args.db} database")
        prepare_environment(db=args.db, workdir=workdir, pg_name=args.pg_name, broker=args.broker)
        setup_django()
        migrate()
    except BenchmarkSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    from bench import celery_chain, scenarios

    plan = scenarios.QUICK_PLAN if args.quick else scenarios.FULL_PLAN
    errors: list[str] = []
    results: dict[str, Any] = {}

    def phase(name: str, run: Callable[[], Any]) -> None:
        try:
            results[name] = run()
        except Exception as exc:
            traceback.print_exc()
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            progress(f"{name} failed: {exc}")

    # Checked first, so that an unreachable broker is reported before the long measurements.
    phase("broker", lambda: celery_chain.check_broker(args.broker))
    phase("latency", lambda: scenarios.measure_fire_latency(plan, run_id, progress))
    phase("distinct", lambda: scenarios.measure_distinct_sessions(plan, run_id, workdir, progress))
    phase("shared", lambda: scenarios.measure_shared_session(plan, run_id, workdir, progress))
    phase("memory", lambda: scenarios.measure_memory(plan, run_id, workdir, progress))
    if "broker" in results:
        broker = args.broker
        phase(
            "chains",
            lambda: celery_chain.measure_chains(plan, run_id, broker, workdir, progress),
        )
    elapsed = time.perf_counter() - clock_start

    probes = {"cpu_probe_ms_start": probe_start, "cpu_probe_ms_end": cpu_probe_ms()}
    summary = summarize(args, plan, results, errors, elapsed, load_start, revision | probes)
    if args.show_queries and "latency" in results:
        print("\n".join(results["latency"].largest_fire_sql), file=sys.stderr)
    print_table(summary, results, plan)
    lost_messages = lost_fires(results)
    print(json.dumps(summary))
    for message in [*lost_messages, *errors]:
        print(f"error: {message}", file=sys.stderr)
    if errors or lost_messages:
        print(f"error: the logs of the run are kept in {workdir}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def lost_fires(results: dict[str, Any]) -> list[str]:
    messages = []
    for name, label in (("distinct", "distinct sessions"), ("shared", "the shared session")):
        throughput = results.get(name)
        if throughput is None:
            continue
        if throughput.lost or throughput.duplicates or throughput.errors:
            messages.append(
                f"LOST FIRES into {label}: {throughput.lost} of {throughput.fires} fires left no "
                f"scheduled instance or runner call, {throughput.duplicates} instance(s) were "
                f"handed to the runner twice, {throughput.errors} fire(s) raised"
                + "".join(f"\n  {sample}" for sample in throughput.error_samples)
            )
    return messages


def source_revision() -> dict[str, Any]:
    """The commit measured, and whether the library's files differ from it."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    changes = git("status", "--porcelain", "--", "django_triggers")
    return {"git_commit": commit, "git_dirty": None if changes is None else bool(changes)}


def summarize(
    args: argparse.Namespace,
    plan: Any,
    results: dict[str, Any],
    errors: list[str],
    elapsed: float,
    load_start: float,
    revision: dict[str, Any],
) -> dict[str, Any]:
    import django

    summary: dict[str, Any] = {}
    latency = results.get("latency")
    if latency is not None:
        summary["fire_p50_ms"] = {case: _by_size(v) for case, v in latency.p50_ms.items()}
        summary["fire_p95_ms"] = {case: _by_size(v) for case, v in latency.p95_ms.items()}
        summary["queries_per_fire"] = {case: _by_size(v) for case, v in latency.queries.items()}
        summary["flatness"] = _round(latency.flatness)
        summary["configure_ms"] = _by_size(latency.configure_ms, 1)
    else:
        summary.update(fire_p50_ms=None, fire_p95_ms=None, queries_per_fire=None, flatness=None)
    distinct, shared = results.get("distinct"), results.get("shared")
    summary["distinct_sessions_fires_per_s"] = _round(distinct and distinct.fires_per_s, 1)
    summary["shared_session_fires_per_s"] = _round(shared and shared.fires_per_s, 1)
    summary["lost"] = shared.lost if shared is not None else None
    summary["distinct_sessions_lost"] = distinct.lost if distinct is not None else None
    summary["distinct_sessions_runs_fires_per_s"] = distinct and [
        _round(value, 1) for value in distinct.runs_fires_per_s
    ]
    summary["shared_session_runs_fires_per_s"] = shared and [
        _round(value, 1) for value in shared.runs_fires_per_s
    ]
    summary["throughput_runs"] = plan.throughput_runs
    summary["throughput_processes"] = plan.processes
    summary["throughput_fires_per_process"] = plan.fires_per_process
    chains = results.get("chains")
    summary["cascade_hop_ms"] = _round(chains and chains.cascade_hop_ms)
    summary["celery_chain_hop_ms"] = _round(chains and chains.celery_chain_hop_ms)
    summary["cascade_overhead"] = _round(chains and chains.overhead, 2)
    memory = results.get("memory")
    summary["peak_rss_mb"] = _round(memory and memory.peak_rss_mb, 1)
    summary["peak_rss_empty_mb"] = _round(memory and memory.peak_rss_empty_mb, 1)
    summary["peak_rss_growth_mb"] = _round(memory and memory.growth_mb, 1)
    summary["peak_rss_session_instances"] = plan.rss_session_instances
    summary["growing_session_fire_p50_ms"] = memory and {
        "first_5pct": _round(memory.build_first_p50_ms),
        "last_5pct": _round(memory.build_last_p50_ms),
    }
    summary.update(
        db=args.db,
        quick=args.quick,
        python=platform.python_version(),
        django=django.get_version(),
        cpus=os.cpu_count(),
        load_avg_start=load_start,
        load_avg_end=round(os.getloadavg()[0], 2),
        **revision,
        elapsed_s=round(elapsed, 1),
    )
    if errors:
        summary["errors"] = errors
    return summary


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def print_table(summary: dict[str, Any], results: dict[str, Any], plan: Any) -> None:
    out: list[str] = []
    out.append(
        f"django-triggers benchmark: db={summary['db']} quick={summary['quick']} "
        f"python={summary['python']} django={summary['django']} cpus={summary['cpus']} "
        f"({summary['elapsed_s']:.0f} s)"
    )
    dirty = " + uncommitted changes to django_triggers/" if summary["git_dirty"] else ""
    out.append(f"commit {summary['git_commit']}{dirty}")
    busy = max(summary["load_avg_start"], summary["load_avg_end"]) > (summary["cpus"] or 1)
    out.append(
        f"1-minute load average: {summary['load_avg_start']} at the start, "
        f"{summary['load_avg_end']} at the end"
        + (": above the CPU count, other work competed and figures are noisy" if busy else "")
    )
    out.append(
        f"CPU probe (fixed Python work, ms of CPU): {summary['cpu_probe_ms_start']} at the "
        f"start, {summary['cpu_probe_ms_end']} at the end"
    )
    latency = results.get("latency")
    if latency is not None:
        out += [
            "",
            "Fire latency, ms (one fire() in autocommit mode, its on-commit work included)",
            "  a: applies 1 of the 2 after triggers (new unstarted instance)",
            "  b: completes them (instance scheduled, handed to a recording runner)",
            f"  {'case':<5}{'tasks':>6}{'fires':>7}{'p50':>9}{'p95':>9}{'queries':>9}",
        ]
        for case in latency.p50_ms:
            for size in latency.p50_ms[case]:
                out.append(
                    f"  {case:<5}{size:>6}{latency.samples[size]:>7}"
                    f"{latency.p50_ms[case][size]:>9.3f}{latency.p95_ms[case][size]:>9.3f}"
                    f"{latency.queries[case][size]:>9}"
                )
        out.append(f"  flatness (b, p50 at 1000 tasks / p50 at 1 task): {latency.flatness:.2f}")
        out += ["", "Configuring one session (update_configuration, median ms; setup, untimed)"]
        for size, ms in latency.configure_ms.items():
            out.append(f"  {size:>5} tasks {ms:>10.1f} ms  ({size / ms * 1000:>8.0f} tasks/s)")
    for name, label in (("distinct", "distinct sessions"), ("shared", "one shared session")):
        throughput = results.get(name)
        if throughput is None:
            continue
        if name == "distinct":
            out += [
                "",
                f"Throughput, {plan.processes} processes x {plan.fires_per_process} fires "
                f"(case b; wall time from the start signal to the last fire)",
            ]
            if plan.throughput_runs > 1:
                out.append(
                    f"  (each measured {plan.throughput_runs} times on fresh sessions: the "
                    f"median run; losses and errors of all runs)"
                )
        status = "ok" if not (throughput.lost or throughput.duplicates) else "LOST FIRES"
        out.append(
            f"  {label:<20}{throughput.fires_per_s:>9.1f} fires/s   {throughput.fires} fires in "
            f"{throughput.wall_s:.2f} s, lost {throughput.lost}, duplicates "
            f"{throughput.duplicates}, errors {throughput.errors}: {status}  "
            f"(setup {throughput.setup_s:.1f} s)"
        )
        if len(throughput.runs_fires_per_s) > 1:
            runs = ", ".join(f"{value:.1f}" for value in throughput.runs_fires_per_s)
            out.append(f"  {'':<20}runs: {runs} fires/s")
    memory = results.get("memory")
    if memory is not None:
        rss_before = _mb(memory.rss_before_fires_mb)
        rss_before_empty = _mb(memory.rss_before_fires_empty_mb)
        out += [
            "",
            f"Peak RSS of a process while it fires {memory.fires} times (VmHWM, MB)",
            f"  {f'into a session of {memory.instances} instances':<40}"
            f"{memory.peak_rss_mb:>8.1f}   (RSS before the fires {rss_before})",
            f"  {'into an empty session':<40}"
            f"{memory.peak_rss_empty_mb:>8.1f}   (RSS before the fires {rss_before_empty})",
            f"  {'growth':<40}{memory.growth_mb:>8.1f}",
            f"  building that session, one fire at a time: p50 {memory.build_first_p50_ms:.3f} ms "
            f"over the first 5% of fires, {memory.build_last_p50_ms:.3f} ms over the last 5%",
        ]
        if not memory.peak_reset:
            out.append("  (the peaks could not be reset: they include Django's setup)")
    chains = results.get("chains")
    if chains is not None:
        runs = ", ".join(f"{ms:.2f}" for ms in chains.cascade_runs_ms)
        plain_runs = ", ".join(f"{ms:.2f}" for ms in chains.celery_runs_ms)
        out += [
            "",
            f"Chain of {chains.length} no-op tasks on a Celery worker (--pool=solo), ms per hop",
            f"  cascading trigger tasks {chains.cascade_hop_ms:>8.2f}   (runs: {runs})",
            f"  plain celery.chain      {chains.celery_chain_hop_ms:>8.2f}   (runs: {plain_runs})",
            f"  overhead                {chains.overhead:>8.2f}x",
        ]
    if summary.get("errors"):
        out += ["", "Failed measurements:", *(f"  {error}" for error in summary["errors"])]
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
