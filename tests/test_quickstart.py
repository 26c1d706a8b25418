"""The README's quick start, followed to the letter in a new project.

The test reads the README's code blocks named ``quickstart-*``, so that they
cannot drift from what works: it runs the commands of ``quickstart-setup``
(``django-admin startproject`` and ``startapp``) in a temporary directory,
writes each Python block to the file its first line names, runs
``migrate``, starts the README's Celery worker on Redis, fires the triggers
of ``quickstart-fire`` from ``manage.py shell``, and waits until the
cascade's downstream instance has finished. Only the broker's database and
queue are the test's own, added to the project's settings after the
README's.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.celery_worker import CELERY_ENV_OVERRIDES, CeleryWorker, wait_until
from tests.helpers import ROOT

README = ROOT / "README.rst"

#: Redis, on a database of its own (the suite's other workers use 15 by default).
REDIS_URL = os.environ.get("TRIGGERS_TEST_QUICKSTART_REDIS_URL", "redis://127.0.0.1:6379/11")


def redis_is_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


pytestmark = pytest.mark.skipif(
    not redis_is_up(),
    reason=f"the quick start needs Redis: none answers at {REDIS_URL} "
    "(TRIGGERS_TEST_QUICKSTART_REDIS_URL)",
)

#: The Python blocks, in the order the README applies them.
FILE_BLOCKS = (
    "quickstart-celery",
    "quickstart-init",
    "quickstart-settings",
    "quickstart-tasks",
    "quickstart-workflow",
)

#: ``# path/to/file.py`` or ``# path/to/file.py: add at the end``.
FILE_COMMENT = re.compile(r"^# (?P<path>[\w/]+\.py)(?P<append>: add at the end)?$")


def named_code_blocks(text: str) -> dict[str, str]:
    """The content of every ``.. code-block::`` of ``text`` that has a ``:name:``, dedented."""
    blocks: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if not lines[index].startswith(".. code-block::"):
            index += 1
            continue
        index += 1
        name = None
        while index < len(lines) and (option := re.match(r"^\s+:([\w-]+):(.*)$", lines[index])):
            if option[1] == "name":
                name = option[2].strip()
            index += 1
        body = []
        while index < len(lines) and (not lines[index].strip() or lines[index].startswith(" ")):
            body.append(lines[index])
            index += 1
        if name is not None:
            blocks[name] = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
    return blocks


def commands(block: str) -> list[list[str]]:
    """The shell commands of a ``sh`` block, split as the shell would, comments removed."""
    return [argv for line in block.splitlines() if (argv := shlex.split(line, comments=True))]


def project_environment() -> dict[str, str]:
    """This environment, less what would point the project at the example project's settings."""
    removed = {"DJANGO_SETTINGS_MODULE", "PYTHONPATH", *CELERY_ENV_OVERRIDES}
    return {key: value for key, value in os.environ.items() if key not in removed}


def django_admin() -> list[str]:
    script = Path(sys.executable).with_name("django-admin")
    return [str(script)] if script.exists() else [sys.executable, "-m", "django"]


def run(argv: list[str], cwd: Path) -> str:
    """Run a command of the README, with this interpreter; return its output."""
    program, *args = argv
    executable = {"django-admin": django_admin(), "python": [sys.executable]}[program]
    completed = subprocess.run(
        [*executable, *args],
        cwd=cwd,
        env=project_environment(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"{shlex.join(argv)} failed:\n{output}"
    return output


def apply_snippet(project: Path, block: str) -> None:
    """Write ``block`` to the file its first line names, or add it at the end of that file."""
    found = FILE_COMMENT.match(block.splitlines()[0])
    assert found, f"a quick start block must start with '# path/to/file.py': {block[:80]!r}"
    path = project / found["path"]
    if found["append"]:
        assert path.exists(), f"{found['path']} should exist before the README adds to it"
        path.write_text(path.read_text() + "\n" + block)
    else:
        path.write_text(block)


class QuickstartWorker(CeleryWorker):
    """The README's ``celery -A proj worker`` command, in the new project, on its own queue."""

    def __init__(self, project: Path, readme_command: list[str], log_dir: Path):
        super().__init__(REDIS_URL, log_dir)
        self.cwd = project
        self.readme_command = readme_command

    def command(self) -> list[str]:
        program, *args = self.readme_command
        assert program == "celery", self.readme_command
        return [
            sys.executable,
            "-m",
            "celery",
            *args,
            "--pool=solo",
            *self.own_queue_options(),
        ]

    def environment(self) -> dict[str, str]:
        return project_environment()


def session_state(project: Path, session_uid: str) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "manage.py", "triggers_show", session_uid, "--json"],
        cwd=project,
        env=project_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    state: dict[str, Any] = json.loads(output)
    return state


def test_the_quick_start_runs_a_cascade_on_a_celery_worker(tmp_path: Path) -> None:
    blocks = named_code_blocks(README.read_text(encoding="utf-8"))

    # pip install, django-admin startproject proj, cd proj, manage.py startapp.
    project = tmp_path
    for argv in commands(blocks["quickstart-setup"]):
        if argv[0] == "pip":
            assert any(arg.startswith("django-triggerflow") for arg in argv), argv
        elif argv[0] == "cd":
            project = project / argv[1]
        else:
            run(argv, project)
    assert (project / "manage.py").is_file()

    for name in FILE_BLOCKS:
        apply_snippet(project, blocks[name])

    [*setup, worker_command] = commands(blocks["quickstart-worker"])
    worker = QuickstartWorker(project, worker_command, tmp_path / "logs")
    with (project / "proj" / "settings.py").open("a") as settings:
        settings.write(
            "\n# The test's own broker database and queue.\n"
            f"CELERY_BROKER_URL = {REDIS_URL!r}\n"
            f"CELERY_TASK_DEFAULT_QUEUE = {worker.queue!r}\n"
        )
    for argv in setup:  # python manage.py migrate
        run(argv, project)
    assert "System check identified no issues" in run(["python", "manage.py", "check"], project)

    fire = blocks["quickstart-fire"]
    assert fire.startswith("# python manage.py shell\n")
    with worker:
        run(["python", "manage.py", "shell", "-c", fire], project)

        def finished() -> dict[str, Any] | None:
            instances = session_state(project, "questionnaire-1")["instances"]
            failed = {name: i for name, i in instances.items() if i["status"] == "failed"}
            assert not failed, f"instances failed: {failed}\n{worker.log_tail()}"
            downstream = instances.get("t_importResponses#0", {})
            return instances if downstream.get("status") == "finished" else None

        instances = wait_until(
            finished,
            90,
            interval=0.2,
            describe=lambda: (
                f"{json.dumps(session_state(project, 'questionnaire-1'), indent=1)}\n"
                f"{worker.log_tail()}"
            ),
        )

    assert instances["t_importSubject#0"]["status"] == "finished"
    assert instances["t_importSubject#0"]["result"] == {"subject": "Ada Lovelace"}
    assert instances["t_importResponses#0"]["result"] == {"subject": "Ada Lovelace", "page": 2}
    # The shell found the tasks through the worker's autodiscovery, not an import.
    assert "questionnaire.tasks" not in fire
