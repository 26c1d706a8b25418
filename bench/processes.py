"""Fire processes started by the run (``python -m bench.fire_worker``), seen from the run."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.env import ROOT, child_environment
from bench.fire_worker import PREFIX


class BenchmarkError(RuntimeError):
    """A measurement could not be taken, or what it produced is wrong."""


class FireProcess:
    """One ``bench.fire_worker`` process, fed one job; its reports arrive on a queue."""

    def __init__(self, job: dict[str, Any], stderr_path: Path):
        self.stderr_path = stderr_path
        self._reports: queue.Queue[dict[str, Any] | None] = queue.Queue()
        with stderr_path.open("w") as stderr:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "bench.fire_worker"],
                cwd=ROOT,
                env=child_environment(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self._reader = threading.Thread(target=self._read_reports, daemon=True)
        self._reader.start()
        self.send(json.dumps(job))

    def _read_reports(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            if line.startswith(PREFIX):
                self._reports.put(json.loads(line[len(PREFIX) :]))
        self._reports.put(None)

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any]:
        """The process's next report; ``BenchmarkError`` if it exits or stays silent."""
        try:
            report = self._reports.get(timeout=timeout)
        except queue.Empty:
            raise BenchmarkError(
                f"fire process {self.popen.pid} sent nothing for {timeout:g}s\n{self.stderr_tail()}"
            ) from None
        if report is None:
            self.popen.wait(10)
            raise BenchmarkError(
                f"fire process {self.popen.pid} exited with status {self.popen.returncode}\n"
                f"{self.stderr_tail()}"
            )
        return report

    def stderr_tail(self, lines: int = 30) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last lines of {self.stderr_path} ---\n{tail}"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                stream.close()


def run_rss_process(job: dict[str, Any], stderr_path: Path, timeout: float) -> dict[str, Any]:
    """Run one memory-measuring job to its end and return its report."""
    process = FireProcess(job, stderr_path)
    try:
        report = process.receive(timeout)
        process.popen.wait(timeout)
        return report
    finally:
        process.stop()


def run_fire_processes(
    jobs: list[dict[str, Any]], workdir: Path, label: str, *, timeout: float = 600.0
) -> tuple[list[dict[str, Any]], float]:
    """Start one process per job, let them fire together, and return their reports.

    The processes set Django up, warm up and report ready; then they all get
    the start signal at once. The wall time runs from that signal to the
    last process's last fire.
    """
    processes: list[FireProcess] = []
    try:
        for index, job in enumerate(jobs):
            processes.append(FireProcess(job, workdir / f"{label}-{index}.stderr"))
        for process in processes:
            process.receive(timeout)
        started = time.time()
        for process in processes:
            process.send("go")
        reports = [process.receive(timeout) for process in processes]
        for process in processes:
            process.popen.wait(timeout)
    finally:
        for process in processes:
            process.stop()
    return reports, max(report["finished"] for report in reports) - started
