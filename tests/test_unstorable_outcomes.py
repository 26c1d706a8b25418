"""However a task's run ends, its instance leaves ``running`` in that run.

Each ending in ``tests.tasks.BAD_ENDINGS`` is one a database cannot store as
given (NUL characters, lone surrogates, values nested 5,000 deep), or one that
once escaped the worker (``SystemExit``, an exception whose ``str()``
raises). Diagnostics are stored sanitised; a result, skip or retry that
cannot be stored fails the instance with an error saying why. Run in this
process on every database, and through real Celery workers (solo and
prefork) on every database server.
"""

import json
import logging
from typing import Any

import pytest
from django.db import OperationalError
from django_celery_results.models import TaskResult

from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance
from tests.celery_worker import (  # noqa: F401  (fixtures)
    CeleryWorker,
    new_manager,
    rabbitmq_worker_fixture,
    rabbitmq_worker_process_fixture,
    redis_worker_fixture,
    redis_worker_process_fixture,
    wait_for_status,
    wait_until,
)
from tests.tasks import BAD_ENDINGS

UNENCODABLE = "django_triggers.exceptions.UnencodableValue"

#: ``case: (exception type, text its message holds)`` of the failure recorded.
EXPECTED_FAILURES: dict[str, tuple[str, str]] = {
    "nul_in_result": (UNENCODABLE, "holds a NUL character (U+0000)"),
    "surrogate_in_result": (UNENCODABLE, "holds a lone surrogate (U+D800)"),
    "deep_result": (UNENCODABLE, "nested deeper than 30 levels"),
    "nul_in_message": ("builtins.ValueError", "bad\\x00message"),
    "surrogate_in_message": ("builtins.ValueError", "bad \\udc80 message"),
    "nul_in_context": ("builtins.ValueError", "context"),
    "deep_context": ("builtins.ValueError", "context"),
    "unprintable_exception": ("tests.tasks.Unprintable", "str() failed"),
    "system_exit": ("builtins.SystemExit", "3"),
    "nul_in_skip_metadata": (UNENCODABLE, "the metadata cannot be stored"),
    "nul_in_retry_metadata": (UNENCODABLE, "the metadata cannot be stored"),
    "nul_in_retry_kwargs": (UNENCODABLE, "replacement kwargs"),
}


def configuration(cases: list[str]) -> dict[str, Any]:
    return {
        f"t_{case}": {
            "after": ["start"],
            "run": "tests.EndBadly",
            "withParams": {"start": {"case": case}},
        }
        for case in cases
    }


def assert_failed_as_expected(instance: TaskInstance, case: str) -> None:
    exception_type, message = EXPECTED_FAILURES[case]
    assert instance.status == TaskInstance.FAILED, (case, instance.status)
    assert instance.metadata["exception_type"] == exception_type, case
    assert message in instance.metadata["exception_message"], (case, instance.metadata)


def test_every_bad_ending_has_an_expected_failure():
    assert set(EXPECTED_FAILURES) == set(BAD_ENDINGS)


@pytest.mark.parametrize("case", sorted(BAD_ENDINGS))
def test_a_run_that_ends_badly_fails_its_instance_in_the_same_run(trigger_manager, triggers, case):
    trigger_manager.update_configuration(configuration([case]))

    trigger_manager.fire("start")

    triggers.assertInstanceFailed(f"t_{case}#0", EXPECTED_FAILURES[case][0])
    assert_failed_as_expected(trigger_manager.get_instance(f"t_{case}#0"), case)


def test_a_nul_in_an_exception_message_is_stored_escaped(trigger_manager, triggers):
    trigger_manager.update_configuration(configuration(["nul_in_message"]))
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_nul_in_message#0", ValueError)

    metadata = trigger_manager.get_instance("t_nul_in_message#0").metadata

    assert metadata["exception_message"] == "bad\\x00message"
    assert "ValueError: bad\\x00message" in metadata["traceback"]


def test_context_nested_too_deep_is_stored_cut_short_with_a_note(trigger_manager, triggers):
    trigger_manager.update_configuration(configuration(["deep_context"]))
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_deep_context#0", ValueError)

    context = trigger_manager.get_instance("t_deep_context#0").metadata["exception_context"]

    assert "<nested deeper than 30 levels>" in json.dumps(context)


def test_a_result_that_cannot_be_stored_fires_no_cascade(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            **configuration(["nul_in_result"]),
            "t_next": {"after": ["t_nul_in_result"], "run": "tests.Echo"},
        }
    )
    trigger_manager.fire("start")

    triggers.assertInstanceFailed("t_nul_in_result#0", UNENCODABLE)
    triggers.assertInstanceMissing("t_next#0")


def test_a_failed_instance_is_logged_at_error_with_its_traceback(trigger_manager, triggers, caplog):
    trigger_manager.update_configuration(configuration(["nul_in_message"]))

    with caplog.at_level(logging.ERROR, logger="django_triggers"):
        trigger_manager.fire("start")
        triggers.assertInstanceFailed("t_nul_in_message#0", ValueError)

    [record] = [r for r in caplog.records if "t_nul_in_message#0" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


# -- through real Celery workers -----------------------------------------------------------


def assert_every_bad_ending_fails_on(worker: CeleryWorker) -> None:
    cases = sorted(BAD_ENDINGS)
    manager = new_manager(configuration(cases))

    manager.fire("start")

    for case in cases:
        instance = wait_for_status(
            manager, f"t_{case}#0", TaskInstance.FAILED, worker, fail_fast=False
        )
        assert_failed_as_expected(instance, case)
    assert worker.is_running(), worker.log_tail()
    # The worker still runs tasks after all of them.
    survivor = new_manager({"t_echo": {"after": ["start"], "run": "tests.Echo"}})
    survivor.fire("start", {"n": 1})
    wait_for_status(survivor, "t_echo#0", TaskInstance.FINISHED, worker)


@pytest.mark.server_database
@pytest.mark.django_db(transaction=True)
def test_a_solo_worker_fails_every_bad_ending_and_keeps_running(rabbitmq_worker):
    assert rabbitmq_worker.pool == "solo"
    assert_every_bad_ending_fails_on(rabbitmq_worker)


@pytest.mark.server_database
@pytest.mark.django_db(transaction=True)
def test_a_prefork_worker_fails_every_bad_ending_and_keeps_running(redis_worker):
    assert redis_worker.pool == "prefork"
    assert_every_bad_ending_fails_on(redis_worker)


@pytest.mark.server_database
@pytest.mark.django_db(transaction=True)
def test_a_failed_instance_is_a_failed_celery_task(redis_worker):
    manager = new_manager(configuration(["nul_in_message"]))
    manager.fire("start")
    instance = wait_for_status(
        manager, "t_nul_in_message#0", TaskInstance.FAILED, redis_worker, fail_fast=False
    )

    row = wait_until(lambda: TaskResult.objects.filter(task_id=instance.celery_task_id).first())

    assert row.status == "FAILURE"
    assert "TaskInstanceFailed" in row.result
    assert "bad\\\\x00message" in row.result


def test_a_finish_rolled_back_to_break_a_deadlock_is_tried_again(
    trigger_manager, triggers, monkeypatch
):
    real_finish = TriggerManager.finish_instance
    calls = []

    def deadlocked_once(self, *args, **kwargs):
        calls.append(args[0].name)
        if len(calls) == 1:
            raise OperationalError("deadlock found when trying to get lock")
        return real_finish(self, *args, **kwargs)

    monkeypatch.setattr(TriggerManager, "finish_instance", deadlocked_once)
    trigger_manager.update_configuration({"t": {"after": ["go"], "run": "tests.Echo"}})

    trigger_manager.fire("go", {"n": 1})

    triggers.assertInstanceFinished("t#0", {"received": {"go": {"n": 1}}})
    assert calls == ["t#0", "t#0"]
