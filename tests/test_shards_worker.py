"""Sessions spread over two database servers, run by a real Celery worker.

Run with two PostgreSQL databases (``TRIGGERS_DB=postgres TRIGGERS_SHARDS=1``)
or two MariaDB ones; skipped otherwise. The worker is a ``celery worker``
subprocess with the same settings, so the same router: it finds each
session, runs its instances and fires its cascades in the session's
database only.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django_celery_results.models import TaskResult

from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskInstance
from django_triggers.recovery import recover
from django_triggers.runners import BaseTaskRunner, CeleryTaskRunner
from tests.celery_worker import (  # noqa: F401  (fixtures)
    CeleryWorker,
    redis_worker_fixture,
    redis_worker_process_fixture,
    wait_until,
)
from tests.shards import (
    CASCADE,
    DATABASES,
    needs_two_databases_on_servers,
    nothing,
    other_than,
    rows_in,
    uid_in,
)

pytestmark = [
    needs_two_databases_on_servers,
    pytest.mark.server_database,
    pytest.mark.django_db(transaction=True, databases=list(DATABASES)),
]

#: ``"broken"``: :class:`BrokerDownThenCelery` raises, as a publish to a
#: broker that is down; ``"celery"``: it hands over to the Celery runner.
RUNNER_MODE = {"mode": "celery"}
_mode = threading.Lock()


class BrokerDownThenCelery(BaseTaskRunner):
    """This process's runner: Celery's, unless the broker is made out to be down."""

    name = "test_shards_worker.broker_down_then_celery"

    def run(self, manager: TriggerManager, task_instance: TaskInstance) -> None:
        with _mode:
            mode = RUNNER_MODE["mode"]
        if mode == "broken":
            raise ConnectionError("broker down")
        CeleryTaskRunner().run(manager, task_instance)


@pytest.fixture
def worker(redis_worker: CeleryWorker, settings: Any) -> CeleryWorker:
    """The worker; this process hands instances over through :class:`BrokerDownThenCelery`
    (the worker itself, in another process, hands its cascades to Celery)."""
    settings.TRIGGERS_DEFAULT_RUNNER = BrokerDownThenCelery.name
    RUNNER_MODE["mode"] = "celery"
    return redis_worker


def wait_for_status(
    manager: TriggerManager, name: str, status: str, worker: CeleryWorker
) -> TaskInstance:
    """Wait until instance ``name`` of the session, read in its database, has ``status``."""

    def reached() -> TaskInstance | None:
        instances = TaskInstance.objects.using(manager.database).filter(session=manager.session)
        failed = {i.name: i.metadata for i in instances.filter(status=TaskInstance.FAILED)}
        if failed:
            raise AssertionError(f"instances failed: {failed}\n{worker.log_tail()}")
        return instances.filter(name=name, status=status).first()

    return wait_until(
        reached,
        describe=lambda: (
            f"{name} never became {status}: {manager.debug_repr()}\n{worker.log_tail()}"
        ),
    )


def start_cascade(database: str) -> TriggerManager:
    manager = TriggerManager(uid_in(database, "worker"))
    manager.update_configuration(CASCADE)
    manager.fire("start", {"order": 42})
    return manager


def test_each_sessions_cascade_runs_on_the_worker_in_its_own_database(worker):
    managers = [start_cascade(database) for database in DATABASES]

    for manager in managers:
        wait_for_status(manager, "t_c#0", TaskInstance.FINISHED, worker)

    for manager in managers:
        home = manager.database
        assert rows_in(home, manager.session_uid) == {
            "sessions": 1,
            "configs": 3,
            "listeners": 3,
            "instances": 3,
            "fires": 4,
        }
        assert rows_in(other_than(home), manager.session_uid) == nothing()
        fires = FiredTrigger.objects.using(home).filter(session__uid=manager.session_uid)
        assert [f.source for f in fires.order_by("id")] == [
            FiredTrigger.APPLICATION,
            *[FiredTrigger.CASCADE] * 3,
        ]
        assert manager.get_instance("t_c#0").result == {
            "received": {"t_b": {"received": {"t_a": {"received": {"start": {"order": 42}}}}}}
        }


def test_the_celery_results_of_every_session_are_where_the_result_backend_writes_them(worker):
    """django-celery-results routes TaskResult without a session's hint: to ``default``."""
    managers = [start_cascade(database) for database in DATABASES]
    for manager in managers:
        wait_for_status(manager, "t_c#0", TaskInstance.FINISHED, worker)

    for manager in managers:
        task_ids = list(
            TaskInstance.objects.using(manager.database)
            .filter(session__uid=manager.session_uid)
            .values_list("celery_task_id", flat=True)
        )
        wait_until(
            lambda ids=task_ids: (
                TaskResult.objects.using("default")
                .filter(task_id__in=ids, status="SUCCESS")
                .count()
                == 3
            ),
            describe=worker.log_tail,
        )
        assert not TaskResult.objects.using("shard1").filter(task_id__in=task_ids).exists()
        assert manager.get_instance("t_c#0").task_result.status == "SUCCESS"


def test_the_recovery_sweep_hands_unsent_work_in_both_databases_to_the_worker(worker):
    RUNNER_MODE["mode"] = "broken"
    managers = [start_cascade(database) for database in DATABASES]
    RUNNER_MODE["mode"] = "celery"
    for manager in managers:
        unsent = manager.get_instance("t_a#0")
        assert (unsent.status, unsent.dispatched_at) == (TaskInstance.SCHEDULED, None)

    report = recover(redispatch_after=timedelta(0))

    assert sorted(report.never_dispatched) == sorted((m.session_uid, "t_a#0") for m in managers)
    for manager in managers:
        wait_for_status(manager, "t_c#0", TaskInstance.FINISHED, worker)
        assert rows_in(manager.database, manager.session_uid)["instances"] == 3
        assert rows_in(other_than(manager.database), manager.session_uid) == nothing()
