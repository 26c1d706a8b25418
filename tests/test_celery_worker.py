"""End to end, with real Celery workers on Redis and RabbitMQ.

The test process fires triggers and its Celery app sends the scheduled
instances to a ``celery worker`` subprocess sharing the test database; the
tests wait for the database to show the outcome.
"""

import ast
import datetime
import json
import uuid
from typing import Any

import pytest
import redis
from django_celery_results.models import TaskResult

from django_triggers.models import FiredTrigger, TaskInstance
from django_triggers.task import get_trigger_task
from tests.celery_worker import (  # noqa: F401  (fixtures)
    REDIS_BROKER_URL,
    CeleryWorker,
    new_manager,
    rabbitmq_worker_fixture,
    rabbitmq_worker_process_fixture,
    redis_worker_fixture,
    redis_worker_process_fixture,
    wait_for_status,
    wait_until,
)
from tests.concurrent_firing import configure, expected_outcome, fire_from_processes, outcome
from tests.tasks import run_counter_key

pytestmark = [pytest.mark.server_database, pytest.mark.django_db(transaction=True)]

THREE_TASK_CASCADE = {
    "t_a": {"after": ["start"], "run": "tests.Echo"},
    "t_b": {"after": ["t_a"], "run": "tests.Echo"},
    "t_c": {"after": ["t_b"], "run": "tests.Echo"},
}


def worker_results(worker: CeleryWorker, session_uid: str) -> list[tuple[str, Any]]:
    """``(instance name, result)`` of each of the session's Celery tasks that succeeded on
    ``worker``, by instance name."""
    results = TaskResult.objects.filter(
        worker__startswith=f"{worker.name}@", status="SUCCESS", task_kwargs__contains=session_uid
    )
    return sorted(
        (
            (ast.literal_eval(json.loads(r.task_kwargs))["instance_name"], json.loads(r.result))
            for r in results
        ),
        key=lambda pair: pair[0],
    )


def assert_three_task_cascade_ran(worker: CeleryWorker) -> None:
    manager = new_manager(THREE_TASK_CASCADE)
    manager.fire("start", {"order": 42})

    wait_for_status(manager, "t_c#0", TaskInstance.FINISHED, worker)

    a, b, c = (manager.get_instance(name) for name in ("t_a#0", "t_b#0", "t_c#0"))
    assert [a.status, b.status, c.status] == [TaskInstance.FINISHED] * 3
    assert a.kwargs == {"start": {"order": 42}}
    assert a.result == {"received": {"start": {"order": 42}}}
    assert b.kwargs == {"t_a": a.result}
    assert b.result == {"received": {"t_a": a.result}}
    assert c.kwargs == {"t_b": b.result}
    assert c.result == {"received": {"t_b": b.result}}
    fired = FiredTrigger.objects.filter(session=manager.session).order_by("id")
    assert [(f.trigger_name, f.source) for f in fired] == [
        ("start", FiredTrigger.APPLICATION),
        ("t_a", FiredTrigger.CASCADE),
        ("t_b", FiredTrigger.CASCADE),
        ("t_c", FiredTrigger.CASCADE),
    ]
    # Each instance ran on the worker, as one Celery task returning its result.
    ran_on_worker = wait_until(
        lambda: len(results := worker_results(worker, manager.session_uid)) >= 3 and results,
        describe=lambda: f"{worker_results(worker, manager.session_uid)}\n{worker.log_tail()}",
    )
    assert ran_on_worker == [("t_a#0", a.result), ("t_b#0", b.result), ("t_c#0", c.result)]


def test_a_three_task_cascade_runs_end_to_end_on_a_redis_worker(redis_worker):
    assert_three_task_cascade_ran(redis_worker)


def test_a_three_task_cascade_runs_end_to_end_on_a_rabbitmq_worker(rabbitmq_worker):
    assert_three_task_cascade_ran(rabbitmq_worker)


def test_with_params_and_trigger_kwargs_arrive_intact_in_the_worker(redis_worker):
    manager = new_manager(
        {
            "t_echo": {
                "after": ["profile", "consent"],
                "withParams": {
                    "profile": {"source": "web", "address": {"country": "CH", "city": "?"}},
                    "consent": {"version": 3},
                },
                "run": "tests.Echo",
            }
        }
    )
    manager.fire(
        "profile",
        {
            "name": "Zoë Ångström-Øresund",
            "born": datetime.date(1990, 2, 28),
            "address": {"city": "Zürich", "lines": ["Bahnhofstraße 1", "8001 Zürich"]},
        },
    )
    manager.fire(
        "consent", {"given": True, "note": "同意します ✓", "scopes": {"mail": {"weekly": 1}}}
    )

    echo = wait_for_status(manager, "t_echo#0", TaskInstance.FINISHED, redis_worker)

    assert echo.result == {
        "received": {
            "profile": {
                "source": "web",
                "name": "Zoë Ångström-Øresund",
                "born": "1990-02-28",
                "address": {
                    "country": "CH",
                    "city": "Zürich",
                    "lines": ["Bahnhofstraße 1", "8001 Zürich"],
                },
            },
            "consent": {
                "version": 3,
                "given": True,
                "note": "同意します ✓",
                "scopes": {"mail": {"weekly": 1}},
            },
        }
    }


def test_a_retry_runs_its_clone_on_the_worker_only_after_the_cooldown(redis_worker):
    manager = new_manager({"t_retry": {"after": ["start"], "run": "tests.RetryOnceAfterCooldown"}})
    manager.fire("start", {"attempt": 1})

    clone = wait_for_status(
        manager, "t_retry#1", TaskInstance.FINISHED, redis_worker, fail_fast=False
    )

    parent = manager.get_instance("t_retry#0")
    assert parent.status == TaskInstance.REPLAYED
    assert parent.metadata["exception_type"] == "builtins.ConnectionError"
    assert clone.parent_id == parent.pk
    assert clone.retries == 1
    assert clone.result == {"received": {"start": {"attempt": 1}}}
    failed_at = datetime.datetime.fromisoformat(parent.metadata["timestamps"]["failed"])
    started_at = datetime.datetime.fromisoformat(clone.metadata["timestamps"]["running"])
    cooldown = get_trigger_task("tests.RetryOnceAfterCooldown").cooldown
    assert started_at >= failed_at + datetime.timedelta(seconds=cooldown)


def test_worker_processes_keep_their_database_connections_from_one_task_to_the_next(
    redis_worker,
):
    chain = [f"t_{i}" for i in range(6)]
    manager = new_manager(
        {
            name: {"after": [chain[i - 1] if i else "start"], "run": "tests.ReportDatabaseBackend"}
            for i, name in enumerate(chain)
        }
    )

    manager.fire("start")

    wait_for_status(manager, f"{chain[-1]}#0", TaskInstance.FINISHED, redis_worker)
    backends = {manager.get_instance(f"{name}#0").result["backend_pid"] for name in chain}
    # One connection per pool process (the worker runs two), not one per task.
    assert len(backends) <= 2, backends


def test_a_message_delivered_twice_runs_the_task_body_once(redis_worker):
    manager = new_manager({"t_count": {"after": ["start"], "run": "tests.CountRuns"}})
    counter = redis.Redis.from_url(REDIS_BROKER_URL)
    key = run_counter_key(manager.session_uid, "t_count#0")
    try:
        manager.fire("start")
        finished = wait_for_status(manager, "t_count#0", TaskInstance.FINISHED, redis_worker)
        assert int(counter.get(key)) == 1

        again = get_trigger_task("tests.CountRuns").apply_async(
            kwargs={"session_uid": manager.session_uid, "instance_name": "t_count#0"}
        )
        not_started = (
            f"Task instance t_count#0 of session {manager.session_uid} is finished, "
            f"not scheduled: not starting it"
        )

        def second_delivery_handled() -> bool:
            log = redis_worker.log_text()
            ended = f"[{again.id}] succeeded" in log or f"[{again.id}] raised" in log
            if ended and not_started not in log:
                raise AssertionError(
                    f"the second delivery ended without logging {not_started!r}\n"
                    f"{redis_worker.log_tail()}"
                )
            return ended

        wait_until(
            second_delivery_handled,
            describe=lambda: f"the second delivery was not handled\n{redis_worker.log_tail()}",
        )

        assert int(counter.get(key)) == 1
        unchanged = manager.get_instance("t_count#0")
        assert (unchanged.status, unchanged.result, unchanged.metadata, unchanged.modified) == (
            finished.status,
            finished.result,
            finished.metadata,
            finished.modified,
        )
        cascades = FiredTrigger.objects.filter(session=manager.session, trigger_name="t_count")
        assert cascades.count() == 1
    finally:
        counter.delete(key)
        counter.close()


def test_eight_processes_firing_200_triggers_each_into_one_session_lose_nothing():
    workers, fires = 8, 200
    session_uid = f"eight-processes-{uuid.uuid4().hex}"
    configure(session_uid, workers, fires)

    dispatched = fire_from_processes(session_uid, workers, fires)

    assert outcome(session_uid, dispatched) == expected_outcome(workers, fires)
