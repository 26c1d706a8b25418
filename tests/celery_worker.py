"""Real Celery workers for end-to-end tests.

:class:`CeleryWorker` runs ``celery -A example_project worker`` in a
subprocess, bound to a broker and to the test database, consuming a queue of
its own; :func:`app_publishing_to` makes this process's Celery app publish to
that broker and queue. The fixtures at the bottom combine both; import them
into a test module to use them (a fixture and the one it uses)::

    from tests.celery_worker import redis_worker_fixture, redis_worker_process_fixture

    def test_something(redis_worker): ...

Tests using them need a database server (``TRIGGERS_DB=postgres`` or ``mariadb``): the worker and
the test process share the test database, so tests commit what they write
(``transactional_db``). The benchmark (``bench/celery_chain.py``) runs its
chains on a :class:`CeleryWorker` too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import pytest
from celery import Celery

from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance
from example_project.celery import app as celery_app
from tests.celery_worker_queue import QUEUE_ENV
from tests.helpers import database_env

ROOT = Path(__file__).resolve().parent.parent

REDIS_BROKER_URL = os.environ.get("TRIGGERS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
RABBITMQ_BROKER_URL = os.environ.get(
    "TRIGGERS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"
)

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    *,
    interval: float = 0.05,
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    ``TimeoutError`` after ``timeout`` seconds, with ``describe()`` (the state
    that was being waited on) in its message.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            details = f"\n{describe()}" if describe is not None else ""
            raise TimeoutError(f"condition not met within {timeout:g}s{details}")
        time.sleep(interval)


def _drop_broker_connections() -> None:
    """Forget the app's broker connection and producer pools (Celery does so after a fork).

    The next message the app sends opens a connection to the broker the
    configuration names at that moment.
    """
    celery_app._pool = None
    amqp = celery_app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


#: Environment variables that Celery prefers to the app's configuration.
CELERY_ENV_OVERRIDES = (
    "CELERY_BROKER_URL",
    "CELERY_BROKER_READ_URL",
    "CELERY_BROKER_WRITE_URL",
    "CELERY_RESULT_BACKEND",
)


@contextmanager
def app_publishing_to(broker_url: str, queue: str) -> Iterator[Celery]:
    """Make ``example_project.celery.app`` send its messages to ``queue`` on ``broker_url``."""
    conf = celery_app.conf
    saved_env = {key: os.environ.pop(key) for key in CELERY_ENV_OVERRIDES if key in os.environ}
    saved = {key: getattr(conf, key) for key in ("broker_url", "task_default_queue")}
    _drop_broker_connections()
    conf.update(broker_url=broker_url, task_default_queue=queue)
    try:
        yield celery_app
    finally:
        _drop_broker_connections()
        conf.update(saved)
        os.environ.update(saved_env)


def new_manager(configuration: dict[str, Any]) -> TriggerManager:
    manager = TriggerManager(f"celery-worker-{uuid.uuid4().hex}")
    manager.update_configuration(configuration)
    return manager


def wait_for_status(
    manager: TriggerManager,
    name: str,
    status: str,
    worker: CeleryWorker,
    *,
    fail_fast: bool = True,
    timeout: float = 30.0,
) -> TaskInstance:
    """Wait until instance ``name`` has ``status``; with ``fail_fast``, stop if one failed."""

    def reached() -> TaskInstance | None:
        failed = TaskInstance.objects.filter(session=manager.session, status=TaskInstance.FAILED)
        if fail_fast and failed.exists():
            described = {i.name: i.metadata for i in failed}
            raise AssertionError(f"instances failed: {described}\n{worker.log_tail()}")
        return TaskInstance.objects.filter(
            session=manager.session, name=name, status=status
        ).first()

    return wait_until(
        reached,
        timeout,
        describe=lambda: (
            f"{name} never became {status}; session: {manager.debug_repr()}\n{worker.log_tail()}"
        ),
    )


class WorkerNotReady(RuntimeError):
    """The worker exited, or did not report itself ready in time."""


class CeleryWorker:
    """A ``celery -A example_project worker`` subprocess on its own queue.

    The worker runs with ``TRIGGERS_DEFAULT_RUNNER=celery`` against this
    process's database (see :func:`database_env`), logs at INFO to a file in
    ``log_dir``, and consumes only the queue :attr:`queue`, to which it also
    sends its own messages (cascades, retries).
    """

    def __init__(
        self,
        broker_url: str,
        log_dir: Path,
        *,
        pool: str = "solo",
        concurrency: int | None = None,
        ready_timeout: float = 60.0,
        stop_timeout: float = 20.0,
        include: tuple[str, ...] = ("tests.tasks",),
    ):
        if pool not in ("solo", "prefork"):
            raise ValueError(f"pool must be 'solo' or 'prefork', not {pool!r}")
        self.broker_url = broker_url
        self.pool = pool
        self.concurrency = concurrency
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.include = include
        self.name = f"triggers-test-{uuid.uuid4().hex[:12]}"
        self.queue = self.name
        self.log_dir = Path(log_dir)
        self.log_path = self.log_dir / f"{self.name}.log"
        self.output_path = self.log_dir / f"{self.name}.out"
        #: The directory the worker runs in (a project other than the example's, say).
        self.cwd = ROOT
        self.process: subprocess.Popen[bytes] | None = None
        #: ``name@host``, once the worker has reported itself ready.
        self.nodename: str | None = None

    def __repr__(self) -> str:
        return f"<CeleryWorker {self.name} on {self.broker_url} ({self.pool})>"

    # -- life cycle -------------------------------------------------------------

    def command(self) -> list[str]:
        pool = [f"--pool={self.pool}"]
        if self.concurrency is not None:
            pool.append(f"--concurrency={self.concurrency}")
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "example_project",
            "worker",
            *pool,
            *self.own_queue_options(),
            "--include",
            ",".join((*self.include, "tests.celery_worker_queue")),
            "--loglevel=INFO",
        ]

    def own_queue_options(self) -> list[str]:
        """Options that keep the worker to itself: its own name, queue and log file."""
        return [
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{self.name}@%h",
            "-Q",
            self.queue,
            f"--logfile={self.log_path}",
        ]

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in CELERY_ENV_OVERRIDES}
        env.update(database_env())
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "example_project.settings",
                "CELERY_BROKER_URL": self.broker_url,
                "TRIGGERS_DEFAULT_RUNNER": "celery",
                "TRIGGERS_TEST_REDIS_URL": REDIS_BROKER_URL,
                QUEUE_ENV: self.queue,
                "PYTHONPATH": os.pathsep.join(
                    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
                ),
            }
        )
        return env

    def start(self) -> None:
        """Purge the queue, start the worker and wait until it reports itself ready."""
        if self.is_running():
            raise RuntimeError(f"{self} is already running")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.purge_queue()
        ready_offset = len(self._read(self.log_path))
        with self.output_path.open("ab") as output:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.cwd,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ready = re.compile(rf"({re.escape(self.name)}@\S+) ready\.")
        deadline = time.monotonic() + self.ready_timeout
        while not (found := ready.search(self._read(self.log_path)[ready_offset:])):
            if self.process.poll() is not None:
                raise WorkerNotReady(
                    f"{self} exited with status {self.process.returncode} before it was "
                    f"ready.\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                self.kill()
                raise WorkerNotReady(
                    f"{self} was not ready after {self.ready_timeout:g}s.\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self.nodename = found.group(1)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Warm shutdown (SIGTERM); SIGKILL if it has not exited after ``stop_timeout``."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        self._wake_up()
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once."""
        if self.process is None:
            return
        if self.process.poll() is None:
            # The worker leads its own process group, which holds its pool processes.
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def _wake_up(self) -> None:
        """Send the worker a control message, so that its event loop notices a signal now.

        A worker idle on RabbitMQ otherwise polls for up to ten seconds
        before it acts on SIGTERM.
        """
        if self.nodename is None:
            return
        with suppress(Exception), celery_app.connection_for_write(self.broker_url) as conn:
            celery_app.control.broadcast(
                "ping", destination=[self.nodename], reply=False, connection=conn
            )

    def __enter__(self) -> CeleryWorker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop()
        finally:
            self.delete_queue()

    # -- broker -----------------------------------------------------------------

    @contextmanager
    def _bound_queue(self) -> Iterator[Any]:
        queue = celery_app.amqp.queues[self.queue]
        with celery_app.connection_for_write(self.broker_url) as conn:
            yield queue(conn.default_channel)

    def purge_queue(self) -> None:
        """Declare the worker's queue and drop every message waiting in it."""
        with self._bound_queue() as queue:
            queue.declare()
            queue.purge()

    def delete_queue(self) -> None:
        """Delete the worker's queue, its exchange and their binding."""
        with self._bound_queue() as queue:
            # Declared first so that the channel knows the binding it has to remove.
            queue.declare()
            queue.delete()
            queue.exchange.delete()

    # -- logs -------------------------------------------------------------------

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_text(self) -> str:
        """Everything the worker logged, then what it wrote to stdout and stderr."""
        return self._read(self.log_path) + self._read(self.output_path)

    def log_tail(self, lines: int = 80) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- last lines of {self.log_path} and {self.output_path.name} ---\n{tail}"

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        """Wait until ``text`` appears in the worker's log."""
        wait_until(
            lambda: text in self.log_text(),
            timeout,
            describe=lambda: f"{self} never logged {text!r}\n{self.log_tail()}",
        )


@contextmanager
def worker_for_test(worker: CeleryWorker, settings: Any) -> Iterator[CeleryWorker]:
    """Send this test's tasks to ``worker`` (restarted if it is down) through Celery."""
    if not worker.is_running():
        worker.start()
    settings.TRIGGERS_DEFAULT_RUNNER = "celery"
    with app_publishing_to(worker.broker_url, worker.queue):
        yield worker


@pytest.fixture(scope="session", name="redis_worker_process")
def redis_worker_process_fixture(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    """A prefork worker (two processes) on Redis, for the whole test session."""
    worker = CeleryWorker(
        REDIS_BROKER_URL, tmp_path_factory.mktemp("celery-redis"), pool="prefork", concurrency=2
    )
    with worker:
        yield worker


@pytest.fixture(scope="session", name="rabbitmq_worker_process")
def rabbitmq_worker_process_fixture(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    """A solo worker on RabbitMQ, for the whole test session."""
    worker = CeleryWorker(RABBITMQ_BROKER_URL, tmp_path_factory.mktemp("celery-rabbitmq"))
    with worker:
        yield worker


@pytest.fixture(name="redis_worker")
def redis_worker_fixture(
    redis_worker_process: CeleryWorker, transactional_db: None, settings: Any
) -> Iterator[CeleryWorker]:
    """The Redis worker; this test's scheduled instances are sent to it."""
    with worker_for_test(redis_worker_process, settings) as worker:
        yield worker


@pytest.fixture(name="rabbitmq_worker")
def rabbitmq_worker_fixture(
    rabbitmq_worker_process: CeleryWorker, transactional_db: None, settings: Any
) -> Iterator[CeleryWorker]:
    """The RabbitMQ worker; this test's scheduled instances are sent to it."""
    with worker_for_test(rabbitmq_worker_process, settings) as worker:
        yield worker
