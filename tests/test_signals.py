"""Signals: ``trigger_fired`` and ``instance_status_changed``, sent once committed."""

import logging
import threading
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from django_triggers import signals
from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskInstance
from django_triggers.recovery import recover
from tests.helpers import RecordingRunner

ECHO = "tests.Echo"

#: Instance names handed to the recording runner, in order.
DISPATCHED = RecordingRunner.dispatched


class SignalsManager(TriggerManager):
    """A manager subclass, to tell the sender apart from the base class."""


@pytest.fixture(autouse=True)
def _fresh_records():
    DISPATCHED.clear()
    yield
    DISPATCHED.clear()


class Receiver:
    """Connects to a signal for the duration of a test and records every call."""

    raises = False

    def __init__(self, signal):
        self.signal = signal
        self.calls: list[dict] = []
        lock = threading.Lock()

        def receive(sender, **kwargs):
            kwargs.pop("signal")
            with lock:
                self.calls.append({"sender": sender, **kwargs})
            if self.raises:
                raise RuntimeError("receiver broke")

        self.function = receive
        signal.connect(receive, weak=False)

    def disconnect(self):
        self.signal.disconnect(self.function)


class RaisingReceiver(Receiver):
    raises = True


@pytest.fixture
def connect():
    """``connect(signal, cls=Receiver)``: a receiver disconnected at the end of the test."""
    receivers = []

    def _connect(signal, cls=Receiver):
        receiver = cls(signal)
        receivers.append(receiver)
        return receiver

    yield _connect
    for receiver in receivers:
        receiver.disconnect()


@pytest.fixture
def manager(trigger_manager):
    """A :class:`SignalsManager` on the test session, its tasks recorded, not run."""
    manager = SignalsManager(trigger_manager.session_uid)
    manager.update_configuration(
        {
            "t_one": {"after": ["a"], "run": ECHO, "using": RecordingRunner.name},
            "t_pair": {"after": ["a", "b"], "run": ECHO, "using": RecordingRunner.name},
        }
    )
    return manager


def transitions(receiver, instance_name):
    return [
        (call["old_status"], call["new_status"])
        for call in receiver.calls
        if call["instance_name"] == instance_name
    ]


# -- trigger_fired -----------------------------------------------------------------------


def test_trigger_fired_is_sent_with_the_fire_and_what_it_scheduled(manager, connect):
    fired = connect(signals.trigger_fired)

    manager.fire("a", {"v": 1}, event_id="evt-1")

    assert fired.calls == [
        {
            "sender": SignalsManager,
            "session_uid": manager.session_uid,
            "trigger_name": "a",
            "trigger_kwargs": {"v": 1},
            "source": FiredTrigger.APPLICATION,
            "event_id": "evt-1",
            "scheduled": ["t_one#0"],
        }
    ]


def test_trigger_fired_without_an_event_id_sends_none(manager, connect):
    fired = connect(signals.trigger_fired)

    manager.fire("b")

    assert len(fired.calls) == 1
    assert fired.calls[0]["event_id"] is None
    assert fired.calls[0]["scheduled"] == []


def test_trigger_fired_is_not_sent_again_for_a_repeated_event(manager, connect):
    manager.fire("a", {"v": 1}, event_id="evt-1")
    fired = connect(signals.trigger_fired)

    manager.fire("a", {"v": 1}, event_id="evt-1")

    assert fired.calls == []


def test_trigger_fired_is_sent_for_cascades_with_their_source(trigger_manager, triggers, connect):
    trigger_manager.update_configuration({"t_echo": {"after": ["a"], "run": ECHO}})
    fired = connect(signals.trigger_fired)

    trigger_manager.fire("a", {"v": 1})
    triggers.assertInstanceFinished("t_echo#0")

    assert [(call["trigger_name"], call["source"]) for call in fired.calls] == [
        ("a", FiredTrigger.APPLICATION),
        ("t_echo", FiredTrigger.CASCADE),
    ]
    assert fired.calls[1]["trigger_kwargs"] == {"received": {"a": {"v": 1}}}


def test_trigger_fired_is_sent_only_once_the_transaction_commits(manager, connect):
    fired = connect(signals.trigger_fired)

    with transaction.atomic():
        manager.fire("a", {"v": 1})
        assert fired.calls == []

    assert [call["trigger_name"] for call in fired.calls] == ["a"]


def test_trigger_fired_is_not_sent_when_the_transaction_rolls_back(manager, connect):
    fired = connect(signals.trigger_fired)

    with pytest.raises(RuntimeError, match="roll back"), transaction.atomic():
        manager.fire("a", {"v": 1})
        raise RuntimeError("roll back")

    assert fired.calls == []
    assert not FiredTrigger.objects.filter(session=manager.session).exists()


# -- instance_status_changed ---------------------------------------------------------------


def test_creating_an_instance_sends_a_change_from_none_to_unstarted(manager, connect):
    changed = connect(signals.instance_status_changed)

    manager.fire("b")

    assert changed.calls == [
        {
            "sender": SignalsManager,
            "session_uid": manager.session_uid,
            "instance_name": "t_pair#0",
            "task_name": "t_pair",
            "old_status": None,
            "new_status": TaskInstance.UNSTARTED,
        }
    ]


def test_every_transition_of_a_task_run_to_completion_is_sent_in_order(
    trigger_manager, triggers, connect
):
    trigger_manager.update_configuration({"t_echo": {"after": ["a"], "run": ECHO}})
    changed = connect(signals.instance_status_changed)

    trigger_manager.fire("a")
    triggers.assertInstanceFinished("t_echo#0")

    assert transitions(changed, "t_echo#0") == [
        (None, TaskInstance.UNSTARTED),
        (TaskInstance.UNSTARTED, TaskInstance.SCHEDULED),
        (TaskInstance.SCHEDULED, TaskInstance.RUNNING),
        (TaskInstance.RUNNING, TaskInstance.FINISHED),
    ]
    assert {call["task_name"] for call in changed.calls} == {"t_echo"}
    assert {call["session_uid"] for call in changed.calls} == {trigger_manager.session_uid}
    assert {call["sender"] for call in changed.calls} == {TriggerManager}


def test_a_failing_task_sends_its_change_to_failed(trigger_manager, triggers, connect):
    trigger_manager.update_configuration({"t_fail": {"after": ["a"], "run": "tests.Fail"}})
    changed = connect(signals.instance_status_changed)

    trigger_manager.fire("a")
    triggers.assertInstanceFailed("t_fail#0", ValueError)

    assert transitions(changed, "t_fail#0")[-1] == (TaskInstance.RUNNING, TaskInstance.FAILED)


def test_status_changes_are_sent_only_once_the_transaction_commits(manager, connect):
    changed = connect(signals.instance_status_changed)

    with transaction.atomic():
        manager.fire("a")
        assert changed.calls == []

    assert transitions(changed, "t_one#0") == [
        (None, TaskInstance.UNSTARTED),
        (TaskInstance.UNSTARTED, TaskInstance.SCHEDULED),
    ]


def test_status_changes_are_not_sent_when_the_transaction_rolls_back(manager, connect):
    changed = connect(signals.instance_status_changed)

    with pytest.raises(RuntimeError, match="roll back"), transaction.atomic():
        manager.fire("a")
        raise RuntimeError("roll back")

    assert changed.calls == []
    assert not TaskInstance.objects.filter(session=manager.session).exists()


@pytest.fixture
def expired(manager):
    """``t_pair#0`` waits for ``b`` and its deadline has passed."""
    manager.fire("a")
    TaskInstance.objects.filter(session=manager.session, name="t_pair#0").update(
        deadline=timezone.now() - timedelta(seconds=1)
    )
    return manager


def test_a_deadline_sends_trigger_fired_for_the_timeout(expired, connect):
    fired = connect(signals.trigger_fired)

    recover()

    assert [
        (call["trigger_name"], call["source"], call["trigger_kwargs"]) for call in fired.calls
    ] == [
        (
            "t_pair.timeout",
            FiredTrigger.DEADLINE,
            {"instance": "t_pair#0", "missing_triggers": ["b"]},
        )
    ]


def test_a_deadline_sends_the_change_to_abandoned(expired, connect):
    changed = connect(signals.instance_status_changed)

    recover()

    assert transitions(changed, "t_pair#0") == [(TaskInstance.UNSTARTED, TaskInstance.ABANDONED)]


# -- receivers that raise --------------------------------------------------------------------


def test_a_raising_trigger_fired_receiver_does_not_stop_the_others(manager, connect):
    connect(signals.trigger_fired, RaisingReceiver)
    fired = connect(signals.trigger_fired)

    manager.fire("a", {"v": 1})

    assert [call["trigger_name"] for call in fired.calls] == ["a"]


def test_a_raising_trigger_fired_receiver_does_not_stop_the_dispatch(manager, connect):
    connect(signals.trigger_fired, RaisingReceiver)

    manager.fire("a", {"v": 1})

    assert DISPATCHED == ["t_one#0"]
    assert manager.get_instance("t_one#0").dispatched_at is not None


def test_a_raising_receiver_is_logged_with_its_exception(manager, connect, caplog):
    connect(signals.trigger_fired, RaisingReceiver)

    with caplog.at_level(logging.ERROR, logger="django.dispatch"):
        manager.fire("a", {"v": 1})

    logged = [
        record
        for record in caplog.records
        if record.name == "django.dispatch"
        and record.levelno >= logging.ERROR
        and record.exc_info
        and isinstance(record.exc_info[1], RuntimeError)
        and str(record.exc_info[1]) == "receiver broke"
    ]
    assert len(logged) == 1


def test_a_raising_status_receiver_does_not_stop_the_others_nor_the_task(
    trigger_manager, triggers, connect, caplog
):
    trigger_manager.update_configuration({"t_echo": {"after": ["a"], "run": ECHO}})
    connect(signals.instance_status_changed, RaisingReceiver)
    changed = connect(signals.instance_status_changed)

    with caplog.at_level(logging.ERROR, logger="django.dispatch"):
        trigger_manager.fire("a", {"v": 1})
        triggers.assertInstanceFinished("t_echo#0", {"received": {"a": {"v": 1}}})

    assert transitions(changed, "t_echo#0") == [
        (None, TaskInstance.UNSTARTED),
        (TaskInstance.UNSTARTED, TaskInstance.SCHEDULED),
        (TaskInstance.SCHEDULED, TaskInstance.RUNNING),
        (TaskInstance.RUNNING, TaskInstance.FINISHED),
    ]
    broke = [
        record
        for record in caplog.records
        if record.name == "django.dispatch"
        and record.exc_info
        and str(record.exc_info[1]) == "receiver broke"
    ]
    assert len(broke) == 4
