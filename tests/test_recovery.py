"""Statuses, instance properties and the manager's recovery and inspection methods."""

import json
from datetime import datetime

import pytest

from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskInstance
from tests.helpers import set_status

STATUSES = [
    "unstarted",
    "scheduled",
    "running",
    "finished",
    "failed",
    "replayed",
    "skipped",
    "abandoned",
]


class HookRecordingManager(TriggerManager):
    """Records the hooks it receives, in order."""

    def __init__(self, session_uid):
        super().__init__(session_uid)
        self.events = []

    def _post_fire(self, trigger_name, tasks_scheduled):
        self.events.append(("fire", trigger_name))

    def _post_replay(self, new_instance):
        self.events.append(("replay", new_instance.name, new_instance.parent.name))

    def _post_skip(self, instance, cascade):
        self.events.append(("skip", instance.name, instance.status, cascade))


def instance_rows(manager):
    return list(TaskInstance.objects.filter(session=manager.session).order_by("id").values())


def fired_rows(manager):
    return list(FiredTrigger.objects.filter(session=manager.session).order_by("id").values())


@pytest.fixture
def failed(trigger_manager, triggers):
    """``t_fail#0`` failed (replays of it succeed); ``t_next`` waits for its cascade."""
    trigger_manager.update_configuration(
        {
            "t_fail": {"after": ["start"], "run": "tests.FailUntilReplayed"},
            "t_next": {"after": ["t_fail"], "run": "tests.Echo"},
        }
    )
    trigger_manager.fire("start", {"n": 1})
    triggers.assertInstanceFailed("t_fail#0", RuntimeError)
    return trigger_manager.get_instance("t_fail#0")


@pytest.fixture
def always_failing(trigger_manager, triggers):
    """``t_fail#0`` failed, and so will every replay of it."""
    trigger_manager.update_configuration({"t_fail": {"after": ["start"], "run": "tests.Fail"}})
    trigger_manager.fire("start", {"n": 1})
    triggers.assertInstanceFailed("t_fail#0", ValueError)
    return trigger_manager.get_instance("t_fail#0")


@pytest.fixture
def unstarted(trigger_manager, triggers):
    """``t_wait#0`` unstarted: it waits for ``second``, which never fires."""
    trigger_manager.update_configuration(
        {"t_wait": {"after": ["first", "second"], "run": "tests.Echo"}}
    )
    trigger_manager.fire("first")
    triggers.assertInstanceUnstarted("t_wait#0")
    return trigger_manager.get_instance("t_wait#0")


@pytest.fixture
def error_logged(trigger_manager, triggers):
    """``t_log#0`` finished after logging an error."""
    trigger_manager.update_configuration(
        {"t_log": {"after": ["start"], "run": "tests.LogAtLevels"}}
    )
    trigger_manager.fire("start", {"levels": ["ERROR"]})
    triggers.assertInstanceFinished("t_log#0")
    return trigger_manager.get_instance("t_log#0")


# -- statuses and properties -----------------------------------------------------------------

PROPERTIES = {
    # status: (can_run, can_abandon, can_replay, can_skip, is_resolved)
    "unstarted": (False, True, False, False, False),  # it waits for "second"
    "scheduled": (True, False, False, False, False),
    "running": (False, False, False, False, False),
    "finished": (False, False, False, False, True),
    "failed": (False, False, True, True, False),
    "replayed": (False, False, False, False, True),
    "skipped": (False, False, False, False, True),
    "abandoned": (False, False, False, False, True),
}


def test_an_unstarted_instance_can_run_once_every_after_trigger_fired_into_it(unstarted):
    assert not unstarted.can_run
    unstarted.kwargs["second"] = {}
    assert unstarted.can_run


@pytest.mark.parametrize("status", STATUSES)
def test_instance_properties_follow_the_status(trigger_manager, unstarted, status):
    set_status(trigger_manager, "t_wait#0", status)
    instance = trigger_manager.get_instance("t_wait#0")
    assert instance.status == status
    assert (
        instance.can_run,
        instance.can_abandon,
        instance.can_replay,
        instance.can_skip,
        instance.is_resolved,
    ) == PROPERTIES[status]


@pytest.mark.parametrize("status", STATUSES)
def test_logs_below_error_are_resolved_in_every_status(trigger_manager, triggers, status):
    trigger_manager.update_configuration(
        {"t_log": {"after": ["start"], "run": "tests.LogAtLevels"}}
    )
    trigger_manager.fire("start", {"levels": ["WARNING"]})
    triggers.assertInstanceFinished("t_log#0")
    set_status(trigger_manager, "t_log#0", status)
    assert trigger_manager.get_instance("t_log#0").logs_resolved is True


@pytest.mark.parametrize(
    ("status", "resolved"),
    [
        ("unstarted", False),
        ("scheduled", False),
        ("running", False),
        ("finished", False),
        ("failed", False),
        ("replayed", True),
        ("skipped", True),
        ("abandoned", True),
    ],
)
def test_error_logs_are_resolved_only_when_the_status_makes_them_irrelevant(
    trigger_manager, error_logged, status, resolved
):
    set_status(trigger_manager, "t_log#0", status)
    assert trigger_manager.get_instance("t_log#0").logs_resolved is resolved


def test_marking_logs_resolved_resolves_error_logs(trigger_manager, error_logged):
    assert error_logged.logs_resolved is False
    trigger_manager.mark_instance_logs_resolved("t_log#0")
    instance = trigger_manager.get_instance("t_log#0")
    assert instance.logs_resolved is True
    assert instance.status == TaskInstance.FINISHED


def test_an_error_logged_by_a_failed_task_leaves_its_logs_unresolved(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_raise": {"after": ["start"], "run": "tests.RaiseInsideLoggerContext"}}
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_raise#0", KeyError)
    assert trigger_manager.get_instance("t_raise#0").logs_resolved is False


def test_skipping_a_failed_instance_resolves_its_error_logs(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_raise": {"after": ["start"], "run": "tests.RaiseInsideLoggerContext"}}
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_raise#0", KeyError)
    trigger_manager.skip_failed_instance("t_raise#0")
    assert trigger_manager.get_instance("t_raise#0").logs_resolved is True


# -- replay ---------------------------------------------------------------------------------


def test_replay_by_name_marks_the_failed_instance_replayed(trigger_manager, triggers, failed):
    trigger_manager.replay_failed_instance("t_fail#0")
    triggers.assertInstanceReplayed("t_fail#0")


def test_replay_by_instance_object_marks_it_replayed(trigger_manager, triggers, failed):
    trigger_manager.replay_failed_instance(failed)
    triggers.assertInstanceReplayed("t_fail#0")


def test_replay_schedules_a_clone_with_the_next_number_and_the_parent(
    trigger_manager, triggers, failed
):
    clone = trigger_manager.replay_failed_instance(failed)
    assert clone.name == "t_fail#1"
    triggers.assertInstanceFinished("t_fail#1")
    stored = trigger_manager.get_instance("t_fail#1")
    assert stored.parent_id == failed.pk
    assert stored.retries == failed.retries + 1 == 1


def test_replay_copies_the_kwargs_to_the_clone(trigger_manager, triggers, failed):
    trigger_manager.replay_failed_instance(failed)
    triggers.assertInstanceFinished("t_fail#1", {"received": {"start": {"n": 1}}})
    assert trigger_manager.get_instance("t_fail#1").kwargs == failed.kwargs


def test_replay_copies_the_unless_triggers_seen(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_fail": {
                "after": ["start"],
                "unless": ["cancelled", "refunded"],
                "run": "tests.FailUntilReplayed",
            }
        }
    )
    trigger_manager.fire("cancelled")
    trigger_manager.fire("start")
    triggers.assertInstanceFailed("t_fail#0", RuntimeError)
    trigger_manager.replay_failed_instance("t_fail#0")
    triggers.assertInstanceFinished("t_fail#1")
    assert trigger_manager.get_instance("t_fail#1").unless_fired == ["cancelled"]


def test_replay_replacement_kwargs_replace_that_triggers_kwargs(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_fail": {"after": ["first", "second"], "run": "tests.FailUntilReplayed"}}
    )
    trigger_manager.fire("first", {"x": 1, "dropped": True})
    trigger_manager.fire("second", {"y": 2})
    triggers.assertInstanceFailed("t_fail#0", RuntimeError)
    trigger_manager.replay_failed_instance("t_fail#0", replacement_kwargs={"first": {"x": 99}})
    triggers.assertInstanceFinished(
        "t_fail#1", {"received": {"first": {"x": 99}, "second": {"y": 2}}}
    )


def test_replay_calls_post_replay_with_the_new_instance(trigger_manager, triggers, failed):
    manager = HookRecordingManager(trigger_manager.session_uid)
    manager.replay_failed_instance("t_fail#0")
    triggers.assertInstanceFinished("t_fail#1")
    assert ("replay", "t_fail#1", "t_fail#0") in manager.events


def test_replaying_again_later_takes_the_next_number(trigger_manager, triggers, always_failing):
    trigger_manager.replay_failed_instance("t_fail#0")
    triggers.assertInstanceFailed("t_fail#1", ValueError)
    clone = trigger_manager.replay_failed_instance("t_fail#1")
    assert clone.name == "t_fail#2"
    triggers.assertInstanceFailed("t_fail#2", ValueError)
    triggers.assertInstanceReplayed("t_fail#1")
    instances = trigger_manager.instances_of_task("t_fail")
    assert [(i.name, i.retries, i.parent_id) for i in instances] == [
        ("t_fail#0", 0, None),
        ("t_fail#1", 1, instances[0].pk),
        ("t_fail#2", 2, instances[1].pk),
    ]


# -- skip -----------------------------------------------------------------------------------


def test_skip_without_cascade_marks_it_skipped_and_fires_nothing(trigger_manager, triggers, failed):
    fired_before = fired_rows(trigger_manager)
    trigger_manager.skip_failed_instance("t_fail#0")
    triggers.assertInstanceSkipped("t_fail#0")
    triggers.assertInstanceMissing("t_next#0")
    assert fired_rows(trigger_manager) == fired_before


def test_skip_with_cascade_fires_the_task_name_with_the_result(trigger_manager, triggers, failed):
    trigger_manager.skip_failed_instance(failed, cascade=True, result={"value": 1})
    triggers.assertInstanceSkipped("t_fail#0")
    [cascade] = FiredTrigger.objects.filter(session=trigger_manager.session, trigger_name="t_fail")
    assert cascade.kwargs == {"value": 1}
    triggers.assertInstanceFinished("t_next#0", {"received": {"t_fail": {"value": 1}}})


def test_skip_calls_post_skip_after_the_cascade(trigger_manager, triggers, failed):
    manager = HookRecordingManager(trigger_manager.session_uid)
    manager.skip_failed_instance("t_fail#0", cascade=True, result={"value": 1})
    triggers.assertInstanceFinished("t_next#0")
    assert manager.events == [("fire", "t_fail"), ("skip", "t_fail#0", "skipped", True)]


def test_skip_without_cascade_calls_post_skip(trigger_manager, triggers, failed):
    manager = HookRecordingManager(trigger_manager.session_uid)
    manager.skip_failed_instance("t_fail#0")
    triggers.assertInstanceSkipped("t_fail#0")
    assert manager.events == [("skip", "t_fail#0", "skipped", False)]


# -- update_instance_status / update_instance_metadata -----------------------------------------


def test_update_instance_status_sets_the_status_and_merges_metadata(
    trigger_manager, triggers, failed
):
    trigger_manager.update_instance_status("t_fail#0", "abandoned", metadata={"note": "manual"})
    triggers.assertInstanceAbandoned("t_fail#0")
    metadata = trigger_manager.get_instance("t_fail#0").metadata
    assert metadata["note"] == "manual"
    assert metadata["exception_type"] == "builtins.RuntimeError"
    assert "abandoned" in metadata["timestamps"]


def test_update_instance_status_without_cascade_fires_nothing(trigger_manager, triggers, failed):
    fired_before = fired_rows(trigger_manager)
    trigger_manager.update_instance_status(failed, "finished")
    triggers.assertInstanceFinished("t_fail#0")
    triggers.assertInstanceMissing("t_next#0")
    assert fired_rows(trigger_manager) == fired_before


def test_update_instance_status_with_cascade_fires_the_task_name(trigger_manager, triggers, failed):
    trigger_manager.update_instance_status(
        failed, "finished", cascade=True, cascade_kwargs={"value": 2}
    )
    triggers.assertInstanceFinished("t_fail#0")
    triggers.assertInstanceFinished("t_next#0", {"received": {"t_fail": {"value": 2}}})


def test_update_instance_metadata_merges_at_the_top_level(trigger_manager, failed):
    trigger_manager.update_instance_metadata("t_fail#0", {"note": "checked", "ticket": 42})
    metadata = trigger_manager.get_instance("t_fail#0").metadata
    assert metadata["note"] == "checked"
    assert metadata["ticket"] == 42
    assert metadata["exception_type"] == failed.metadata["exception_type"]
    assert metadata["traceback"] == failed.metadata["traceback"]


def test_update_instance_metadata_keeps_the_status(trigger_manager, failed):
    trigger_manager.update_instance_metadata(failed, {"note": "checked"})
    assert trigger_manager.get_instance("t_fail#0").status == TaskInstance.FAILED


def test_update_instance_metadata_touches_only_the_last_modified_timestamp(trigger_manager, failed):
    before = failed.metadata["timestamps"]
    trigger_manager.update_instance_metadata(failed, {"note": "checked"})
    after = trigger_manager.get_instance("t_fail#0").metadata["timestamps"]
    assert after.keys() == before.keys()
    assert {k: v for k, v in after.items() if k != "last_modified"} == {
        k: v for k, v in before.items() if k != "last_modified"
    }
    assert datetime.fromisoformat(after["last_modified"]) > datetime.fromisoformat(
        before["last_modified"]
    )


# -- timestamps -------------------------------------------------------------------------------


def test_timestamps_record_each_status_reached_in_order(trigger_manager, triggers, unstarted):
    trigger_manager.fire("second")
    triggers.assertInstanceFinished("t_wait#0")
    timestamps = trigger_manager.get_instance("t_wait#0").metadata["timestamps"]
    order = ["created", "unstarted", "scheduled", "running", "finished"]
    assert set(order) | {"last_modified"} <= timestamps.keys()
    times = [datetime.fromisoformat(timestamps[key]) for key in order]
    assert times == sorted(times)
    assert datetime.fromisoformat(timestamps["last_modified"]) >= times[-1]


def test_timestamps_record_failed_then_replayed(trigger_manager, failed):
    trigger_manager.replay_failed_instance(failed)
    timestamps = trigger_manager.get_instance("t_fail#0").metadata["timestamps"]
    assert datetime.fromisoformat(timestamps["failed"]) <= datetime.fromisoformat(
        timestamps["replayed"]
    )


# -- errors -----------------------------------------------------------------------------------


def test_get_instance_of_an_unknown_name_raises_lookup_error_naming_it(trigger_manager):
    with pytest.raises(LookupError, match="t_nothing#7"):
        trigger_manager.get_instance("t_nothing#7")


def test_replaying_an_unknown_instance_raises_lookup_error(trigger_manager):
    with pytest.raises(LookupError, match="t_nothing#7"):
        trigger_manager.replay_failed_instance("t_nothing#7")


@pytest.mark.parametrize("method", ["replay_failed_instance", "skip_failed_instance"])
def test_replay_or_skip_of_a_finished_instance_raises_naming_it_and_its_status(
    trigger_manager, triggers, method
):
    trigger_manager.update_configuration({"t_echo": {"after": ["start"], "run": "tests.Echo"}})
    trigger_manager.fire("start")
    triggers.assertInstanceFinished("t_echo#0")
    with pytest.raises(ValueError, match=r"t_echo#0.*finished|finished.*t_echo#0"):
        getattr(trigger_manager, method)("t_echo#0")


@pytest.mark.parametrize("method", ["replay_failed_instance", "skip_failed_instance"])
def test_replay_or_skip_of_an_unstarted_instance_raises_naming_it_and_its_status(
    trigger_manager, unstarted, method
):
    with pytest.raises(ValueError, match=r"t_wait#0.*unstarted|unstarted.*t_wait#0"):
        getattr(trigger_manager, method)(unstarted)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda m: m.replay_failed_instance("t_echo#0"), id="replay"),
        pytest.param(lambda m: m.skip_failed_instance("t_echo#0"), id="skip"),
        pytest.param(
            lambda m: m.skip_failed_instance("t_echo#0", cascade=True, result={"v": 1}),
            id="skip-cascade",
        ),
    ],
)
def test_wrong_status_recovery_changes_nothing(trigger_manager, triggers, call):
    trigger_manager.update_configuration(
        {
            "t_echo": {"after": ["start"], "run": "tests.Echo"},
            "t_next": {"after": ["other", "t_echo"], "run": "tests.Echo"},
        }
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFinished("t_echo#0")
    instances_before = instance_rows(trigger_manager)
    fired_before = fired_rows(trigger_manager)
    with pytest.raises(ValueError):
        call(trigger_manager)
    assert instance_rows(trigger_manager) == instances_before
    assert fired_rows(trigger_manager) == fired_before


@pytest.mark.parametrize(
    ("replacement", "mentioned"),
    [
        pytest.param({"start": {"x": "a\x00"}}, "start.x", id="nul-character"),
        pytest.param({"start\udc80": {}}, "surrogate", id="lone-surrogate-in-a-trigger-name"),
        pytest.param({"start": ["x"]}, "start", id="kwargs-not-a-mapping"),
        pytest.param(["start"], "list", id="not-a-mapping"),
        pytest.param({"start": {"when": object()}}, "start.when", id="unencodable"),
    ],
)
def test_bad_replacement_kwargs_raise_and_change_nothing(
    trigger_manager, triggers, failed, replacement, mentioned
):
    instances_before = instance_rows(trigger_manager)
    with pytest.raises((TypeError, ValueError)) as excinfo:
        trigger_manager.replay_failed_instance("t_fail#0", replacement_kwargs=replacement)
    assert mentioned in str(excinfo.value)
    triggers.assertInstanceFailed("t_fail#0", RuntimeError)
    triggers.assertInstanceMissing("t_fail#1")
    assert instance_rows(trigger_manager) == instances_before


def test_replay_replacement_kwargs_may_name_triggers_the_task_does_not_wait_for(
    trigger_manager, triggers, failed
):
    trigger_manager.replay_failed_instance(
        "t_fail#0", replacement_kwargs={"extra": {"note": "given by hand"}}
    )

    triggers.assertInstanceFinished(
        "t_fail#1", {"received": {"start": {"n": 1}, "extra": {"note": "given by hand"}}}
    )


# -- inspection -------------------------------------------------------------------------------


def test_instances_of_task_lists_its_instances_by_number(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_every": {"after": [], "andEvery": "tick", "run": "tests.Echo"},
            "t_other": {"after": ["tick"], "run": "tests.Echo"},
        }
    )
    for n in range(3):
        trigger_manager.fire("tick", {"n": n})
    triggers.assertInstanceFinished("t_every#2")
    instances = trigger_manager.instances_of_task("t_every")
    assert [i.name for i in instances] == ["t_every#0", "t_every#1", "t_every#2"]
    assert [i.number for i in instances] == [0, 1, 2]


def test_instances_of_an_unconfigured_task_is_empty(trigger_manager):
    assert trigger_manager.instances_of_task("t_unknown") == []


def test_get_unresolved_tasks_lists_tasks_without_instances_or_with_unresolved_ones(
    trigger_manager, triggers
):
    trigger_manager.update_configuration(
        {
            "t_never": {"after": ["never"], "run": "tests.Echo"},
            "t_waiting": {"after": ["start", "later"], "run": "tests.Echo"},
            "t_done": {"after": ["start"], "run": "tests.Echo"},
            "t_fail": {"after": ["start"], "run": "tests.Fail"},
            "t_skip": {"after": ["start"], "run": "tests.SkipSelf"},
        }
    )
    trigger_manager.fire("start")
    triggers.assertInstanceFinished("t_done#0")
    triggers.assertInstanceFailed("t_fail#0", ValueError)
    triggers.assertInstanceSkipped("t_skip#0")
    names = sorted(config.name for config in trigger_manager.get_unresolved_tasks())
    assert names == ["t_fail", "t_never", "t_waiting"]


def test_a_replayed_task_is_resolved_once_its_clone_finishes(trigger_manager, triggers, failed):
    trigger_manager.replay_failed_instance(failed)
    triggers.assertInstanceFinished("t_fail#1")
    triggers.assertInstanceFinished("t_next#0")
    assert trigger_manager.get_unresolved_tasks() == []


def test_get_unresolved_instances_lists_the_unresolved_ones(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_waiting": {"after": ["start", "later"], "run": "tests.Echo"},
            "t_done": {"after": ["start"], "run": "tests.Echo"},
            "t_fail": {"after": ["start"], "run": "tests.Fail"},
            "t_stopped": {"after": ["start", "later"], "unless": ["stop"], "run": "tests.Echo"},
        }
    )
    trigger_manager.fire("start")
    trigger_manager.fire("stop")
    triggers.assertInstanceFinished("t_done#0")
    triggers.assertInstanceFailed("t_fail#0", ValueError)
    triggers.assertInstanceAbandoned("t_stopped#0")
    names = sorted(i.name for i in trigger_manager.get_unresolved_instances())
    assert names == ["t_fail#0", "t_waiting#0"]


def test_get_instances_with_unresolved_logs(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_warning": {"after": ["start"], "run": "tests.LogAtLevels"}}
    )
    trigger_manager.fire("start", {"levels": ["WARNING"]})
    triggers.assertInstanceFinished("t_warning#0")
    trigger_manager.update_configuration(
        {
            "t_error": {"after": ["start"], "run": "tests.LogAtLevels"},
            "t_marked": {"after": ["start"], "run": "tests.LogAtLevels"},
        }
    )
    trigger_manager.fire("start", {"levels": ["ERROR"]})
    triggers.assertInstanceFinished("t_error#0")
    triggers.assertInstanceFinished("t_marked#0")
    trigger_manager.mark_instance_logs_resolved("t_marked#0")
    names = [i.name for i in trigger_manager.get_instances_with_unresolved_logs()]
    assert names == ["t_error#0"]


def test_latest_kwargs_holds_the_latest_fire_of_each_trigger(trigger_manager):
    trigger_manager.fire("alpha", {"n": 1})
    trigger_manager.fire("beta")
    trigger_manager.fire("alpha", {"n": 2})
    assert trigger_manager.latest_kwargs == {"alpha": {"n": 2}, "beta": {}}


def test_latest_kwargs_includes_cascades(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_echo": {"after": ["start"], "run": "tests.Echo"}})
    trigger_manager.fire("start", {"n": 1})
    triggers.assertInstanceFinished("t_echo#0")
    assert trigger_manager.latest_kwargs == {
        "start": {"n": 1},
        "t_echo": {"received": {"start": {"n": 1}}},
    }


def test_debug_repr_is_json_serializable(trigger_manager, triggers, failed):
    trigger_manager.replay_failed_instance(failed)
    triggers.assertInstanceFinished("t_next#0")
    json.dumps(trigger_manager.debug_repr())


def test_debug_repr_shows_configuration_instances_and_fired_triggers(
    trigger_manager, triggers, failed
):
    trigger_manager.fire("unrelated", {"marker": "fired-value-81"})
    text = json.dumps(trigger_manager.debug_repr())
    assert "tests.FailUntilReplayed" in text
    assert "t_next" in text
    assert "t_fail#0" in text
    assert "builtins.RuntimeError" in text
    assert "fired-value-81" in text
