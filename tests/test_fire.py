"""Firing triggers (SPEC 5) and the state fires leave behind (SPEC 3)."""

import importlib
import itertools
import logging
import sys
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from django.db import transaction

from django_triggers.exceptions import ConfigurationError
from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskInstance, TriggerSession
from django_triggers.runners import BaseTaskRunner, CeleryTaskRunner, ThreadingTaskRunner
from tests.helpers import run_together

ECHO = "tests.Echo"

#: What the recording runners and hooks below saw, in order.
EVENTS: list[tuple[str, str]] = []
RUNS: list[dict[str, Any]] = []
HOOK_CALLS: list[dict[str, Any]] = []


@pytest.fixture(autouse=True)
def _fresh_records():
    EVENTS.clear()
    RUNS.clear()
    HOOK_CALLS.clear()
    yield


class RecordingRunner(BaseTaskRunner):
    """Records the instances it is handed, without running them."""

    name = "test_fire.using"

    def run(self, manager, task_instance):
        EVENTS.append(("run", task_instance.name))
        RUNS.append(
            {
                "runner": self.name,
                "instance": task_instance.name,
                "manager_class": type(manager),
                "in_transaction": transaction.get_connection().in_atomic_block,
            }
        )


class ManagerDefaultRunner(RecordingRunner):
    name = "test_fire.manager_default"


class SettingDefaultRunner(RecordingRunner):
    name = "test_fire.setting_default"


class ManagerWithDefaultRunner(TriggerManager):
    default_task_runner_name = ManagerDefaultRunner.name


class HookRecordingManager(TriggerManager):
    """Records every ``_post_fire`` call and what the database shows at that moment."""

    def _post_fire(self, trigger_name, tasks_scheduled):
        EVENTS.append(("hook", trigger_name))
        HOOK_CALLS.append(
            {
                "trigger": trigger_name,
                "scheduled": [instance.name for instance in tasks_scheduled],
                "in_transaction": transaction.get_connection().in_atomic_block,
                "fire_stored": FiredTrigger.objects.filter(
                    session__uid=self.session_uid, trigger_name=trigger_name
                ).exists(),
                "statuses": {
                    instance.name: TaskInstance.objects.get(pk=instance.pk).status
                    for instance in tasks_scheduled
                },
            }
        )


class ExplodingHookManager(TriggerManager):
    def _post_fire(self, trigger_name, tasks_scheduled):
        raise RuntimeError("post-fire hook broke")


def fired_log(manager: TriggerManager) -> list[tuple[str, Any, str]]:
    return [
        (fired.trigger_name, fired.kwargs, fired.source)
        for fired in FiredTrigger.objects.filter(session=manager.session)
    ]


def instance_names(manager: TriggerManager) -> list[str]:
    return sorted(
        TaskInstance.objects.filter(session=manager.session).values_list("name", flat=True)
    )


def names(instances: list[TaskInstance]) -> list[str]:
    return sorted(instance.name for instance in instances)


# -- persistent state ----------------------------------------------------------------


def test_constructing_a_manager_reads_and_writes_nothing(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        manager = TriggerManager(f"lazy-{uuid.uuid4().hex}")

    assert not TriggerSession.objects.filter(uid=manager.session_uid).exists()


def test_a_manager_creates_its_session_when_first_used(db):
    manager = TriggerManager(f"lazy-{uuid.uuid4().hex}")

    manager.update_configuration({"t": {"after": ["a"], "run": ECHO}})

    assert TriggerSession.objects.get(uid=manager.session_uid).manager_class == (
        TriggerManager.class_path()
    )


def test_instances_are_named_task_hash_number_counting_from_zero_per_task(
    trigger_manager, triggers
):
    trigger_manager.update_configuration(
        {
            "t_each": {"after": [], "andEvery": "page", "run": ECHO},
            "t_once": {"after": ["page"], "run": ECHO},
        }
    )
    for n in range(3):
        trigger_manager.fire("page", {"n": n})

    ThreadingTaskRunner.join_all()
    assert instance_names(trigger_manager) == ["t_each#0", "t_each#1", "t_each#2", "t_once#0"]


def test_finished_instance_keeps_its_session_kwargs_result_and_timestamps(
    trigger_manager, triggers
):
    trigger_manager.update_configuration({"t_import": {"after": ["a"], "run": ECHO}})
    trigger_manager.fire("a", {"v": 1})
    triggers.assertInstanceFinished("t_import#0")

    instance = trigger_manager.get_instance("t_import#0")
    assert instance.session.uid == trigger_manager.session_uid
    assert instance.name == "t_import#0"
    assert instance.status == "finished"
    assert instance.kwargs == {"a": {"v": 1}}
    assert instance.result == {"received": {"a": {"v": 1}}}
    assert instance.parent is None
    assert instance.retries == 0
    assert isinstance(instance.metadata, dict)
    timestamps = instance.metadata["timestamps"]
    assert {"created", "last_modified", "scheduled", "running", "finished"} <= set(timestamps)
    assert timestamps["created"] <= timestamps["scheduled"] <= timestamps["running"]
    assert timestamps["running"] <= timestamps["finished"] <= timestamps["last_modified"]


def test_a_replay_takes_the_next_number_and_records_parent_and_retry_depth(
    trigger_manager, triggers
):
    trigger_manager.update_configuration(
        {"t_each": {"after": [], "andEvery": "page", "run": "tests.FailUntilReplayed"}}
    )
    trigger_manager.fire("page", {"n": 0})
    triggers.assertInstanceFailed("t_each#0", RuntimeError)

    clone = trigger_manager.replay_failed_instance("t_each#0")
    assert clone.name == "t_each#1"
    triggers.assertInstanceReplayed("t_each#0")
    triggers.assertInstanceFinished("t_each#1", {"received": {"page": {"n": 0}}})
    replayed = trigger_manager.get_instance("t_each#1")
    assert replayed.parent.name == "t_each#0"
    assert replayed.retries == 1

    trigger_manager.fire("page", {"n": 1})
    triggers.assertInstanceFailed("t_each#2", RuntimeError)
    fresh = trigger_manager.get_instance("t_each#2")
    assert fresh.parent is None
    assert fresh.retries == 0


def test_update_instance_metadata_merges_at_top_level_and_touches_only_last_modified(
    trigger_manager, triggers
):
    trigger_manager.update_configuration({"t_import": {"after": ["a"], "run": ECHO}})
    trigger_manager.fire("a")
    triggers.assertInstanceFinished("t_import#0")
    trigger_manager.update_instance_metadata("t_import#0", {"review": {"by": "ops"}, "ticket": 7})
    before = trigger_manager.get_instance("t_import#0").metadata["timestamps"]

    trigger_manager.update_instance_metadata("t_import#0", {"review": {"state": "done"}})

    metadata = trigger_manager.get_instance("t_import#0").metadata
    assert metadata["review"] == {"state": "done"}
    assert metadata["ticket"] == 7
    after = metadata["timestamps"]
    assert set(after) == set(before)
    assert {k: v for k, v in after.items() if k != "last_modified"} == {
        k: v for k, v in before.items() if k != "last_modified"
    }
    assert after["last_modified"] >= before["last_modified"]


def test_fired_triggers_are_logged_in_order_with_application_and_cascade_sources(
    trigger_manager, triggers
):
    trigger_manager.update_configuration({"t_import": {"after": ["a"], "run": ECHO}})
    trigger_manager.fire("a", {"v": 1})
    triggers.assertInstanceFinished("t_import#0")
    trigger_manager.fire("b", {"w": 2})

    assert fired_log(trigger_manager) == [
        ("a", {"v": 1}, "application"),
        ("t_import", {"received": {"a": {"v": 1}}}, "cascade"),
        ("b", {"w": 2}, "application"),
    ]
    for fired in FiredTrigger.objects.filter(session=trigger_manager.session):
        assert fired.session.uid == trigger_manager.session_uid
        assert fired.fired_at is not None


def test_latest_kwargs_holds_the_most_recent_fire_of_each_trigger(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_import": {"after": ["b"], "run": ECHO}})
    trigger_manager.fire("a", {"v": 1})
    trigger_manager.fire("b", {"w": 1})
    trigger_manager.fire("a", {"v": 2})
    triggers.assertInstanceFinished("t_import#0")

    assert trigger_manager.latest_kwargs == {
        "a": {"v": 2},
        "b": {"w": 1},
        "t_import": {"received": {"b": {"w": 1}}},
    }


def test_latest_kwargs_of_a_session_without_fires_is_empty(trigger_manager):
    assert trigger_manager.latest_kwargs == {}


def test_dates_decimals_and_uuids_are_stored_as_strings(trigger_manager, triggers):
    order_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    trigger_manager.update_configuration({"t_order": {"after": ["ordered"], "run": ECHO}})
    trigger_manager.fire(
        "ordered",
        {
            "order": {
                "day": date(2024, 2, 29),
                "at": datetime(2024, 2, 29, 13, 45, 10, tzinfo=UTC),
                "amount": Decimal("12.50"),
                "id": order_id,
            }
        },
    )

    expected = {
        "order": {
            "day": "2024-02-29",
            "at": "2024-02-29T13:45:10Z",
            "amount": "12.50",
            "id": "12345678-1234-5678-1234-567812345678",
        }
    }
    triggers.assertInstanceFinished("t_order#0", {"received": {"ordered": expected}})
    fired = FiredTrigger.objects.get(session=trigger_manager.session, trigger_name="ordered")
    assert fired.kwargs == expected
    assert trigger_manager.get_instance("t_order#0").kwargs == {"ordered": expected}
    assert trigger_manager.latest_kwargs["ordered"] == expected


# -- which instances a fire creates, feeds and schedules -------------------------


@pytest.mark.parametrize("order", list(itertools.permutations(["a", "b", "c"])), ids="-".join)
def test_after_triggers_may_fire_in_any_order(trigger_manager, triggers, order):
    trigger_manager.update_configuration({"t_all": {"after": ["a", "b", "c"], "run": ECHO}})
    for trigger in order[:-1]:
        assert trigger_manager.fire(trigger, {"name": trigger}) == []
        triggers.assertInstanceUnstarted("t_all#0")

    scheduled = trigger_manager.fire(order[-1], {"name": order[-1]})

    assert names(scheduled) == ["t_all#0"]
    triggers.assertInstanceFinished(
        "t_all#0",
        {"received": {"a": {"name": "a"}, "b": {"name": "b"}, "c": {"name": "c"}}},
    )


def test_a_one_shot_task_is_not_run_again_when_its_trigger_fires_again(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_once": {"after": ["a"], "run": ECHO}})
    trigger_manager.fire("a", {"v": 1})
    triggers.assertInstanceFinished("t_once#0", {"received": {"a": {"v": 1}}})

    assert trigger_manager.fire("a", {"v": 2}) == []

    triggers.assertInstanceMissing("t_once#1")
    triggers.assertInstanceFinished("t_once#0", {"received": {"a": {"v": 1}}})
    cascades = [entry for entry in fired_log(trigger_manager) if entry[0] == "t_once"]
    assert len(cascades) == 1


def test_an_instance_keeps_the_kwargs_of_the_first_fire_it_saw(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_pair": {"after": ["a", "b"], "run": ECHO}})
    trigger_manager.fire("a", {"v": 1})
    trigger_manager.fire("a", {"v": 2})
    trigger_manager.fire("b", {"w": 1})

    triggers.assertInstanceFinished("t_pair#0", {"received": {"a": {"v": 1}, "b": {"w": 1}}})
    triggers.assertInstanceMissing("t_pair#1")
    assert trigger_manager.latest_kwargs["a"] == {"v": 2}


def test_a_trigger_no_task_listens_to_is_logged_and_touches_no_task(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_pair": {"after": ["a", "b"], "run": ECHO}})

    assert trigger_manager.fire("unrelated", {"x": 1}) == []

    triggers.assertInstanceMissing("t_pair#0")
    assert fired_log(trigger_manager) == [("unrelated", {"x": 1}, "application")]


def test_a_new_instance_starts_with_latest_kwargs_fired_before_the_task_was_configured(
    trigger_manager, triggers
):
    trigger_manager.fire("a", {"v": 1})
    trigger_manager.fire("a", {"v": 2})
    trigger_manager.update_configuration({"t_late": {"after": ["a", "b"], "run": ECHO}})
    triggers.assertInstanceMissing("t_late#0")

    scheduled = trigger_manager.fire("b", {"w": 1})

    assert names(scheduled) == ["t_late#0"]
    triggers.assertInstanceFinished("t_late#0", {"received": {"a": {"v": 2}, "b": {"w": 1}}})


def test_a_new_instance_starts_with_latest_kwargs_of_other_after_triggers(
    trigger_manager, triggers
):
    trigger_manager.update_configuration({"t_pair": {"after": ["a", "b"], "run": ECHO}})
    trigger_manager.fire("c", {"unrelated": True})
    trigger_manager.fire("a", {"v": 1})
    trigger_manager.fire("a", {"v": 2})

    instance = trigger_manager.get_instance("t_pair#0")
    assert instance.kwargs == {"a": {"v": 1}}
    trigger_manager.fire("b", {"w": 1})
    triggers.assertInstanceFinished("t_pair#0", {"received": {"a": {"v": 1}, "b": {"w": 1}}})


# -- andEvery --------------------------------------------------------------------------


def test_and_every_fires_before_its_after_trigger_each_make_an_instance(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_each": {"after": ["profile"], "andEvery": "page", "run": ECHO}}
    )

    assert trigger_manager.fire("page", {"n": 0}) == []
    triggers.assertInstanceUnstarted("t_each#0")
    assert trigger_manager.fire("page", {"n": 1}) == []
    triggers.assertInstanceUnstarted("t_each#0")
    triggers.assertInstanceUnstarted("t_each#1")

    scheduled = trigger_manager.fire("profile", {"p": 1})

    assert names(scheduled) == ["t_each#0", "t_each#1"]
    triggers.assertInstanceFinished(
        "t_each#0", {"received": {"profile": {"p": 1}, "page": {"n": 0}}}
    )
    triggers.assertInstanceFinished(
        "t_each#1", {"received": {"profile": {"p": 1}, "page": {"n": 1}}}
    )

    assert names(trigger_manager.fire("page", {"n": 2})) == ["t_each#2"]
    triggers.assertInstanceFinished(
        "t_each#2", {"received": {"profile": {"p": 1}, "page": {"n": 2}}}
    )
    triggers.assertInstanceMissing("t_each#3")


def test_and_every_fires_after_its_after_trigger_each_schedule_an_instance(
    trigger_manager, triggers
):
    trigger_manager.update_configuration(
        {"t_each": {"after": ["profile"], "andEvery": "page", "run": ECHO}}
    )
    assert trigger_manager.fire("profile", {"p": 1}) == []
    triggers.assertInstanceUnstarted("t_each#0")
    assert trigger_manager.fire("profile", {"p": 2}) == []
    triggers.assertInstanceMissing("t_each#1")

    assert names(trigger_manager.fire("page", {"n": 0})) == ["t_each#0"]
    triggers.assertInstanceFinished(
        "t_each#0", {"received": {"profile": {"p": 1}, "page": {"n": 0}}}
    )

    assert names(trigger_manager.fire("page", {"n": 1})) == ["t_each#1"]
    triggers.assertInstanceFinished(
        "t_each#1", {"received": {"profile": {"p": 2}, "page": {"n": 1}}}
    )
    triggers.assertInstanceMissing("t_each#2")


def test_an_and_every_instance_made_beside_an_open_one_starts_with_the_latest_kwargs(
    trigger_manager, triggers
):
    trigger_manager.update_configuration(
        {"t_each": {"after": ["profile", "consent"], "andEvery": "page", "run": ECHO}}
    )
    trigger_manager.fire("consent", {"c": 1})
    trigger_manager.fire("page", {"n": 0})
    trigger_manager.fire("page", {"n": 1})  # t_each#0 has its page: a new instance

    assert trigger_manager.get_instance("t_each#1").kwargs == {
        "consent": {"c": 1},
        "page": {"n": 1},
    }
    assert names(trigger_manager.fire("profile", {"p": 1})) == ["t_each#0", "t_each#1"]
    triggers.assertInstanceFinished(
        "t_each#1",
        {"received": {"consent": {"c": 1}, "page": {"n": 1}, "profile": {"p": 1}}},
    )


def test_and_every_alone_schedules_one_instance_per_fire(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_each": {"after": [], "andEvery": "page", "run": ECHO}})
    for n in range(3):
        assert names(trigger_manager.fire("page", {"n": n})) == [f"t_each#{n}"]

    for n in range(3):
        triggers.assertInstanceFinished(f"t_each#{n}", {"received": {"page": {"n": n}}})


# -- unless ----------------------------------------------------------------------------


def test_unless_abandons_an_unstarted_instance(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_guarded": {"after": ["a", "b"], "unless": ["stop"], "run": ECHO}}
    )
    trigger_manager.fire("a")
    triggers.assertInstanceUnstarted("t_guarded#0")

    assert trigger_manager.fire("stop") == []
    triggers.assertInstanceAbandoned("t_guarded#0")

    assert trigger_manager.fire("b") == []
    triggers.assertInstanceAbandoned("t_guarded#0")
    triggers.assertInstanceMissing("t_guarded#1")
    assert trigger_manager.get_instance("t_guarded#0").result is None


def test_unless_with_several_triggers_abandons_only_once_all_have_fired(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_guarded": {"after": ["a", "b"], "unless": ["s1", "s2"], "run": ECHO}}
    )
    trigger_manager.fire("a")
    trigger_manager.fire("s1")
    triggers.assertInstanceUnstarted("t_guarded#0")

    trigger_manager.fire("s2")

    triggers.assertInstanceAbandoned("t_guarded#0")


def test_a_task_runs_when_only_some_of_its_unless_triggers_have_fired(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_guarded": {"after": ["a", "b"], "unless": ["s1", "s2"], "run": ECHO}}
    )
    trigger_manager.fire("s1")
    trigger_manager.fire("a", {"v": 1})
    trigger_manager.fire("b", {"w": 1})

    triggers.assertInstanceFinished("t_guarded#0", {"received": {"a": {"v": 1}, "b": {"w": 1}}})


def test_unless_firing_after_the_task_ran_changes_nothing(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_guarded": {"after": ["a"], "unless": ["stop"], "run": ECHO}}
    )
    trigger_manager.fire("a", {"v": 1})
    triggers.assertInstanceFinished("t_guarded#0")

    assert trigger_manager.fire("stop") == []

    triggers.assertInstanceFinished("t_guarded#0", {"received": {"a": {"v": 1}}})
    triggers.assertInstanceMissing("t_guarded#1")


def test_instances_created_after_unless_fired_are_abandoned_at_once(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_each": {"after": [], "andEvery": "page", "unless": ["closed"], "run": ECHO}}
    )
    trigger_manager.fire("page", {"n": 0})
    triggers.assertInstanceFinished("t_each#0")
    trigger_manager.fire("closed")

    assert trigger_manager.fire("page", {"n": 1}) == []

    triggers.assertInstanceAbandoned("t_each#1")
    triggers.assertInstanceFinished("t_each#0", {"received": {"page": {"n": 0}}})


def test_unless_firing_before_any_after_trigger_abandons_and_the_task_never_runs(
    trigger_manager, triggers
):
    trigger_manager.update_configuration(
        {"t_guarded": {"after": ["a"], "unless": ["stop"], "run": ECHO}}
    )

    assert trigger_manager.fire("stop") == []
    triggers.assertInstanceAbandoned("t_guarded#0")

    assert trigger_manager.fire("a", {"v": 1}) == []
    triggers.assertInstanceAbandoned("t_guarded#0")
    triggers.assertInstanceMissing("t_guarded#1")
    assert [entry[0] for entry in fired_log(trigger_manager)] == ["stop", "a"]


def test_unless_fired_before_the_task_was_configured_abandons_its_first_instance(
    trigger_manager, triggers
):
    trigger_manager.fire("stop")
    trigger_manager.update_configuration(
        {"t_guarded": {"after": ["a"], "unless": ["stop"], "run": ECHO}}
    )
    triggers.assertInstanceMissing("t_guarded#0")

    assert trigger_manager.fire("a") == []

    triggers.assertInstanceAbandoned("t_guarded#0")


# -- withParams --------------------------------------------------------------------------


def test_with_params_are_deep_merged_under_the_trigger_kwargs(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_params": {
                "after": ["a", "b"],
                "run": ECHO,
                "withParams": {
                    "a": {"source": "web", "options": {"lang": "en", "tz": "UTC"}},
                    "b": {"fixed": True},
                },
            }
        }
    )
    trigger_manager.fire("a", {"source": "app", "options": {"lang": "fr"}, "extra": 1})
    trigger_manager.fire("b")

    triggers.assertInstanceFinished(
        "t_params#0",
        {
            "received": {
                "a": {"source": "app", "options": {"lang": "fr", "tz": "UTC"}, "extra": 1},
                "b": {"fixed": True},
            }
        },
    )


def test_a_trigger_kwarg_that_is_not_a_dict_replaces_a_nested_param(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_params": {
                "after": ["a"],
                "run": ECHO,
                "withParams": {"a": {"options": {"lang": "en"}}},
            }
        }
    )
    trigger_manager.fire("a", {"options": None})

    triggers.assertInstanceFinished("t_params#0", {"received": {"a": {"options": None}}})


# -- what fire() returns and accepts --------------------------------------------------


def test_fire_returns_the_instances_it_scheduled(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {
            "t_one": {"after": ["a"], "run": ECHO},
            "t_two": {"after": ["a", "b"], "run": ECHO},
            "t_other": {"after": ["x"], "run": ECHO},
        }
    )
    assert trigger_manager.fire("b") == []

    scheduled = trigger_manager.fire("a")

    assert names(scheduled) == ["t_one#0", "t_two#0"]
    assert all(isinstance(instance, TaskInstance) for instance in scheduled)
    assert {instance.status for instance in scheduled} == {"scheduled"}
    triggers.assertInstanceFinished("t_one#0")
    triggers.assertInstanceFinished("t_two#0")
    triggers.assertInstanceMissing("t_other#0")


def test_fire_without_kwargs_stores_and_delivers_an_empty_dict(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_pair": {"after": ["a", "b"], "run": ECHO}})
    trigger_manager.fire("a")
    trigger_manager.fire("b", None)

    triggers.assertInstanceFinished("t_pair#0", {"received": {"a": {}, "b": {}}})
    assert fired_log(trigger_manager)[:2] == [("a", {}, "application"), ("b", {}, "application")]


def test_fire_accepts_keyword_arguments(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_one": {"after": ["a"], "run": ECHO}})
    trigger_manager.fire(trigger_name="a", trigger_kwargs={"v": 1})
    triggers.assertInstanceFinished("t_one#0", {"received": {"a": {"v": 1}}})


@pytest.mark.parametrize("kwargs", [["v", 1], "v=1", 5, [("v", 1)]], ids=repr)
def test_fire_with_kwargs_that_are_not_a_mapping_raises_type_error(trigger_manager, kwargs):
    trigger_manager.update_configuration({"t_one": {"after": ["a"], "run": ECHO}})

    with pytest.raises(TypeError):
        trigger_manager.fire("a", kwargs)

    assert fired_log(trigger_manager) == []
    assert instance_names(trigger_manager) == []


@pytest.mark.parametrize("trigger_name", ["", None, 5, ["a"]], ids=repr)
def test_fire_with_an_empty_or_non_string_trigger_name_raises_value_error(
    trigger_manager, trigger_name
):
    with pytest.raises(ValueError):
        trigger_manager.fire(trigger_name, {"v": 1})

    assert fired_log(trigger_manager) == []


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"responses": {"when": object()}}, "responses.when"),
        ({"responses": {"name": "Ada", "tags": {"a", "b"}}}, "responses.tags"),
        ({"responses": {"score": float("nan")}}, "responses.score"),
        ({"total": float("inf")}, "total"),
    ],
    ids=["object", "set", "nan", "inf"],
)
def test_unencodable_kwargs_raise_naming_trigger_and_key_path_and_store_nothing(
    trigger_manager, triggers, kwargs, path
):
    trigger_manager.update_configuration(
        {
            "t_pair": {"after": ["pageReceived", "complete"], "run": ECHO},
            "t_single": {"after": ["pageReceived"], "run": ECHO},
        }
    )
    trigger_manager.fire("complete", {"v": 1})

    with pytest.raises((TypeError, ValueError)) as caught:
        trigger_manager.fire("pageReceived", kwargs)

    message = str(caught.value)
    assert "pageReceived" in message
    assert path in message
    assert fired_log(trigger_manager) == [("complete", {"v": 1}, "application")]
    assert instance_names(trigger_manager) == ["t_pair#0"]
    triggers.assertInstanceUnstarted("t_pair#0")
    assert trigger_manager.get_instance("t_pair#0").kwargs == {"complete": {"v": 1}}
    assert "pageReceived" not in trigger_manager.latest_kwargs


# -- the _post_fire hook -------------------------------------------------------------


def test_post_fire_runs_after_commit_and_before_dispatch(trigger_manager):
    manager = HookRecordingManager(trigger_manager.session_uid)
    manager.update_configuration(
        {"t_recorded": {"after": ["a"], "run": ECHO, "using": RecordingRunner.name}}
    )

    manager.fire("a", {"v": 1})

    assert EVENTS == [("hook", "a"), ("run", "t_recorded#0")]
    assert HOOK_CALLS == [
        {
            "trigger": "a",
            "scheduled": ["t_recorded#0"],
            "in_transaction": False,
            "fire_stored": True,
            "statuses": {"t_recorded#0": "scheduled"},
        }
    ]


def test_post_fire_runs_for_a_fire_that_schedules_nothing(trigger_manager):
    manager = HookRecordingManager(trigger_manager.session_uid)

    manager.fire("lonely")

    assert [(call["trigger"], call["scheduled"]) for call in HOOK_CALLS] == [("lonely", [])]


def test_a_fire_hook_runs_before_the_hooks_of_the_cascades_it_causes(trigger_manager, triggers):
    manager = HookRecordingManager(trigger_manager.session_uid)
    manager.update_configuration(
        {
            "t_first": {"after": ["a"], "run": ECHO},
            "t_second": {"after": ["t_first"], "run": ECHO},
        }
    )

    manager.fire("a", {"v": 1})

    triggers.assertInstanceFinished("t_second#0")
    assert [(call["trigger"], call["scheduled"]) for call in HOOK_CALLS] == [
        ("a", ["t_first#0"]),
        ("t_first", ["t_second#0"]),
        ("t_second", []),
    ]
    assert HOOK_CALLS[0]["statuses"] == {"t_first#0": "scheduled"}
    assert HOOK_CALLS[1]["statuses"] == {"t_second#0": "scheduled"}


def test_an_exception_in_post_fire_is_logged_and_does_not_stop_dispatch(
    trigger_manager, triggers, caplog
):
    manager = ExplodingHookManager(trigger_manager.session_uid)
    manager.update_configuration({"t_import": {"after": ["a"], "run": ECHO}})

    with caplog.at_level(logging.ERROR):
        scheduled = manager.fire("a", {"v": 1})

    assert names(scheduled) == ["t_import#0"]
    triggers.assertInstanceFinished("t_import#0", {"received": {"a": {"v": 1}}})
    assert any(
        record.levelno >= logging.ERROR
        and (
            "post-fire hook broke" in record.getMessage()
            or (record.exc_info and "post-fire hook broke" in str(record.exc_info[1]))
        )
        for record in caplog.records
    ), [record.getMessage() for record in caplog.records]


# -- transactions ------------------------------------------------------------------------


def test_a_fire_in_a_rolled_back_transaction_stores_and_dispatches_nothing(
    trigger_manager, triggers
):
    manager = HookRecordingManager(trigger_manager.session_uid)
    manager.update_configuration(
        {
            "t_recorded": {"after": ["a"], "run": ECHO, "using": RecordingRunner.name},
            "t_threaded": {"after": ["a"], "run": ECHO},
        }
    )

    with pytest.raises(RuntimeError, match="roll back"), transaction.atomic():
        scheduled = manager.fire("a", {"v": 1})
        assert names(scheduled) == ["t_recorded#0", "t_threaded#0"]
        raise RuntimeError("roll back")

    ThreadingTaskRunner.join_all()
    assert RUNS == []
    assert HOOK_CALLS == []
    assert fired_log(manager) == []
    assert instance_names(manager) == []
    triggers.assertInstanceMissing("t_threaded#0")


def test_a_fire_in_an_outer_transaction_is_dispatched_only_after_it_commits(
    trigger_manager, triggers
):
    manager = HookRecordingManager(trigger_manager.session_uid)
    manager.update_configuration(
        {
            "t_recorded": {"after": ["a"], "run": ECHO, "using": RecordingRunner.name},
            "t_threaded": {"after": ["a"], "run": ECHO},
        }
    )

    with transaction.atomic():
        manager.fire("a", {"v": 1})
        ThreadingTaskRunner.join_all()
        assert RUNS == []
        assert HOOK_CALLS == []
        assert manager.get_instance("t_threaded#0").status == "scheduled"

    triggers.assertInstanceFinished("t_threaded#0", {"received": {"a": {"v": 1}}})
    assert [(run["instance"], run["in_transaction"]) for run in RUNS] == [("t_recorded#0", False)]
    assert [(call["trigger"], call["in_transaction"]) for call in HOOK_CALLS] == [
        ("a", False),
        ("t_threaded", False),
    ]


# -- runners ----------------------------------------------------------------------------


def test_using_wins_over_the_manager_default_and_the_setting(trigger_manager, settings):
    settings.TRIGGERS_DEFAULT_RUNNER = SettingDefaultRunner.name
    manager = ManagerWithDefaultRunner(trigger_manager.session_uid)
    manager.update_configuration(
        {"t_routed": {"after": ["a"], "run": ECHO, "using": RecordingRunner.name}}
    )

    manager.fire("a")

    assert [(run["runner"], run["instance"]) for run in RUNS] == [
        (RecordingRunner.name, "t_routed#0")
    ]


def test_the_manager_default_runner_wins_over_the_setting(trigger_manager, settings):
    settings.TRIGGERS_DEFAULT_RUNNER = SettingDefaultRunner.name
    manager = ManagerWithDefaultRunner(trigger_manager.session_uid)
    manager.update_configuration({"t_routed": {"after": ["a"], "run": ECHO}})

    manager.fire("a")

    assert [(run["runner"], run["instance"]) for run in RUNS] == [
        (ManagerDefaultRunner.name, "t_routed#0")
    ]
    assert RUNS[0]["manager_class"] is ManagerWithDefaultRunner


def test_the_default_runner_setting_is_used_without_using_or_manager_default(
    trigger_manager, settings
):
    settings.TRIGGERS_DEFAULT_RUNNER = SettingDefaultRunner.name
    trigger_manager.update_configuration({"t_routed": {"after": ["a"], "run": ECHO}})

    trigger_manager.fire("a")

    assert [(run["runner"], run["instance"]) for run in RUNS] == [
        (SettingDefaultRunner.name, "t_routed#0")
    ]


def test_the_default_runner_is_celery_when_the_setting_is_absent(
    trigger_manager, settings, monkeypatch
):
    handed: list[str] = []
    monkeypatch.setattr(
        CeleryTaskRunner, "run", lambda self, manager, instance: handed.append(instance.name)
    )
    del settings.TRIGGERS_DEFAULT_RUNNER
    trigger_manager.update_configuration({"t_routed": {"after": ["a"], "run": ECHO}})

    trigger_manager.fire("a")

    assert handed == ["t_routed#0"]


def test_a_runner_listed_only_in_the_triggers_runners_setting_is_usable_in_using(
    trigger_manager, triggers, settings
):
    module_name = "tests.runners_for_settings"
    assert module_name not in sys.modules, "the runner module must only be loaded by the setting"
    directives = {"after": ["a"], "run": ECHO, "using": "tests.settings_only"}
    settings.TRIGGERS_RUNNERS = []
    with pytest.raises(ConfigurationError):
        trigger_manager.update_configuration({"t_routed": directives})

    settings.TRIGGERS_RUNNERS = [f"{module_name}.SettingsOnlyRunner"]
    trigger_manager.update_configuration({"t_routed": directives})
    trigger_manager.fire("a")

    handed_over = importlib.import_module(module_name).HANDED_OVER
    assert (trigger_manager.session_uid, "t_routed#0") in handed_over
    assert trigger_manager.get_instance("t_routed#0").status == "scheduled"


# -- simultaneous fires ---------------------------------------------------------------


def _fire_together(session_uid: str, fires: list[tuple[str, dict[str, Any]]]) -> None:
    """Fire each ``(trigger, kwargs)`` from its own thread and connection, all at once."""
    run_together(
        [
            partial(lambda trigger, kwargs: TriggerManager(session_uid).fire(trigger, kwargs), *f)
            for f in fires
        ]
    )


def test_simultaneous_fires_of_all_after_triggers_schedule_exactly_one_instance(
    trigger_manager, triggers
):
    trigger_manager.update_configuration({"t_pair": {"after": ["a", "b"], "run": ECHO}})

    _fire_together(trigger_manager.session_uid, [("a", {"v": 1}), ("b", {"w": 1})])

    triggers.assertInstanceFinished("t_pair#0", {"received": {"a": {"v": 1}, "b": {"w": 1}}})
    triggers.assertInstanceMissing("t_pair#1")
    assert sorted(entry[0] for entry in fired_log(trigger_manager)) == ["a", "b", "t_pair"]


def test_simultaneous_and_every_fires_each_get_their_own_instance(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_each": {"after": [], "andEvery": "page", "run": ECHO}})
    count = 6

    _fire_together(trigger_manager.session_uid, [("page", {"n": n}) for n in range(count)])

    ThreadingTaskRunner.join_all()
    assert instance_names(trigger_manager) == sorted(f"t_each#{n}" for n in range(count))
    received = set()
    for n in range(count):
        triggers.assertInstanceFinished(f"t_each#{n}")
        received.add(trigger_manager.get_instance(f"t_each#{n}").result["received"]["page"]["n"])
    assert received == set(range(count))
    assert TriggerSession.objects.filter(uid=trigger_manager.session_uid).count() == 1
