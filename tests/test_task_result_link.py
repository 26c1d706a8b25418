"""``TaskInstance.task_result``: the ``django_celery_results`` row of an instance's Celery task."""

import uuid

import pytest
from django_celery_results.models import TaskResult

from django_triggers.runners import BaseTaskRunner
from django_triggers.task import get_trigger_task

ECHO = "tests.Echo"


class IdleRunner(BaseTaskRunner):
    """Accepts instances and leaves them scheduled."""

    name = "test_task_result_link.idle"

    def run(self, manager, task_instance):
        pass


@pytest.fixture
def scheduled(trigger_manager):
    trigger_manager.update_configuration(
        {"t_a": {"after": ["a"], "run": ECHO, "using": IdleRunner.name}}
    )
    trigger_manager.fire("a")
    instance = trigger_manager.get_instance("t_a#0")
    assert instance.celery_task_id
    return instance


def test_task_result_is_the_row_whose_task_id_is_the_celery_task_id(scheduled):
    TaskResult.objects.create(task_id=str(uuid.uuid4()), status="FAILURE")
    row = TaskResult.objects.create(task_id=scheduled.celery_task_id, status="SUCCESS")

    result = scheduled.task_result

    assert result is not None
    assert result.pk == row.pk
    assert result.status == "SUCCESS"


def test_task_result_is_none_when_no_row_has_the_celery_task_id(scheduled):
    TaskResult.objects.create(task_id=str(uuid.uuid4()), status="SUCCESS")

    assert scheduled.task_result is None


def test_task_result_is_none_for_an_instance_without_a_celery_task_id(trigger_manager):
    trigger_manager.update_configuration({"t_pair": {"after": ["a", "b"], "run": ECHO}})
    trigger_manager.fire("a")
    unstarted = trigger_manager.get_instance("t_pair#0")
    TaskResult.objects.create(task_id=str(uuid.uuid4()), status="SUCCESS")

    assert unstarted.celery_task_id == ""
    assert unstarted.task_result is None


def test_a_finished_instance_links_to_the_result_of_its_celery_task(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_a": {"after": ["a"], "run": ECHO}})
    trigger_manager.fire("a")
    triggers.assertInstanceFinished("t_a#0")
    instance = trigger_manager.get_instance("t_a#0")
    row = TaskResult.objects.create(task_id=instance.celery_task_id, status="SUCCESS")

    assert instance.task_result.pk == row.pk


def test_the_celery_runner_sends_the_celery_task_id_as_the_task_id(trigger_manager, monkeypatch):
    sent = []
    task = get_trigger_task(ECHO)
    monkeypatch.setattr(task, "apply_async", lambda **options: sent.append(options))
    trigger_manager.update_configuration({"t_a": {"after": ["a"], "run": ECHO, "using": "celery"}})

    trigger_manager.fire("a")

    instance = trigger_manager.get_instance("t_a#0")
    assert [options["task_id"] for options in sent] == [instance.celery_task_id]
    assert sent[0]["kwargs"] == {
        "session_uid": trigger_manager.session_uid,
        "instance_name": "t_a#0",
    }
