"""Recovery sweeps: dispatch failures, redispatch, stuck instances, batches, bad sessions."""

import logging
import threading
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance, TriggerSession
from django_triggers.recovery import recover
from django_triggers.runners import BaseTaskRunner, ThreadingTaskRunner
from django_triggers.task import TaskContext, TriggerTask
from example_project.celery import app
from tests.helpers import run_together

ECHO = "tests.Echo"
STUCK_INSTANCE = "django_triggers.exceptions.StuckInstance"

#: How :class:`SwitchableRunner` treats what it is handed: ``"broken"`` raises,
#: ``"record"`` only records it, ``"run"`` records it and runs it in a thread.
RUNNER_MODE = {"mode": "record"}
#: ``(mode, instance name)`` of every hand-over, in order.
HANDED: list[tuple[str, str]] = []
_handed_lock = threading.Lock()


class SwitchableRunner(BaseTaskRunner):
    name = "test_recovery_sweeps.switchable"

    def run(self, manager, task_instance):
        mode = RUNNER_MODE["mode"]
        with _handed_lock:
            HANDED.append((mode, task_instance.name))
        if mode == "broken":
            raise ConnectionError("broker down")
        if mode == "run":
            ThreadingTaskRunner().run(manager, task_instance)


class AlwaysBrokenRunner(BaseTaskRunner):
    name = "test_recovery_sweeps.always_broken"

    def run(self, manager, task_instance):
        raise ConnectionError("broker down")


class Blocking(TriggerTask):
    """Signals ``STARTED``, then waits for ``RELEASE`` before returning."""

    name = "tests.test_recovery_sweeps.Blocking"

    def _run(self, context: TaskContext) -> dict:
        STARTED.set()
        if not RELEASE.wait(timeout=60):
            raise TimeoutError("never released")
        return {"late": True}


STARTED = threading.Event()
RELEASE = threading.Event()
app.register_task(Blocking())


@pytest.fixture(autouse=True)
def _fresh_runner():
    RUNNER_MODE["mode"] = "record"
    HANDED.clear()
    STARTED.clear()
    RELEASE.clear()
    yield
    RELEASE.set()
    RUNNER_MODE["mode"] = "record"
    HANDED.clear()


def configure(manager: TriggerManager, *tasks: str, **directives) -> None:
    """Each task runs ``tests.Echo`` after trigger ``a`` through the switchable runner."""
    manager.update_configuration(
        {
            task: {"after": ["a"], "run": ECHO, "using": SwitchableRunner.name, **directives}
            for task in tasks
        }
    )


def handed(mode: str | None = None) -> list[str]:
    return [name for m, name in HANDED if mode is None or m == mode]


def set_back(manager: TriggerManager, name: str, **fields) -> None:
    """Move timestamps of an instance into the past (``update`` bypasses ``auto_now``)."""
    updated = TaskInstance.objects.filter(session=manager.session, name=name).update(**fields)
    assert updated == 1


@pytest.fixture
def undispatched(trigger_manager):
    """``t_a#0`` was scheduled while the broker was down."""
    configure(trigger_manager, "t_a")
    RUNNER_MODE["mode"] = "broken"
    trigger_manager.fire("a", {"v": 1})
    return trigger_manager.get_instance("t_a#0")


# -- dispatch --------------------------------------------------------------------------


def test_a_fire_whose_dispatch_fails_still_returns_the_scheduled_instance(trigger_manager):
    configure(trigger_manager, "t_a")
    RUNNER_MODE["mode"] = "broken"

    scheduled = trigger_manager.fire("a", {"v": 1})

    assert [instance.name for instance in scheduled] == ["t_a#0"]
    assert handed("broken") == ["t_a#0"]


def test_an_instance_whose_dispatch_failed_stays_scheduled_and_undispatched(undispatched):
    assert undispatched.status == TaskInstance.SCHEDULED
    assert undispatched.dispatched_at is None


def test_an_instance_whose_dispatch_failed_records_the_error(undispatched):
    error = undispatched.metadata["dispatch_error"]
    assert "ConnectionError" in error["error"]
    assert "broker down" in error["error"]


def test_a_failed_dispatch_is_logged_as_an_error(trigger_manager, caplog):
    configure(trigger_manager, "t_a")
    RUNNER_MODE["mode"] = "broken"

    with caplog.at_level(logging.ERROR, logger="django_triggers"):
        trigger_manager.fire("a")

    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert any(
        "t_a#0" in record.getMessage()
        and record.exc_info
        and isinstance(record.exc_info[1], ConnectionError)
        for record in errors
    ), [record.getMessage() for record in errors]


def test_a_successful_dispatch_records_when_the_runner_accepted_it(trigger_manager):
    configure(trigger_manager, "t_a")
    before = timezone.now()

    trigger_manager.fire("a")

    instance = trigger_manager.get_instance("t_a#0")
    assert handed("record") == ["t_a#0"]
    assert instance.dispatched_at is not None
    assert before <= instance.dispatched_at <= timezone.now()
    assert "dispatch_error" not in instance.metadata


def test_a_scheduled_instance_gets_a_uuid_celery_task_id(trigger_manager):
    configure(trigger_manager, "t_a", "t_b")

    trigger_manager.fire("a")

    ids = [trigger_manager.get_instance(name).celery_task_id for name in ("t_a#0", "t_b#0")]
    assert [str(uuid.UUID(task_id)) for task_id in ids] == ids
    assert ids[0] != ids[1]


def test_an_unstarted_instance_has_no_celery_task_id_nor_dispatch(trigger_manager):
    trigger_manager.update_configuration(
        {"t_pair": {"after": ["a", "b"], "run": ECHO, "using": SwitchableRunner.name}}
    )

    trigger_manager.fire("a")

    instance = trigger_manager.get_instance("t_pair#0")
    assert instance.celery_task_id == ""
    assert instance.dispatched_at is None
    assert handed() == []


def test_a_dispatch_failure_of_one_instance_does_not_stop_the_others(trigger_manager):
    trigger_manager.update_configuration(
        {
            "t_broken": {
                "after": ["a"],
                "run": ECHO,
                "using": AlwaysBrokenRunner.name,
            },
            "t_ok": {"after": ["a"], "run": ECHO, "using": SwitchableRunner.name},
        }
    )

    trigger_manager.fire("a")

    assert handed("record") == ["t_ok#0"]
    assert trigger_manager.get_instance("t_ok#0").dispatched_at is not None
    assert trigger_manager.get_instance("t_broken#0").dispatched_at is None


# -- redispatch -----------------------------------------------------------------------


def test_recover_hands_an_undispatched_instance_over_again(trigger_manager, undispatched):
    RUNNER_MODE["mode"] = "record"

    report = recover(
        redispatch_after=timedelta(seconds=60), now=timezone.now() + timedelta(seconds=120)
    )

    assert report.redispatched == [(trigger_manager.session_uid, "t_a#0")]
    assert handed() == ["t_a#0", "t_a#0"]
    assert handed("record") == ["t_a#0"]
    assert trigger_manager.get_instance("t_a#0").dispatched_at is not None


def test_a_redispatched_instance_keeps_its_celery_task_id(trigger_manager, undispatched):
    RUNNER_MODE["mode"] = "record"

    recover(redispatch_after=timedelta(seconds=60), now=timezone.now() + timedelta(seconds=120))

    assert trigger_manager.get_instance("t_a#0").celery_task_id == undispatched.celery_task_id


def test_a_redispatched_instance_runs_to_completion(trigger_manager, triggers, undispatched):
    RUNNER_MODE["mode"] = "run"

    recover(redispatch_after=timedelta(seconds=60), now=timezone.now() + timedelta(seconds=120))

    triggers.assertInstanceFinished("t_a#0", {"received": {"a": {"v": 1}}})


def test_recover_does_not_redispatch_before_redispatch_after_has_passed(
    trigger_manager, undispatched
):
    RUNNER_MODE["mode"] = "record"

    report = recover(
        redispatch_after=timedelta(seconds=60), now=timezone.now() + timedelta(seconds=10)
    )

    assert report.redispatched == []
    assert handed("record") == []
    assert trigger_manager.get_instance("t_a#0").dispatched_at is None


def test_recover_does_not_redispatch_a_dispatched_instance(trigger_manager):
    configure(trigger_manager, "t_a")
    trigger_manager.fire("a")

    report = recover(
        redispatch_after=timedelta(seconds=60), now=timezone.now() + timedelta(minutes=30)
    )

    assert report.redispatched == []
    assert handed() == ["t_a#0"]


def test_two_sweeps_in_a_row_redispatch_a_working_instance_once(trigger_manager, undispatched):
    RUNNER_MODE["mode"] = "record"
    later = timezone.now() + timedelta(seconds=120)

    first = recover(redispatch_after=timedelta(seconds=60), now=later)
    second = recover(redispatch_after=timedelta(seconds=60), now=later)

    assert first.redispatched == [(trigger_manager.session_uid, "t_a#0")]
    assert second.redispatched == []
    assert handed("record") == ["t_a#0"]


def test_a_redispatch_that_fails_again_waits_redispatch_after_before_the_next(
    trigger_manager, undispatched
):
    set_back(trigger_manager, "t_a#0", modified=timezone.now() - timedelta(minutes=10))

    first = recover(redispatch_after=timedelta(seconds=60))
    second = recover(redispatch_after=timedelta(seconds=60))

    assert first.redispatched == [(trigger_manager.session_uid, "t_a#0")]
    assert second.redispatched == []
    assert handed("broken") == ["t_a#0", "t_a#0"]
    instance = trigger_manager.get_instance("t_a#0")
    assert instance.status == TaskInstance.SCHEDULED
    assert instance.dispatched_at is None


def test_concurrent_sweeps_redispatch_an_instance_once(trigger_manager, undispatched):
    set_back(trigger_manager, "t_a#0", modified=timezone.now() - timedelta(minutes=10))
    RUNNER_MODE["mode"] = "record"
    reports = run_together([lambda: recover(redispatch_after=timedelta(seconds=60))] * 4)

    assert sum(len(report.redispatched) for report in reports) == 1
    assert handed("record") == ["t_a#0"]
    assert trigger_manager.get_instance("t_a#0").dispatched_at is not None


# -- stuck instances ---------------------------------------------------------------------


@pytest.fixture
def in_flight(trigger_manager):
    """``t_s#0`` handed to its runner and ``t_r#0`` running, both two hours ago."""
    configure(trigger_manager, "t_s", "t_r")
    trigger_manager.fire("a", {"v": 1})
    trigger_manager.update_instance_status("t_r#0", TaskInstance.RUNNING)
    two_hours_ago = timezone.now() - timedelta(hours=2)
    for name in ("t_s#0", "t_r#0"):
        set_back(
            trigger_manager, name, status_changed_at=two_hours_ago, dispatched_at=two_hours_ago
        )
    HANDED.clear()
    return trigger_manager


def test_recover_hands_over_again_an_instance_handed_over_but_not_started_for_too_long(
    in_flight,
):
    before = timezone.now()

    report = recover(stuck_after=timedelta(hours=1))

    assert report.stuck_scheduled == [(in_flight.session_uid, "t_s#0")]
    assert handed("record") == ["t_s#0"]
    instance = in_flight.get_instance("t_s#0")
    assert instance.status == TaskInstance.SCHEDULED
    assert instance.dispatched_at >= before


def test_a_stuck_instance_handed_over_again_is_counted_as_redispatched(in_flight):
    report = recover(stuck_after=timedelta(hours=1))

    assert report.redispatched == [(in_flight.session_uid, "t_s#0")]
    assert report.never_dispatched == []


def test_the_report_lists_instances_handed_over_again_as_never_dispatched_then_stuck(
    in_flight, undispatched
):
    report = recover(
        redispatch_after=timedelta(seconds=60),
        stuck_after=timedelta(hours=1),
        now=timezone.now() + timedelta(seconds=120),
    )

    uid = in_flight.session_uid
    assert report.never_dispatched == [(uid, "t_a#0")]
    assert report.stuck_scheduled == [(uid, "t_s#0")]
    assert report.redispatched == [(uid, "t_a#0"), (uid, "t_s#0")]


def test_a_stuck_instance_handed_over_again_keeps_its_celery_task_id(in_flight):
    task_id = in_flight.get_instance("t_s#0").celery_task_id

    recover(stuck_after=timedelta(hours=1))

    assert in_flight.get_instance("t_s#0").celery_task_id == task_id


def test_a_stuck_instance_is_handed_over_again_at_most_once_per_stuck_after(in_flight):
    first = recover(stuck_after=timedelta(hours=1))
    second = recover(stuck_after=timedelta(hours=1))

    assert first.stuck_scheduled == [(in_flight.session_uid, "t_s#0")]
    assert second.stuck_scheduled == []
    assert handed("record") == ["t_s#0"]


def test_an_instance_handed_over_again_after_being_stuck_runs_to_completion(in_flight, triggers):
    RUNNER_MODE["mode"] = "run"

    recover(stuck_after=timedelta(hours=1))
    ThreadingTaskRunner.join_all(timeout=60)

    triggers.assertInstanceFinished("t_s#0", {"received": {"a": {"v": 1}}})


def test_an_instance_waiting_for_its_eta_is_not_stuck(in_flight):
    set_back(in_flight, "t_s#0", eta=timezone.now() - timedelta(minutes=30))

    report = recover(stuck_after=timedelta(hours=1))

    assert report.stuck_scheduled == []
    assert handed() == []


def test_an_instance_handed_over_recently_is_not_stuck(in_flight):
    set_back(in_flight, "t_s#0", dispatched_at=timezone.now() - timedelta(minutes=30))

    report = recover(stuck_after=timedelta(hours=1))

    assert report.stuck_scheduled == []
    assert handed() == []


def test_a_stuck_instance_whose_runner_refuses_it_again_is_left_to_the_redispatch_sweep(
    in_flight,
):
    RUNNER_MODE["mode"] = "broken"

    report = recover(stuck_after=timedelta(hours=1))

    assert report.stuck_scheduled == [(in_flight.session_uid, "t_s#0")]
    instance = in_flight.get_instance("t_s#0")
    assert instance.dispatched_at is None
    assert instance.metadata["dispatch_error"]["error"] == "ConnectionError: broker down"


def test_recover_reports_an_instance_running_for_too_long(in_flight):
    report = recover(stuck_after=timedelta(hours=1))

    assert report.stuck_running == [(in_flight.session_uid, "t_r#0")]


def test_reporting_stuck_instances_changes_nothing(in_flight):
    report = recover(stuck_after=timedelta(hours=1))

    assert report.failed_stuck == []
    assert in_flight.get_instance("t_s#0").status == TaskInstance.SCHEDULED
    assert in_flight.get_instance("t_r#0").status == TaskInstance.RUNNING


def test_instances_in_flight_for_less_than_stuck_after_are_not_reported(in_flight):
    report = recover(stuck_after=timedelta(hours=3))

    assert report.stuck_scheduled == []
    assert report.stuck_running == []


def test_fail_stuck_fails_the_running_instance_as_stuck(in_flight):
    report = recover(stuck_after=timedelta(hours=1), fail_stuck=True)

    assert report.failed_stuck == [(in_flight.session_uid, "t_r#0")]
    instance = in_flight.get_instance("t_r#0")
    assert instance.status == TaskInstance.FAILED
    assert instance.metadata["exception_type"] == STUCK_INSTANCE


def test_fail_stuck_leaves_scheduled_instances_alone(in_flight):
    recover(stuck_after=timedelta(hours=1), fail_stuck=True)

    assert in_flight.get_instance("t_s#0").status == TaskInstance.SCHEDULED


def test_fail_stuck_leaves_recently_started_instances_running(in_flight):
    report = recover(stuck_after=timedelta(hours=3), fail_stuck=True)

    assert report.failed_stuck == []
    assert in_flight.get_instance("t_r#0").status == TaskInstance.RUNNING


def test_an_instance_failed_as_stuck_can_be_replayed_and_finish(in_flight, triggers):
    recover(stuck_after=timedelta(hours=1), fail_stuck=True)
    RUNNER_MODE["mode"] = "run"

    clone = in_flight.replay_failed_instance("t_r#0")

    assert clone.name == "t_r#1"
    triggers.assertInstanceReplayed("t_r#0")
    triggers.assertInstanceFinished("t_r#1", {"received": {"a": {"v": 1}}})


def test_a_worker_finishing_after_its_instance_was_failed_as_stuck_does_not_overwrite_it(
    trigger_manager, triggers
):
    trigger_manager.update_configuration(
        {
            "t_block": {"after": ["a"], "run": Blocking.name},
            "t_next": {"after": ["t_block"], "run": ECHO},
        }
    )
    trigger_manager.fire("a")
    assert STARTED.wait(timeout=30)
    set_back(trigger_manager, "t_block#0", status_changed_at=timezone.now() - timedelta(hours=2))
    recover(stuck_after=timedelta(hours=1), fail_stuck=True)

    RELEASE.set()
    ThreadingTaskRunner.join_all(timeout=60)

    triggers.assertInstanceFailed("t_block#0", STUCK_INSTANCE)
    triggers.assertInstanceMissing("t_next#0")


def test_a_worker_finishing_after_its_instance_was_replayed_does_not_cascade_again(
    trigger_manager, triggers
):
    trigger_manager.update_configuration(
        {
            "t_block": {"after": ["a"], "run": Blocking.name},
            "t_each": {"after": [], "andEvery": "t_block", "run": ECHO},
        }
    )
    trigger_manager.fire("a")
    assert STARTED.wait(timeout=30)
    set_back(trigger_manager, "t_block#0", status_changed_at=timezone.now() - timedelta(hours=2))
    recover(stuck_after=timedelta(hours=1), fail_stuck=True)
    trigger_manager.replay_failed_instance("t_block#0")

    RELEASE.set()
    ThreadingTaskRunner.join_all(timeout=60)

    assert [i.name for i in trigger_manager.instances_of_task("t_each")] == ["t_each#0"]
    triggers.assertInstanceFinished("t_block#1", {"late": True})
    triggers.assertInstanceReplayed("t_block#0")


# -- batches and errors -------------------------------------------------------------------


def test_recover_with_batch_size_one_finds_every_instance_of_every_session(trigger_manager):
    RUNNER_MODE["mode"] = "broken"
    managers = [trigger_manager] + [TriggerManager(f"test-{uuid.uuid4().hex}") for _ in range(2)]
    expected = []
    for manager in managers:
        configure(manager, "t_a", "t_b", "t_c")
        manager.fire("a")
        expected += [(manager.session_uid, name) for name in ("t_a#0", "t_b#0", "t_c#0")]
    RUNNER_MODE["mode"] = "record"

    report = recover(
        redispatch_after=timedelta(seconds=60),
        stuck_after=timedelta(hours=1),
        batch_size=1,
        now=timezone.now() + timedelta(hours=2),
    )

    assert sorted(report.redispatched) == sorted(expected)
    # Just handed over again: not stuck.
    assert report.stuck_scheduled == []
    assert report.errors == []
    assert sorted(handed("record")) == sorted(name for _, name in expected)
    assert not TaskInstance.objects.filter(dispatched_at__isnull=True).exists()


@pytest.mark.parametrize("batch_size", [0, -1])
def test_recover_with_a_batch_size_below_one_raises_value_error_and_changes_nothing(
    trigger_manager, undispatched, batch_size
):
    RUNNER_MODE["mode"] = "record"

    with pytest.raises(ValueError, match="batch_size"):
        recover(batch_size=batch_size, now=timezone.now() + timedelta(hours=2))

    assert handed("record") == []
    assert trigger_manager.get_instance("t_a#0").dispatched_at is None


@pytest.mark.parametrize(
    "waits",
    [
        {"redispatch_after": timedelta(days=36526)},
        {"stuck_after": timedelta(days=36526)},
        {"stuck_after": timedelta(days=999_999_999)},
        {"redispatch_after": timedelta(seconds=-1)},
        {"stuck_after": timedelta(seconds=-1)},
    ],
    ids=[
        "redispatch-after-over-100-years",
        "stuck-after-over-100-years",
        "stuck-after-beyond-any-date",
        "redispatch-after-negative",
        "stuck-after-negative",
    ],
)
def test_a_wait_outside_0_to_100_years_raises_value_error_and_changes_nothing(
    trigger_manager, undispatched, waits
):
    RUNNER_MODE["mode"] = "record"
    (argument,) = waits

    with pytest.raises(ValueError, match=f"{argument} must be between 0 and 100 years"):
        recover(**waits, now=timezone.now() + timedelta(hours=2))

    assert handed("record") == []
    assert trigger_manager.get_instance("t_a#0").dispatched_at is None


def test_a_session_whose_manager_class_cannot_be_imported_is_reported_as_an_error(
    trigger_manager, undispatched
):
    healthy = TriggerManager(f"test-{uuid.uuid4().hex}")
    configure(healthy, "t_a")
    healthy.fire("a")  # broken runner: undispatched as well
    TriggerSession.objects.filter(uid=trigger_manager.session_uid).update(
        manager_class="nowhere.Missing"
    )
    RUNNER_MODE["mode"] = "record"

    report = recover(
        redispatch_after=timedelta(seconds=60), now=timezone.now() + timedelta(hours=1)
    )

    assert [(uid, name) for uid, name, _ in report.errors] == [
        (trigger_manager.session_uid, "t_a#0")
    ]
    assert "nowhere.Missing" in report.errors[0][2]
    assert report.redispatched == [(healthy.session_uid, "t_a#0")]
    assert trigger_manager.get_instance("t_a#0").dispatched_at is None
