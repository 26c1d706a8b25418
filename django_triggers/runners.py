"""Task runners: how a scheduled instance reaches the code that runs it.

A runner is handed each scheduled instance after the transaction that
scheduled it has committed. Subclasses of :class:`BaseTaskRunner` that set
``name`` register themselves when the class is created; the ``using``
directive, a manager's ``default_task_runner_name`` and the
``TRIGGERS_DEFAULT_RUNNER`` setting refer to runners by that name. Runners
defined in modules nothing imports at startup are listed, as dotted paths, in
the ``TRIGGERS_RUNNERS`` setting.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, ClassVar

from django.db import connections, transaction
from django.utils import timezone

from django_triggers.registry import get_trigger_task, register_runner

if TYPE_CHECKING:
    from datetime import datetime

    from django_triggers.manager import TriggerManager
    from django_triggers.models import TaskInstance

logger = logging.getLogger(__name__)


class BaseTaskRunner:
    """Base class of task runners; set ``name`` and implement :meth:`run`."""

    name: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name:
            register_runner(name, cls)

    def run(self, manager: TriggerManager, task_instance: TaskInstance) -> None:
        """Start running ``task_instance`` (already ``scheduled`` and committed)."""
        raise NotImplementedError(f"{type(self).__name__} must implement run()")


class CeleryTaskRunner(BaseTaskRunner):
    """Send the instance to a Celery worker; the production default.

    The message carries identifiers only: the worker reads kwargs, params and
    the manager class from the database.
    """

    name = "celery"

    def run(self, manager: TriggerManager, task_instance: TaskInstance) -> None:
        celery_task = get_trigger_task(task_instance.config.run)
        eta = (
            task_instance.eta if task_instance.eta and task_instance.eta > timezone.now() else None
        )
        celery_task.apply_async(
            kwargs={"session_uid": manager.session_uid, "instance_name": task_instance.name},
            task_id=task_instance.celery_task_id or None,
            # celery-types declares eta as datetime; Celery takes None for "now".
            eta=eta,  # type: ignore[arg-type]
        )


class ThreadingTaskRunner(BaseTaskRunner):
    """Run each instance in a thread of this process: for tests, demos and scripts.

    The thread is handed the manager's class itself, so managers that are not
    importable (defined in a test, say) still handle their cascades.
    """

    name = "threading"

    _threads: ClassVar[set[threading.Thread]] = set()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def run(self, manager: TriggerManager, task_instance: TaskInstance) -> None:
        manager_class = type(manager)
        args = (manager_class, manager.session_uid, task_instance.name, task_instance.config.run)
        if transaction.get_connection(manager.database).in_atomic_block:
            # Still inside an uncommitted transaction of the session's database
            # (Django's TestCase running on_commit callbacks): another
            # connection could not see the instance, so run it here, in this
            # thread and transaction.
            self._execute(*args, eta=task_instance.eta, close_connections=False)
            return
        thread = threading.Thread(
            target=self._execute,
            args=args,
            kwargs={"eta": task_instance.eta, "close_connections": True},
            name=f"triggers:{task_instance.name}",
            daemon=True,
        )
        # Started under the lock, so join_all never sees a thread that is
        # registered but not yet alive (and would wrongly count it as done).
        with self._lock:
            self._threads.add(thread)
            thread.start()

    @classmethod
    def _execute(
        cls,
        manager_class: type[TriggerManager],
        session_uid: str,
        instance_name: str,
        run: str,
        *,
        eta: datetime | None,
        close_connections: bool,
    ) -> None:
        try:
            delay = (eta - timezone.now()).total_seconds() if eta else 0
            if delay > 0:
                time.sleep(delay)
            get_trigger_task(run).execute(manager_class, session_uid, instance_name)
        except Exception:
            logger.exception("Task instance %s of session %s crashed", instance_name, session_uid)
        finally:
            if close_connections:
                connections.close_all()
                with cls._lock:
                    cls._threads.discard(threading.current_thread())

    @classmethod
    def join_all(cls, timeout: float | None = None) -> None:
        """Wait until every task thread, cascades included, has finished.

        ``TimeoutError`` if threads are still running after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with cls._lock:
                pending = [thread for thread in cls._threads if thread.is_alive()]
                cls._threads.intersection_update(pending)
            if not pending:
                return
            for thread in pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{len(pending)} task thread(s) still running")
                thread.join(remaining)
