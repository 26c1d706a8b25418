"""The testing toolbox: TriggerManagerTestCaseMixin, its assertions and join_all()."""

import threading
import time
import unittest
import uuid

import pytest
from django.conf import settings as django_settings
from django.test import TestCase, TransactionTestCase, override_settings

from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance
from django_triggers.runners import ThreadingTaskRunner
from django_triggers.testing import TriggerManagerTestCaseMixin

CONFIGURATION = {
    "t_echo": {"after": ["start"], "run": "tests.Echo"},
    "t_next": {"after": ["t_echo"], "run": "tests.Echo"},
    "t_fail": {"after": ["start"], "run": "tests.Fail"},
    "t_skip": {"after": ["start"], "run": "tests.SkipSelf"},
    "t_retry": {"after": ["start"], "run": "tests.RetryWithReplacement"},
    "t_waiting": {"after": ["start", "later"], "run": "tests.Echo"},
    "t_stopped": {"after": ["start", "later"], "unless": ["stop"], "run": "tests.Echo"},
    "t_never": {"after": ["never"], "run": "tests.Echo"},
}


class TriggerManagerMixinTests(TriggerManagerTestCaseMixin, TransactionTestCase):
    def setUp(self):
        super().setUp()
        self.manager = TriggerManager(f"toolbox-{uuid.uuid4().hex}")
        self.manager.update_configuration(CONFIGURATION)
        self.manager.fire("stop")
        self.manager.fire("start", {"n": 1})

    def test_assert_instance_finished_with_its_result(self):
        self.assertInstanceFinished("t_echo#0", {"received": {"start": {"n": 1}}})

    def test_assert_instance_finished_checks_the_expected_result(self):
        with self.assertRaises(AssertionError):
            self.assertInstanceFinished("t_echo#0", {"received": {"start": {"n": 2}}})

    def test_assert_instance_failed_with_the_exception_class(self):
        self.assertInstanceFailed("t_fail#0", ValueError)

    def test_assert_instance_failed_with_the_dotted_path(self):
        self.assertInstanceFailed("t_fail#0", "builtins.ValueError")

    def test_assert_instance_failed_checks_the_exception_type(self):
        with self.assertRaises(AssertionError):
            self.assertInstanceFailed("t_fail#0", KeyError)

    def test_assert_instance_skipped(self):
        self.assertInstanceSkipped("t_skip#0")

    def test_assert_instance_replayed(self):
        self.assertInstanceReplayed("t_retry#0")
        self.assertInstanceFinished("t_retry#1")

    def test_assert_instance_abandoned(self):
        self.assertInstanceAbandoned("t_stopped#0")

    def test_assert_instance_unstarted(self):
        self.assertInstanceUnstarted("t_waiting#0")

    def test_assert_instance_missing(self):
        self.assertInstanceMissing("t_never#0")
        self.assertInstanceMissing("t_echo#1")

    def test_assert_instance_missing_fails_for_an_existing_instance(self):
        with self.assertRaises(AssertionError):
            self.assertInstanceMissing("t_echo#0")

    def test_assert_unresolved_tasks(self):
        self.assertUnresolvedTasks(["t_fail", "t_never", "t_waiting"])

    def test_assert_unresolved_tasks_fails_for_other_names(self):
        with self.assertRaises(AssertionError):
            self.assertUnresolvedTasks(["t_fail", "t_never"])

    def test_assert_unresolved_instances(self):
        self.assertUnresolvedInstances(["t_fail#0", "t_waiting#0"])

    def test_assert_unresolved_instances_fails_for_other_names(self):
        with self.assertRaises(AssertionError):
            self.assertUnresolvedInstances(["t_waiting#0"])

    def test_threading_is_the_default_runner_during_the_test(self):
        self.assertEqual(django_settings.TRIGGERS_DEFAULT_RUNNER, "threading")
        self.assertEqual(self.manager.default_runner_name, "threading")


@override_settings(TRIGGERS_DEFAULT_RUNNER="no-such-runner")
class TriggerManagerMixinRunnerTests(TriggerManagerTestCaseMixin, TransactionTestCase):
    def setUp(self):
        super().setUp()
        self.manager = TriggerManager(f"toolbox-{uuid.uuid4().hex}")
        self.manager.update_configuration(CONFIGURATION)

    def test_tasks_run_in_threads_whatever_the_projects_default_runner(self):
        self.manager.fire("start", {"n": 1})
        self.assertInstanceFinished(
            "t_next#0", {"received": {"t_echo": {"received": {"start": {"n": 1}}}}}
        )


class TriggerManagerMixinCommitCaptureTests(TriggerManagerTestCaseMixin, TestCase):
    def setUp(self):
        super().setUp()
        self.manager = TriggerManager(f"toolbox-{uuid.uuid4().hex}")
        self.manager.update_configuration(
            {
                "t_first": {"after": ["start"], "run": "tests.Echo"},
                "t_second": {"after": ["t_first"], "run": "tests.Echo"},
            }
        )

    def test_captured_on_commit_callbacks_run_a_cascade_to_completion(self):
        with self.captureOnCommitCallbacks(execute=True):
            self.manager.fire("start", {"n": 1})
        self.assertInstanceFinished("t_first#0", {"received": {"start": {"n": 1}}})
        self.assertInstanceFinished(
            "t_second#0", {"received": {"t_first": {"received": {"start": {"n": 1}}}}}
        )


def test_mixin_makes_threading_the_default_only_while_a_test_runs(settings):
    settings.TRIGGERS_DEFAULT_RUNNER = "celery"

    class Case(TriggerManagerTestCaseMixin, unittest.TestCase):
        def runTest(self):
            pass

    case = Case()
    case.setUp()
    during = django_settings.TRIGGERS_DEFAULT_RUNNER
    case.tearDown()
    assert during == "threading"
    assert django_settings.TRIGGERS_DEFAULT_RUNNER == "celery"


# -- failing assertions -------------------------------------------------------------------


@pytest.fixture
def session(trigger_manager, triggers):
    trigger_manager.update_configuration(CONFIGURATION)
    trigger_manager.fire("start", {"n": 1})
    triggers.assertInstanceFailed("t_fail#0", ValueError)
    return trigger_manager


def test_failing_assertion_shows_the_actual_status(session, triggers):
    with pytest.raises(AssertionError, match="t_echo#0") as excinfo:
        triggers.assertInstanceUnstarted("t_echo#0")
    assert "finished" in str(excinfo.value)


def test_failing_assertion_on_a_failed_instance_shows_its_exception_and_traceback(
    session, triggers
):
    with pytest.raises(AssertionError) as excinfo:
        triggers.assertInstanceFinished("t_fail#0")
    message = str(excinfo.value)
    assert "failed" in message
    assert "ValueError" in message
    assert "the data is wrong" in message
    assert "Traceback (most recent call last)" in message


def test_wrong_exception_type_shows_the_actual_exception_and_traceback(session, triggers):
    with pytest.raises(AssertionError) as excinfo:
        triggers.assertInstanceFailed("t_fail#0", KeyError)
    message = str(excinfo.value)
    assert "builtins.ValueError" in message
    assert "the data is wrong" in message
    assert "Traceback (most recent call last)" in message


@pytest.mark.parametrize(
    ("assertion", "name", "actual"),
    [
        ("assertInstanceAbandoned", "t_echo#0", "finished"),
        ("assertInstanceReplayed", "t_skip#0", "skipped"),
        ("assertInstanceSkipped", "t_waiting#0", "unstarted"),
        ("assertInstanceUnstarted", "t_retry#0", "replayed"),
        ("assertInstanceFinished", "t_stopped#0", "unstarted"),
    ],
)
def test_each_status_assertion_fails_showing_the_actual_status(
    session, triggers, assertion, name, actual
):
    with pytest.raises(AssertionError, match=actual):
        getattr(triggers, assertion)(name)


def test_failed_assertion_fails_for_a_finished_instance(session, triggers):
    with pytest.raises(AssertionError, match="finished"):
        triggers.assertInstanceFailed("t_echo#0", ValueError)


def test_status_assertion_fails_for_a_missing_instance(session, triggers):
    with pytest.raises(AssertionError, match="t_never#0"):
        triggers.assertInstanceFinished("t_never#0")


def test_missing_assertion_fails_showing_the_existing_instances_status(session, triggers):
    with pytest.raises(AssertionError, match="finished"):
        triggers.assertInstanceMissing("t_echo#0")


def test_unresolved_instances_assertion_fails_showing_the_actual_ones(session, triggers):
    with pytest.raises(AssertionError, match="t_waiting#0"):
        triggers.assertUnresolvedInstances([])


# -- join_all -----------------------------------------------------------------------------


def test_join_all_waits_for_cascades(trigger_manager):
    trigger_manager.update_configuration(
        {
            "t_one": {"after": ["start"], "run": "tests.SlowEcho"},
            "t_two": {"after": ["t_one"], "run": "tests.SlowEcho"},
            "t_three": {"after": ["t_two"], "run": "tests.Echo"},
        }
    )
    trigger_manager.fire("start")
    ThreadingTaskRunner.join_all()
    statuses = dict(
        TaskInstance.objects.filter(session=trigger_manager.session).values_list("name", "status")
    )
    assert statuses == {"t_one#0": "finished", "t_two#0": "finished", "t_three#0": "finished"}


def test_join_all_waits_for_a_cascade_thread_that_is_slow_to_start(trigger_manager, monkeypatch):
    """A cascade's thread that the OS starts late is still waited for."""
    real_start = threading.Thread.start
    starting = threading.Event()
    started = []

    def slow_start(thread):
        if thread.name == "triggers:t_two#0":
            starting.set()
            time.sleep(0.3)  # the operating system takes its time to start the thread
        started.append(thread)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", slow_start)
    trigger_manager.update_configuration(
        {
            "t_one": {"after": ["start"], "run": "tests.Echo"},
            "t_two": {"after": ["t_one"], "run": "tests.SlowEcho"},
        }
    )
    trigger_manager.fire("start")
    assert starting.wait(timeout=30)
    try:
        ThreadingTaskRunner.join_all()
        statuses = dict(
            TaskInstance.objects.filter(session=trigger_manager.session).values_list(
                "name", "status"
            )
        )
    finally:
        for thread in started:
            thread.join(timeout=30)
    assert statuses == {"t_one#0": "finished", "t_two#0": "finished"}
