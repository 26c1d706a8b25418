"""Faults on the production path, with real workers: nothing lost, nothing run twice.

A broker that cannot be reached when a fire commits, a worker pool process
killed in the middle of a task (its message is delivered again, thanks to
``acks_late`` and ``reject_on_worker_lost``), and a whole worker killed with
SIGKILL. In each case the instance ends up either run or visible to the
recovery sweep, and its body never starts twice.
"""

import os
import signal
from datetime import timedelta

import pytest
import redis

from django_triggers.exceptions import StuckInstance
from django_triggers.models import TaskInstance
from django_triggers.recovery import recover
from tests.celery_worker import (  # noqa: F401  (fixtures)
    REDIS_BROKER_URL,
    CeleryWorker,
    app_publishing_to,
    new_manager,
    redis_worker_fixture,
    redis_worker_process_fixture,
    wait_for_status,
    wait_until,
    worker_for_test,
)
from tests.tasks import block_key

pytestmark = [pytest.mark.server_database, pytest.mark.django_db(transaction=True)]

UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"
BLOCKING_THEN_ECHO = {
    "t_block": {"after": ["start"], "run": "tests.BlockUntilReleased"},
    "t_next": {"after": ["t_block"], "run": "tests.Echo"},
}


@pytest.fixture
def blocks():
    """Redis lists through which BlockUntilReleased reports its start and is released."""
    client = redis.Redis.from_url(REDIS_BROKER_URL)
    keys: list[str] = []

    class Blocks:
        def wait_started(self, session_uid: str, instance_name: str) -> int:
            key = block_key(session_uid, instance_name)
            keys.extend([f"{key}:started", f"{key}:release"])
            popped = client.blpop([f"{key}:started"], timeout=30)
            assert popped is not None, f"{instance_name} never started"
            return int(popped[1])

        def release(self, session_uid: str, instance_name: str) -> None:
            key = block_key(session_uid, instance_name)
            keys.extend([f"{key}:started", f"{key}:release"])
            client.rpush(f"{key}:release", "go")

        def starts(self, session_uid: str, instance_name: str) -> int:
            return client.llen(f"{block_key(session_uid, instance_name)}:started")

    yield Blocks()
    if keys:
        client.delete(*keys)
    client.close()


def test_a_fire_succeeds_while_the_broker_is_unreachable_and_recovery_runs_it_later(
    redis_worker,
):
    manager = new_manager(
        {
            "t_a": {"after": ["start"], "run": "tests.Echo"},
            "t_b": {"after": ["t_a"], "run": "tests.Echo"},
        }
    )
    with app_publishing_to(UNREACHABLE_BROKER, redis_worker.queue):
        scheduled = manager.fire("start", {"order": 7})

    assert [instance.name for instance in scheduled] == ["t_a#0"]
    waiting = manager.get_instance("t_a#0")
    assert waiting.status == TaskInstance.SCHEDULED
    assert waiting.dispatched_at is None
    assert "Connection refused" in waiting.metadata["dispatch_error"]["error"]

    # The broker is back: the sweep hands the instance over, and the workflow goes on.
    report = recover(redispatch_after=timedelta(0))

    assert report.redispatched == [(manager.session_uid, "t_a#0")]
    wait_for_status(manager, "t_b#0", TaskInstance.FINISHED, redis_worker)
    recovered = manager.get_instance("t_a#0")
    assert recovered.result == {"received": {"start": {"order": 7}}}
    assert recovered.dispatched_at is not None
    assert wait_until(lambda: recovered.task_result).status == "SUCCESS"


def test_a_killed_pool_process_redelivers_its_message_which_does_not_start_the_task_again(
    tmp_path, settings, blocks
):
    worker = CeleryWorker(REDIS_BROKER_URL, tmp_path, pool="prefork", concurrency=1)
    with worker, worker_for_test(worker, settings):
        manager = new_manager(BLOCKING_THEN_ECHO)
        manager.fire("start")
        pid = blocks.wait_started(manager.session_uid, "t_block#0")
        assert manager.get_instance("t_block#0").status == TaskInstance.RUNNING

        os.kill(pid, signal.SIGKILL)

        # acks_late + reject_on_worker_lost: the message comes back, and finds the
        # instance running.
        worker.wait_for_log("is running, not scheduled: not starting it")
        assert blocks.starts(manager.session_uid, "t_block#0") == 0
        assert manager.get_instance("t_block#0").status == TaskInstance.RUNNING

        report = recover(stuck_after=timedelta(0), fail_stuck=True)

        assert (manager.session_uid, "t_block#0") in report.failed_stuck
        failed = manager.get_instance("t_block#0")
        assert failed.status == TaskInstance.FAILED
        assert failed.metadata["exception_type"] == (
            f"{StuckInstance.__module__}.{StuckInstance.__qualname__}"
        )

        replay = manager.replay_failed_instance("t_block#0")
        assert replay.name == "t_block#1"
        blocks.wait_started(manager.session_uid, "t_block#1")
        blocks.release(manager.session_uid, "t_block#1")
        wait_for_status(manager, "t_next#0", TaskInstance.FINISHED, worker, fail_fast=False)
        assert manager.get_instance("t_block#0").status == TaskInstance.REPLAYED
        assert manager.get_instance("t_block#1").status == TaskInstance.FINISHED


def test_a_worker_killed_mid_task_leaves_a_stuck_instance_that_recovery_fails_for_replay(
    tmp_path, settings, blocks, redis_worker_process
):
    doomed = CeleryWorker(REDIS_BROKER_URL, tmp_path)
    doomed.start()
    try:
        with worker_for_test(doomed, settings):
            manager = new_manager(BLOCKING_THEN_ECHO)
            manager.fire("start")
            blocks.wait_started(manager.session_uid, "t_block#0")
            doomed.kill()
    finally:
        doomed.delete_queue()

    stuck = manager.get_instance("t_block#0")
    assert stuck.status == TaskInstance.RUNNING
    report = recover(stuck_after=timedelta(0))
    assert (manager.session_uid, "t_block#0") in report.stuck_running
    assert report.failed_stuck == []
    assert manager.get_instance("t_block#0").status == TaskInstance.RUNNING

    report = recover(stuck_after=timedelta(0), fail_stuck=True)
    assert (manager.session_uid, "t_block#0") in report.failed_stuck

    with worker_for_test(redis_worker_process, settings):
        manager.replay_failed_instance("t_block#0")
        blocks.wait_started(manager.session_uid, "t_block#1")
        blocks.release(manager.session_uid, "t_block#1")
        wait_for_status(
            manager, "t_next#0", TaskInstance.FINISHED, redis_worker_process, fail_fast=False
        )
    assert manager.get_instance("t_block#0").status == TaskInstance.REPLAYED
    assert manager.get_instance("t_next#0").kwargs == {
        "t_block": manager.get_instance("t_block#1").result
    }
