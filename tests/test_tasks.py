"""Running a task (worker side): kwargs, results, cascades, failures, skips,
retries, filters, logging, duplicate deliveries and the Celery entry point."""

import json
import logging
from datetime import datetime, timedelta

import pytest

from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskInstance
from django_triggers.runners import ThreadingTaskRunner
from example_project.celery import app as celery_app


class ImportableManager(TriggerManager):
    """A manager subclass that workers in other processes can import."""


def fires_of(manager, trigger_name):
    return list(
        FiredTrigger.objects.filter(session=manager.session, trigger_name=trigger_name).order_by(
            "id"
        )
    )


def timestamp(instance, status):
    return datetime.fromisoformat(instance.metadata["timestamps"][status])


@pytest.fixture
def celery_eager(trigger_manager, settings):
    """Tasks go through the Celery runner, executed eagerly in this process."""
    settings.TRIGGERS_DEFAULT_RUNNER = "celery"
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


# -- trigger kwargs ---------------------------------------------------------------


def test_trigger_kwargs_map_each_after_trigger_to_its_kwargs(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_echo": {"after": ["first", "second"], "run": "tests.Echo"}}
    )
    trigger_manager.fire("second", {"y": [1, 2]})
    trigger_manager.fire("first", {"x": 1})
    triggers.assertInstanceFinished(
        "t_echo#0", {"received": {"first": {"x": 1}, "second": {"y": [1, 2]}}}
    )


def test_trigger_kwargs_are_deep_merged_over_with_params(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_echo": {
                "after": ["first", "second"],
                "run": "tests.Echo",
                "withParams": {
                    "first": {"static": 1, "nested": {"keep": "param", "override": "param"}},
                    "second": {"only_param": True},
                },
            }
        }
    )
    trigger_manager.fire("first", {"nested": {"override": "fired"}, "extra": 2})
    trigger_manager.fire("second")
    triggers.assertInstanceFinished(
        "t_echo#0",
        {
            "received": {
                "first": {
                    "static": 1,
                    "nested": {"keep": "param", "override": "fired"},
                    "extra": 2,
                },
                "second": {"only_param": True},
            }
        },
    )


def test_fired_kwargs_win_over_with_params_of_the_same_key(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_echo": {
                "after": ["start"],
                "run": "tests.Echo",
                "withParams": {"start": {"mode": "default", "level": 1}},
            }
        }
    )
    trigger_manager.fire("start", {"mode": "fired"})
    triggers.assertInstanceFinished(
        "t_echo#0", {"received": {"start": {"mode": "fired", "level": 1}}}
    )


# -- results and cascades -----------------------------------------------------------


def test_returned_mapping_is_stored_as_the_result(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_echo": {"after": ["start"], "run": "tests.Echo"}})
    trigger_manager.fire("start", {"n": 1})
    triggers.assertInstanceFinished("t_echo#0")
    assert trigger_manager.get_instance("t_echo#0").result == {"received": {"start": {"n": 1}}}


def test_finishing_fires_the_task_name_with_the_result_as_a_cascade(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_echo": {"after": ["start"], "run": "tests.Echo"}})
    trigger_manager.fire("start", {"n": 1})
    triggers.assertInstanceFinished("t_echo#0")
    [cascade] = fires_of(trigger_manager, "t_echo")
    assert cascade.kwargs == {"received": {"start": {"n": 1}}}
    assert cascade.source == FiredTrigger.CASCADE


def test_cascade_delivers_the_result_to_the_next_task(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_first": {"after": ["start"], "run": "tests.Echo"},
            "t_second": {"after": ["t_first"], "run": "tests.Echo"},
        }
    )
    trigger_manager.fire("start", {"n": 1})
    triggers.assertInstanceFinished(
        "t_second#0", {"received": {"t_first": {"received": {"start": {"n": 1}}}}}
    )


def test_a_chain_of_three_tasks_runs_to_the_end(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_one": {"after": ["start"], "run": "tests.Echo"},
            "t_two": {"after": ["t_one"], "run": "tests.Echo"},
            "t_three": {"after": ["t_two"], "run": "tests.Echo"},
        }
    )
    trigger_manager.fire("start", {"n": 1})
    triggers.assertInstanceFinished("t_one#0", {"received": {"start": {"n": 1}}})
    triggers.assertInstanceFinished(
        "t_two#0", {"received": {"t_one": {"received": {"start": {"n": 1}}}}}
    )
    triggers.assertInstanceFinished(
        "t_three#0",
        {"received": {"t_two": {"received": {"t_one": {"received": {"start": {"n": 1}}}}}}},
    )


def test_returning_none_stores_an_empty_result_and_cascades_with_no_kwargs(
    trigger_manager, triggers
):
    trigger_manager.update_configuration(
        {
            "t_nothing": {"after": ["start"], "run": "tests.ReturnNothing"},
            "t_next": {"after": ["t_nothing"], "run": "tests.Echo"},
        }
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFinished("t_next#0", {"received": {"t_nothing": {}}})
    assert trigger_manager.get_instance("t_nothing#0").result == {}
    assert [fire.kwargs for fire in fires_of(trigger_manager, "t_nothing")] == [{}]


def test_returning_a_non_mapping_fails_the_instance_with_a_type_error(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_list": {"after": ["start"], "run": "tests.ReturnList"}}
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_list#0", TypeError)
    message = trigger_manager.get_instance("t_list#0").metadata["traceback"].splitlines()[-1]
    assert message.startswith("TypeError")
    assert "mapping" in message
    assert "list" in message


def test_returning_a_non_mapping_does_not_cascade(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_list": {"after": ["start"], "run": "tests.ReturnList"},
            "t_next": {"after": ["t_list"], "run": "tests.Echo"},
        }
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_list#0", TypeError)
    triggers.assertInstanceMissing("t_next#0")
    assert fires_of(trigger_manager, "t_list") == []


def test_unencodable_result_fails_the_instance_naming_the_key_path(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_bad": {"after": ["start"], "run": "tests.ReturnUnencodable"}}
    )
    trigger_manager.fire("start")
    ThreadingTaskRunner.join_all()
    instance = trigger_manager.get_instance("t_bad#0")
    assert instance.status == TaskInstance.FAILED
    assert "value.nested" in instance.metadata["traceback"]
    assert instance.result is None
    assert fires_of(trigger_manager, "t_bad") == []


# -- raising --------------------------------------------------------------------------


def test_raising_fails_the_instance_with_the_dotted_exception_type(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_fail": {"after": ["start"], "run": "tests.Fail"}})
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_fail#0", ValueError)
    metadata = trigger_manager.get_instance("t_fail#0").metadata
    assert metadata["exception_type"] == "builtins.ValueError"


def test_raising_stores_the_traceback(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_fail": {"after": ["start"], "run": "tests.Fail"}})
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_fail#0", ValueError)
    traceback = trigger_manager.get_instance("t_fail#0").metadata["traceback"]
    assert isinstance(traceback, str)
    assert traceback.startswith("Traceback (most recent call last)")
    assert "ValueError: the data is wrong" in traceback
    assert "tests/tasks.py" in traceback


def test_raising_stores_the_exception_context(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_fail": {"after": ["start"], "run": "tests.Fail"}})
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_fail#0", ValueError)
    metadata = trigger_manager.get_instance("t_fail#0").metadata
    assert metadata["exception_context"] == {"row": 7, "field": "birthday"}


def test_a_failed_instance_does_not_cascade(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_fail": {"after": ["start"], "run": "tests.Fail"},
            "t_next": {"after": ["t_fail"], "run": "tests.Echo"},
        }
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_fail#0", ValueError)
    triggers.assertInstanceMissing("t_next#0")
    assert fires_of(trigger_manager, "t_fail") == []


# -- skip -------------------------------------------------------------------------------


def test_skip_marks_the_instance_skipped_with_its_metadata_at_the_top_level(
    trigger_manager, triggers
):
    trigger_manager.update_configuration({"t_skip": {"after": ["start"], "run": "tests.SkipSelf"}})
    trigger_manager.fire("start")
    triggers.assertInstanceSkipped("t_skip#0")
    metadata = trigger_manager.get_instance("t_skip#0").metadata
    assert metadata["reason"] == "nothing to do"
    assert "skipped" in metadata["timestamps"]


def test_skip_does_not_cascade(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_skip": {"after": ["start"], "run": "tests.SkipSelf"},
            "t_next": {"after": ["t_skip"], "run": "tests.Echo"},
        }
    )
    trigger_manager.fire("start")
    triggers.assertInstanceSkipped("t_skip#0")
    triggers.assertInstanceMissing("t_next#0")
    assert fires_of(trigger_manager, "t_skip") == []


# -- retry ------------------------------------------------------------------------------


def test_retry_fails_then_replays_the_instance(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_retry": {"after": ["start"], "run": "tests.RetryWithReplacement"}}
    )
    trigger_manager.fire("start", {"attempt": "first"})
    triggers.assertInstanceReplayed("t_retry#0")
    timestamps = trigger_manager.get_instance("t_retry#0").metadata["timestamps"]
    assert "failed" in timestamps
    assert timestamps["failed"] <= timestamps["replayed"]


def test_retry_schedules_a_clone_with_the_next_number_and_a_parent(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_retry": {"after": ["start"], "run": "tests.RetryWithReplacement"}}
    )
    trigger_manager.fire("start", {"attempt": "first"})
    triggers.assertInstanceFinished("t_retry#1")
    original = trigger_manager.get_instance("t_retry#0")
    clone = trigger_manager.get_instance("t_retry#1")
    assert clone.parent_id == original.pk
    assert original.retries == 0
    assert clone.retries == 1
    assert [i.name for i in trigger_manager.instances_of_task("t_retry")] == [
        "t_retry#0",
        "t_retry#1",
    ]


def test_retry_delivers_the_replacement_kwargs_to_the_clone(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_retry": {"after": ["start"], "run": "tests.RetryWithReplacement"}}
    )
    trigger_manager.fire("start", {"attempt": "first"})
    triggers.assertInstanceFinished("t_retry#1", {"received": {"start": {"attempt": "second"}}})
    assert trigger_manager.get_instance("t_retry#1").kwargs == {"start": {"attempt": "second"}}


def test_retry_cooldown_delays_the_clone(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_retry": {"after": ["start"], "run": "tests.RetryWithReplacement"}}
    )
    trigger_manager.fire("start", {"attempt": "first"})
    triggers.assertInstanceFinished("t_retry#1")
    original = trigger_manager.get_instance("t_retry#0")
    clone = trigger_manager.get_instance("t_retry#1")
    assert clone.eta is not None
    delay = clone.eta - timestamp(original, "failed")
    assert timedelta(seconds=0.04) <= delay <= timedelta(seconds=1)
    assert timestamp(clone, "running") >= clone.eta


def test_retry_records_the_exception_and_metadata_on_the_failed_instance(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_retry": {"after": ["start"], "run": "tests.RetryAlways"}}
    )
    trigger_manager.fire("start")
    triggers.assertInstanceReplayed("t_retry#0")
    metadata = trigger_manager.get_instance("t_retry#0").metadata
    assert metadata["exception_type"] == "builtins.ConnectionError"
    assert "service unavailable" in metadata["traceback"]
    assert metadata["attempt"] == 0


def test_retries_past_max_retries_fail_with_max_retries_exceeded(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_retry": {"after": ["start"], "run": "tests.RetryAlways"}}
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_retry#2", "django_triggers.task.MaxRetriesExceeded")
    triggers.assertInstanceReplayed("t_retry#0")
    triggers.assertInstanceReplayed("t_retry#1")
    triggers.assertInstanceMissing("t_retry#3")
    instances = trigger_manager.instances_of_task("t_retry")
    assert [(i.name, i.retries) for i in instances] == [
        ("t_retry#0", 0),
        ("t_retry#1", 1),
        ("t_retry#2", 2),
    ]
    assert [i.parent_id for i in instances] == [None, instances[0].pk, instances[1].pk]


def test_default_max_retries_allows_three_retries(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_retry": {"after": ["start"], "run": "tests.RetryAtDefaultLimit"}}
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_retry#3", "django_triggers.task.MaxRetriesExceeded")
    for number in range(3):
        triggers.assertInstanceReplayed(f"t_retry#{number}")
    triggers.assertInstanceMissing("t_retry#4")


# -- filter_kwargs ------------------------------------------------------------------------


def test_filter_kwargs_converts_values(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_filter": {"after": ["start"], "run": "tests.Filtered"}}
    )
    trigger_manager.fire("start", {"count": "5", "when": "2024-01-02"})
    triggers.assertInstanceFinished("t_filter#0", {"count": 5, "when": "2024-01-02"})


def test_filter_kwargs_allows_missing_and_extra_keys(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_filter": {"after": ["start"], "run": "tests.Filtered"}}
    )
    trigger_manager.fire("start", {"count": "5", "unexpected": True})
    triggers.assertInstanceFinished("t_filter#0", {"count": 5, "when": None})


def test_filter_kwargs_invalid_input_fails_with_the_filter_errors_in_context(
    trigger_manager, triggers
):
    trigger_manager.update_configuration(
        {"t_filter": {"after": ["start"], "run": "tests.Filtered"}}
    )
    trigger_manager.fire("start", {"count": "abc"})
    triggers.assertInstanceFailed("t_filter#0", ValueError)
    context = trigger_manager.get_instance("t_filter#0").metadata["exception_context"]
    assert context
    serialized = json.dumps(context)
    assert "count" in serialized
    assert "not_numeric" in serialized


# -- logging ------------------------------------------------------------------------------


def task_records(caplog):
    return [record for record in caplog.records if record.name == "tests.tasks"]


def test_logger_records_carry_the_logger_context(trigger_manager, triggers, caplog):
    caplog.set_level(logging.DEBUG, logger="tests.tasks")
    trigger_manager.update_configuration(
        {"t_log": {"after": ["start"], "run": "tests.LogAtLevels"}}
    )
    trigger_manager.fire("start", {"levels": ["INFO", "WARNING"]})
    triggers.assertInstanceFinished("t_log#0")
    records = task_records(caplog)
    assert [record.levelname for record in records] == ["INFO", "WARNING"]
    assert [record.context for record in records] == [{"task": "log"}, {"task": "log"}]


def test_logger_records_merge_the_per_call_context(trigger_manager, triggers, caplog):
    caplog.set_level(logging.DEBUG, logger="tests.tasks")
    trigger_manager.update_configuration(
        {"t_log": {"after": ["start"], "run": "tests.LogWithCallContext"}}
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFinished("t_log#0")
    [record] = task_records(caplog)
    assert record.context == {"task": "call", "row": 3}


def test_log_level_is_notset_when_nothing_was_logged(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_log": {"after": ["start"], "run": "tests.LogAtLevels"}}
    )
    trigger_manager.fire("start", {"levels": []})
    triggers.assertInstanceFinished("t_log#0")
    instance = trigger_manager.get_instance("t_log#0")
    assert instance.log_level == logging.NOTSET
    assert instance.log_level_name == "NOTSET"


def test_log_level_is_the_highest_level_logged(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_log": {"after": ["start"], "run": "tests.LogAtLevels"}}
    )
    trigger_manager.fire("start", {"levels": ["INFO", "ERROR", "WARNING"]})
    triggers.assertInstanceFinished("t_log#0")
    instance = trigger_manager.get_instance("t_log#0")
    assert instance.log_level == logging.ERROR
    assert instance.log_level_name == "ERROR"


def test_exception_inside_logger_context_is_logged_with_its_context(
    trigger_manager, triggers, caplog
):
    caplog.set_level(logging.DEBUG, logger="tests.tasks")
    trigger_manager.update_configuration(
        {"t_raise": {"after": ["start"], "run": "tests.RaiseInsideLoggerContext"}}
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_raise#0", KeyError)
    [record] = task_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError
    assert record.context == {"task": "raise", "key": "subjectId"}


def test_exception_inside_logger_context_is_reraised_and_fails_the_instance(
    trigger_manager, triggers
):
    trigger_manager.update_configuration(
        {"t_raise": {"after": ["start"], "run": "tests.RaiseInsideLoggerContext"}}
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_raise#0", KeyError)
    instance = trigger_manager.get_instance("t_raise#0")
    assert instance.metadata["exception_context"] == {"key": "subjectId"}
    assert instance.log_level_name == "ERROR"


# -- duplicate delivery ------------------------------------------------------------------


def test_a_duplicate_execute_of_a_finished_instance_does_nothing(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_echo": {"after": ["start"], "run": "tests.Echo"}})
    trigger_manager.fire("start", {"n": 1})
    triggers.assertInstanceFinished("t_echo#0")
    before = trigger_manager.get_instance("t_echo#0")

    returned = celery_app.tasks["tests.Echo"].execute(
        TriggerManager, trigger_manager.session_uid, "t_echo#0"
    )

    after = trigger_manager.get_instance("t_echo#0")
    assert returned is None
    assert (after.status, after.result, after.metadata) == (
        before.status,
        before.result,
        before.metadata,
    )
    assert len(fires_of(trigger_manager, "t_echo")) == 1


def test_a_duplicate_message_for_a_failed_instance_does_nothing(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_fail": {"after": ["start"], "run": "tests.Fail"}})
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_fail#0", ValueError)
    before = trigger_manager.get_instance("t_fail#0")

    celery_app.tasks["tests.Fail"].run(
        session_uid=trigger_manager.session_uid, instance_name="t_fail#0"
    )

    after = trigger_manager.get_instance("t_fail#0")
    assert (after.status, after.metadata) == (before.status, before.metadata)


# -- context.manager ------------------------------------------------------------------------


def test_context_manager_is_of_the_scheduling_managers_class(trigger_manager, triggers):
    manager = ImportableManager(trigger_manager.session_uid)
    manager.update_configuration({"t_fire": {"after": ["start"], "run": "tests.FireAnother"}})
    manager.fire("start")
    triggers.assertInstanceFinished("t_fire#0", {"manager_class": "ImportableManager"})


def test_threading_runner_hands_over_a_manager_class_defined_in_a_function(
    trigger_manager, triggers
):
    class LocalManager(TriggerManager):
        pass

    manager = LocalManager(trigger_manager.session_uid)
    manager.update_configuration({"t_fire": {"after": ["start"], "run": "tests.FireAnother"}})
    manager.fire("start")
    triggers.assertInstanceFinished("t_fire#0", {"manager_class": LocalManager.__qualname__})


def test_context_manager_is_bound_to_the_session(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_fire": {"after": ["start"], "run": "tests.FireAnother"},
            "t_extra": {"after": ["extra"], "run": "tests.Echo"},
        }
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFinished("t_extra#0", {"received": {"extra": {"from": "t_fire#0"}}})


def test_context_identifies_the_session_and_the_running_instance(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_describe": {"after": ["start"], "run": "tests.DescribeContext"}}
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFinished(
        "t_describe#0",
        {
            "session_uid": trigger_manager.session_uid,
            "instance_name": "t_describe#0",
            "task_instance": ["t_describe#0", "running"],
        },
    )


# -- the Celery entry point --------------------------------------------------------------------


def test_celery_message_carries_only_identifiers(trigger_manager, monkeypatch, settings):
    settings.TRIGGERS_DEFAULT_RUNNER = "celery"
    echo = celery_app.tasks["tests.Echo"]
    sent = []
    monkeypatch.setattr(
        echo, "apply_async", lambda args=None, kwargs=None, **options: sent.append((args, kwargs))
    )
    trigger_manager.update_configuration({"t_echo": {"after": ["start"], "run": "tests.Echo"}})
    trigger_manager.fire("start", {"secret": "stays in the database"})
    [(args, kwargs)] = sent
    assert not args
    assert kwargs == {"session_uid": trigger_manager.session_uid, "instance_name": "t_echo#0"}
    assert trigger_manager.get_instance("t_echo#0").status == TaskInstance.SCHEDULED


def test_celery_worker_reads_the_kwargs_from_the_database(
    trigger_manager, triggers, monkeypatch, settings
):
    settings.TRIGGERS_DEFAULT_RUNNER = "celery"
    echo = celery_app.tasks["tests.Echo"]
    sent = []
    monkeypatch.setattr(echo, "apply_async", lambda **options: sent.append(options["kwargs"]))
    trigger_manager.update_configuration({"t_echo": {"after": ["start"], "run": "tests.Echo"}})
    trigger_manager.fire("start", {"n": 1})
    monkeypatch.undo()

    echo.run(**sent[0])

    triggers.assertInstanceFinished("t_echo#0", {"received": {"start": {"n": 1}}})


def test_celery_runs_the_task_through_run_with_identifiers(
    trigger_manager, triggers, celery_eager, monkeypatch
):
    task = celery_app.tasks["tests.Echo"]
    calls = []
    original_run = task.run

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return original_run(*args, **kwargs)

    monkeypatch.setattr(task, "run", spy)
    trigger_manager.update_configuration({"t_echo": {"after": ["start"], "run": "tests.Echo"}})
    trigger_manager.fire("start", {"n": 1})
    triggers.assertInstanceFinished("t_echo#0", {"received": {"start": {"n": 1}}})
    assert calls == [
        ((), {"session_uid": trigger_manager.session_uid, "instance_name": "t_echo#0"})
    ]


def test_celery_worker_rebuilds_the_manager_class_from_its_dotted_path(
    trigger_manager, triggers, celery_eager
):
    manager = ImportableManager(trigger_manager.session_uid)
    manager.update_configuration({"t_fire": {"after": ["start"], "run": "tests.FireAnother"}})
    manager.fire("start")
    triggers.assertInstanceFinished("t_fire#0", {"manager_class": "ImportableManager"})


def test_celery_cascades_run_through_the_celery_runner(trigger_manager, triggers, celery_eager):
    trigger_manager.update_configuration(
        {
            "t_first": {"after": ["start"], "run": "tests.Echo"},
            "t_second": {"after": ["t_first"], "run": "tests.Echo"},
        }
    )
    trigger_manager.fire("start", {"n": 1})
    triggers.assertInstanceFinished(
        "t_second#0", {"received": {"t_first": {"received": {"start": {"n": 1}}}}}
    )


def test_celery_worker_fails_the_instance_when_the_manager_class_is_not_importable(
    trigger_manager, triggers, celery_eager
):
    class UnimportableManager(TriggerManager):
        pass

    manager = UnimportableManager(trigger_manager.session_uid)
    manager.update_configuration({"t_echo": {"after": ["start"], "run": "tests.Echo"}})
    manager.fire("start")
    ThreadingTaskRunner.join_all()
    instance = trigger_manager.get_instance("t_echo#0")
    assert instance.status == TaskInstance.FAILED
    assert UnimportableManager.__qualname__ in instance.metadata["traceback"].splitlines()[-1]


def test_a_retry_passes_replacement_kwargs_of_any_trigger_to_the_clone(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_retry": {"after": ["start"], "run": "tests.RetryWithUnknownTrigger"}}
    )
    trigger_manager.fire("start", {"a": 1})

    triggers.assertInstanceReplayed("t_retry#0")
    triggers.assertInstanceFinished(
        "t_retry#1", {"received": {"start": {"a": 1}, "nope": {"x": 1}}}
    )
