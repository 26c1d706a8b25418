"""The soak (``python -m bench.soak``), run briefly: faults overlap, and no guarantee breaks.

It needs PostgreSQL and ``redis-server``, starts its own broker, workers and
firing processes, and takes a couple of minutes, so it runs only when asked
for: ``TRIGGERS_SOAK=1 pytest tests/test_soak.py``. It lasts
``TRIGGERS_SOAK_MINUTES`` (0.5 by default) of faults, plus about half a
minute to start and to settle. Its database, ``test_triggers_soak`` unless
``TRIGGERS_SOAK_PG_NAME`` says otherwise, is dropped and created again.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("TRIGGERS_SOAK") != "1", reason="a soak run: set TRIGGERS_SOAK=1"
    ),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def test_a_short_soak_finds_no_violation() -> None:
    minutes = os.environ.get("TRIGGERS_SOAK_MINUTES", "0.5")
    database = os.environ.get("TRIGGERS_SOAK_PG_NAME", "test_triggers_soak")
    completed = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--minutes", minutes, "--pg-name", database],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=float(minutes) * 60 + 600,
    )
    lines = completed.stdout.strip().splitlines()
    assert lines, f"no summary (status {completed.returncode})\n{completed.stderr[-5000:]}"
    summary = json.loads(lines[-1])

    assert summary["violation_count"] == 0, json.dumps(summary, indent=2)
    assert completed.returncode == 0, completed.stderr[-5000:]
    assert summary["settled"]
    assert min(summary["faults"].values()) >= 1, summary["faults"]
    assert summary["fires"]["seen_ok"] > 0
    assert summary["outcome"]["sessions_done"] == summary["outcome"]["sessions"]
