"""Public names (SPEC 2), stored configuration (SPEC 3) and its validation (SPEC 4)."""

import importlib
import re
import uuid
from typing import Any

import pytest
from celery import Task

from django_triggers.exceptions import ConfigurationError, with_context
from django_triggers.manager import TriggerManager
from django_triggers.models import (
    FiredTrigger,
    TaskConfig,
    TaskInstance,
    TaskListener,
    TriggerSession,
)
from django_triggers.runners import BaseTaskRunner, CeleryTaskRunner, ThreadingTaskRunner
from django_triggers.task import TriggerTask

ECHO = "tests.Echo"


def config_of(manager: TriggerManager, name: str) -> TaskConfig:
    return TaskConfig.objects.get(session=manager.session, name=name)


def configured_names(manager: TriggerManager) -> set[str]:
    return set(TaskConfig.objects.filter(session=manager.session).values_list("name", flat=True))


def stored_state(manager: TriggerManager) -> dict[str, Any]:
    """Every row the configuration of a session can touch, as plain values."""
    session = manager.session
    return {
        "configs": list(TaskConfig.objects.filter(session=session).order_by("id").values()),
        "listeners": list(TaskListener.objects.filter(session=session).order_by("id").values()),
        "instances": TaskInstance.objects.filter(session=session).count(),
        "fired": FiredTrigger.objects.filter(session=session).count(),
    }


# -- SPEC 2: public names ----------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("django_triggers.manager", "TriggerManager"),
        ("django_triggers.task", "TriggerTask"),
        ("django_triggers.task", "TaskContext"),
        ("django_triggers.task", "MaxRetriesExceeded"),
        ("django_triggers.exceptions", "with_context"),
        ("django_triggers.exceptions", "ConfigurationError"),
        ("django_triggers.runners", "BaseTaskRunner"),
        ("django_triggers.runners", "CeleryTaskRunner"),
        ("django_triggers.runners", "ThreadingTaskRunner"),
        ("django_triggers.testing", "TriggerManagerTestCaseMixin"),
        ("django_triggers.models", "TriggerSession"),
        ("django_triggers.models", "TaskConfig"),
        ("django_triggers.models", "FiredTrigger"),
        ("django_triggers.models", "TaskInstance"),
    ],
)
def test_public_name_is_importable_from_its_documented_module(module, name):
    assert getattr(importlib.import_module(module), name) is not None


def test_configuration_error_is_a_value_error():
    assert issubclass(ConfigurationError, ValueError)


def test_trigger_task_is_a_celery_task():
    assert issubclass(TriggerTask, Task)


def test_max_retries_exceeded_is_an_exception():
    from django_triggers.task import MaxRetriesExceeded

    assert issubclass(MaxRetriesExceeded, Exception)


def test_with_context_attaches_the_context_and_returns_the_same_exception():
    exc = KeyError("subjectId")
    returned = with_context(exc, {"row": 3})
    assert returned is exc
    assert exc.context == {"row": 3}


def test_built_in_runners_have_their_documented_names():
    assert CeleryTaskRunner.name == "celery"
    assert ThreadingTaskRunner.name == "threading"
    assert issubclass(CeleryTaskRunner, BaseTaskRunner)
    assert issubclass(ThreadingTaskRunner, BaseTaskRunner)


def test_a_runner_subclass_with_a_name_registers_itself_when_created(trigger_manager):
    runner_name = f"test_configuration.late-{uuid.uuid4().hex}"
    directives = {"after": ["a"], "run": ECHO, "using": runner_name}
    with pytest.raises(ConfigurationError):
        trigger_manager.update_configuration({"t_late": directives})

    type("LateRunner", (BaseTaskRunner,), {"name": runner_name, "run": lambda *args: None})

    trigger_manager.update_configuration({"t_late": directives})
    assert config_of(trigger_manager, "t_late").using == runner_name


def test_manager_gets_or_creates_one_session_per_uid(transactional_db):
    uid = f"session-{uuid.uuid4().hex}"
    first = TriggerManager(uid)
    second = TriggerManager(uid)
    assert first.session.pk == second.session.pk
    assert TriggerSession.objects.filter(uid=uid).count() == 1
    assert TriggerSession.objects.get(uid=uid).uid == uid


# -- adding and replacing tasks ----------------------------------------------------


def test_configured_task_is_stored_with_its_directives(trigger_manager):
    trigger_manager.update_configuration(
        {
            "t_import": {
                "after": ["firstPage", "complete"],
                "run": ECHO,
                "unless": ["cancelled"],
                "withParams": {"firstPage": {"source": "web"}},
                "using": "threading",
            }
        }
    )
    config = config_of(trigger_manager, "t_import")
    assert set(config.after) == {"firstPage", "complete"}
    assert config.and_every == ""
    assert list(config.unless) == ["cancelled"]
    assert config.run == ECHO
    assert config.using == "threading"
    assert config.with_params == {"firstPage": {"source": "web"}}
    assert config.extras == {}


@pytest.mark.parametrize(
    "after",
    [("a", "b"), {"a", "b"}, frozenset({"a", "b"}), ["a", "b"]],
    ids=["tuple", "set", "frozenset", "list"],
)
def test_after_may_be_a_list_set_or_tuple(trigger_manager, after):
    trigger_manager.update_configuration({"t_any": {"after": after, "run": ECHO}})
    assert set(config_of(trigger_manager, "t_any").after) == {"a", "b"}


def test_new_tasks_are_added_to_those_already_configured(trigger_manager):
    trigger_manager.update_configuration({"t_one": {"after": ["a"], "run": ECHO}})
    trigger_manager.update_configuration({"t_two": {"after": ["b"], "run": ECHO}})
    assert configured_names(trigger_manager) == {"t_one", "t_two"}


def test_a_task_with_the_same_name_is_replaced_and_the_others_are_kept(trigger_manager):
    trigger_manager.update_configuration(
        {
            "t_one": {"after": ["a"], "run": ECHO, "color": "red"},
            "t_two": {"after": ["b"], "run": ECHO},
        }
    )
    trigger_manager.update_configuration(
        {"t_one": {"after": ["c", "d"], "run": "tests.ReturnNothing"}}
    )

    assert configured_names(trigger_manager) == {"t_one", "t_two"}
    assert TaskConfig.objects.filter(session=trigger_manager.session, name="t_one").count() == 1
    replaced = config_of(trigger_manager, "t_one")
    assert set(replaced.after) == {"c", "d"}
    assert replaced.run == "tests.ReturnNothing"
    assert replaced.extras == {}
    kept = config_of(trigger_manager, "t_two")
    assert set(kept.after) == {"b"}
    assert kept.run == ECHO


def test_a_replaced_task_listens_to_its_new_triggers_only(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_one": {"after": ["old"], "run": ECHO}})
    trigger_manager.update_configuration({"t_one": {"after": ["new"], "run": ECHO}})

    assert trigger_manager.fire("old") == []
    triggers.assertInstanceMissing("t_one#0")
    trigger_manager.fire("new", {"v": 1})
    triggers.assertInstanceFinished("t_one#0", {"received": {"new": {"v": 1}}})


def test_configuration_sessions_are_independent(trigger_manager):
    other = TriggerManager(f"other-{uuid.uuid4().hex}")
    trigger_manager.update_configuration({"t_one": {"after": ["a"], "run": ECHO}})
    other.update_configuration({"t_one": {"after": ["b"], "run": ECHO}})
    assert set(config_of(trigger_manager, "t_one").after) == {"a"}
    assert set(config_of(other, "t_one").after) == {"b"}


def test_unknown_directives_are_kept_in_extras(trigger_manager):
    trigger_manager.update_configuration(
        {
            "t_extra": {
                "after": ["a"],
                "run": ECHO,
                "priority": 5,
                "notify": {"email": "ops@example.com", "levels": ["ERROR"]},
            }
        }
    )
    assert config_of(trigger_manager, "t_extra").extras == {
        "priority": 5,
        "notify": {"email": "ops@example.com", "levels": ["ERROR"]},
    }


def test_and_every_joins_after(trigger_manager):
    trigger_manager.update_configuration(
        {"t_each": {"after": ["profile"], "andEvery": "pageReceived", "run": ECHO}}
    )
    config = config_of(trigger_manager, "t_each")
    assert config.and_every == "pageReceived"
    assert set(config.after) == {"profile", "pageReceived"}


def test_empty_after_is_allowed_with_and_every(trigger_manager):
    trigger_manager.update_configuration(
        {"t_each": {"after": [], "andEvery": "pageReceived", "run": ECHO}}
    )
    assert list(config_of(trigger_manager, "t_each").after) == ["pageReceived"]


def test_a_runner_named_in_using_is_stored(trigger_manager):
    trigger_manager.update_configuration(
        {"t_celery": {"after": ["a"], "run": ECHO, "using": "celery"}}
    )
    assert config_of(trigger_manager, "t_celery").using == "celery"


def test_configuring_a_task_creates_and_schedules_nothing(trigger_manager, triggers):
    trigger_manager.fire("a", {"v": 1})
    trigger_manager.fire("b", {"v": 2})

    trigger_manager.update_configuration({"t_late": {"after": ["a", "b"], "run": ECHO}})

    ThreadingTaskRunner.join_all()
    assert TaskInstance.objects.filter(session=trigger_manager.session).count() == 0
    triggers.assertInstanceMissing("t_late#0")
    triggers.assertUnresolvedTasks(["t_late"])


def test_removing_a_cycle_by_replacing_a_task_in_the_same_mapping_is_accepted(trigger_manager):
    trigger_manager.update_configuration({"t_a": {"after": ["t_b"], "run": ECHO}})
    trigger_manager.update_configuration(
        {
            "t_a": {"after": ["start"], "run": ECHO},
            "t_b": {"after": ["t_a"], "run": ECHO},
        }
    )
    assert set(config_of(trigger_manager, "t_a").after) == {"start"}
    assert set(config_of(trigger_manager, "t_b").after) == {"t_a"}


def test_a_chain_of_cascades_without_a_cycle_is_accepted(trigger_manager):
    trigger_manager.update_configuration({"t_a": {"after": ["start"], "run": ECHO}})
    trigger_manager.update_configuration(
        {
            "t_b": {"after": ["t_a"], "run": ECHO},
            "t_c": {"after": ["t_a", "t_b"], "run": ECHO},
        }
    )
    assert configured_names(trigger_manager) == {"t_a", "t_b", "t_c"}


# -- invalid configuration ---------------------------------------------------------


def _task(**directives: Any) -> dict[str, Any]:
    """Valid directives of a task, overridden (or removed, with ``...``) by ``directives``."""
    task = {"after": ["start"], "run": ECHO}
    task.update(directives)
    return {key: value for key, value in task.items() if value is not ...}


INVALID = [
    # (earlier update_configuration calls, the invalid mapping, tasks one of which
    #  the message names, directives one of which the message names)
    pytest.param([], {"t_broken": _task(after=...)}, ["t_broken"], ["after"], id="missing-after"),
    pytest.param(
        [],
        {"t_broken": _task(after=..., andEvery="page")},
        ["t_broken"],
        ["after"],
        id="missing-after-with-andEvery",
    ),
    pytest.param([], {"t_broken": _task(run=...)}, ["t_broken"], ["run"], id="missing-run"),
    pytest.param([], {"t_broken": _task(after="start")}, ["t_broken"], ["after"], id="after-str"),
    pytest.param(
        [], {"t_broken": _task(after={"start": 1})}, ["t_broken"], ["after"], id="after-dict"
    ),
    pytest.param(
        [], {"t_broken": _task(after=["start", 1])}, ["t_broken"], ["after"], id="after-int-item"
    ),
    pytest.param(
        [],
        {"t_broken": _task(after=["start", None])},
        ["t_broken"],
        ["after"],
        id="after-none-item",
    ),
    pytest.param([], {"t_broken": _task(after=[])}, ["t_broken"], ["after"], id="after-empty"),
    pytest.param(
        [], {"t_broken": _task(after=())}, ["t_broken"], ["after"], id="after-empty-tuple"
    ),
    pytest.param([], {"t_broken": _task(run=42)}, ["t_broken"], ["run"], id="run-int"),
    pytest.param([], {"t_broken": _task(run=["tests.Echo"])}, ["t_broken"], ["run"], id="run-list"),
    pytest.param(
        [], {"t_broken": _task(andEvery=["page"])}, ["t_broken"], ["andEvery"], id="andEvery-list"
    ),
    pytest.param(
        [], {"t_broken": _task(andEvery=7)}, ["t_broken"], ["andEvery"], id="andEvery-int"
    ),
    pytest.param(
        [], {"t_broken": _task(unless="cancelled")}, ["t_broken"], ["unless"], id="unless-str"
    ),
    pytest.param(
        [],
        {"t_broken": _task(unless={"cancelled": True})},
        ["t_broken"],
        ["unless"],
        id="unless-dict",
    ),
    pytest.param(
        [],
        {"t_broken": _task(unless=["cancelled", 3])},
        ["t_broken"],
        ["unless"],
        id="unless-int-item",
    ),
    pytest.param(
        [],
        {"t_broken": _task(withParams=[["start", {}]])},
        ["t_broken"],
        ["withParams"],
        id="withParams-list",
    ),
    pytest.param(
        [],
        {"t_broken": _task(withParams="start")},
        ["t_broken"],
        ["withParams"],
        id="withParams-str",
    ),
    pytest.param(
        [],
        {"t_broken": _task(withParams={"start": 1})},
        ["t_broken"],
        ["withParams"],
        id="withParams-dict-of-int",
    ),
    pytest.param(
        [],
        {"t_broken": _task(withParams={"start": {"a": 1}, "other": ["x"]})},
        ["t_broken"],
        ["withParams"],
        id="withParams-dict-of-list",
    ),
    pytest.param(
        [],
        {"t_broken": _task(using="no-such-runner")},
        ["t_broken"],
        ["using"],
        id="using-unknown",
    ),
    pytest.param([], {"t_broken": _task(using=3)}, ["t_broken"], ["using"], id="using-int"),
    pytest.param(
        [],
        {"t_broken": _task(run="tests.NoSuchTask")},
        ["t_broken"],
        ["run"],
        id="run-not-registered",
    ),
    pytest.param(
        [],
        {"t_broken": _task(run="tests.plain_celery_task")},
        ["t_broken"],
        ["run"],
        id="run-not-a-trigger-task",
    ),
    pytest.param(
        [],
        {"t_broken": _task(after=["start", "t_broken"])},
        ["t_broken"],
        ["after"],
        id="after-names-itself",
    ),
    pytest.param(
        [],
        {"t_broken": _task(after=[], andEvery="t_broken")},
        ["t_broken"],
        ["andEvery"],
        id="andEvery-names-itself",
    ),
    pytest.param(
        [],
        {"t_broken": _task(after=["t_other"]), "t_other": _task(after=["t_broken"])},
        ["t_broken", "t_other"],
        ["after"],
        id="cycle-of-two",
    ),
    pytest.param(
        [],
        {
            "t_broken": _task(after=["t_middle"]),
            "t_middle": _task(after=["start", "t_last"]),
            "t_last": _task(after=["t_broken"]),
        },
        ["t_broken", "t_middle", "t_last"],
        ["after"],
        id="cycle-of-three",
    ),
    pytest.param(
        [],
        {
            "t_broken": _task(after=[], andEvery="t_other"),
            "t_other": _task(after=["t_broken"]),
        },
        ["t_broken", "t_other"],
        ["after", "andEvery"],
        id="cycle-through-andEvery",
    ),
    pytest.param(
        [{"t_earlier": _task(after=["t_broken"])}],
        {"t_broken": _task(after=["t_earlier"])},
        ["t_broken"],
        ["after"],
        id="cycle-of-two-through-an-earlier-task",
    ),
    pytest.param(
        [{"t_first": _task(after=["t_broken"]), "t_second": _task(after=["t_first"])}],
        {"t_broken": _task(after=["start", "t_second"])},
        ["t_broken"],
        ["after"],
        id="cycle-of-three-through-earlier-tasks",
    ),
    pytest.param(
        [{"t_first": _task(after=["t_broken"])}, {"t_second": _task(after=["t_first"])}],
        {"t_broken": _task(after=["t_second"])},
        ["t_broken"],
        ["after"],
        id="cycle-of-three-through-two-earlier-calls",
    ),
    pytest.param(
        [],
        {"t_broken": _task(color=object())},
        ["t_broken"],
        ["color"],
        id="extra-object",
    ),
    pytest.param(
        [],
        {"t_broken": _task(tags={"a", "b"})},
        ["t_broken"],
        ["tags"],
        id="extra-set",
    ),
    pytest.param(
        [],
        {"t_broken": _task(weight={"value": float("nan")})},
        ["t_broken"],
        ["weight"],
        id="extra-nan",
    ),
    pytest.param(
        [],
        {"t_broken": _task(withParams={"start": {"when": object()}})},
        ["t_broken"],
        ["withParams"],
        id="withParams-object",
    ),
    pytest.param(
        [],
        {"t_broken": _task(withParams={"start": {"tags": {"a"}}})},
        ["t_broken"],
        ["withParams"],
        id="withParams-set",
    ),
]


def _assert_names_task_and_directive(
    error: ConfigurationError, tasks: list[str], directives: list[str]
) -> None:
    message = str(error)
    assert any(task in message for task in tasks), message
    assert any(re.search(rf"\b{re.escape(d)}\b", message) for d in directives), message


@pytest.mark.parametrize(("earlier", "mapping", "tasks", "directives"), INVALID)
def test_invalid_configuration_raises_naming_task_and_directive_and_stores_nothing(
    trigger_manager, earlier, mapping, tasks, directives
):
    for configuration in earlier:
        trigger_manager.update_configuration(configuration)
    before = stored_state(trigger_manager)

    with pytest.raises(ConfigurationError) as caught:
        trigger_manager.update_configuration(mapping)

    _assert_names_task_and_directive(caught.value, tasks, directives)
    assert stored_state(trigger_manager) == before


@pytest.mark.parametrize(("earlier", "mapping", "tasks", "directives"), INVALID)
def test_invalid_task_after_valid_ones_in_the_same_mapping_stores_none_of_them(
    trigger_manager, earlier, mapping, tasks, directives
):
    trigger_manager.update_configuration(
        {"t_kept": _task(after=["a"], unless=["stop"], withParams={"a": {"k": 1}})}
    )
    for configuration in earlier:
        trigger_manager.update_configuration(configuration)
    before = stored_state(trigger_manager)

    with pytest.raises(ConfigurationError) as caught:
        trigger_manager.update_configuration(
            {
                "t_kept": _task(after=["b", "c"], run="tests.ReturnNothing"),
                "t_fresh": _task(after=["d"]),
                **mapping,
            }
        )

    _assert_names_task_and_directive(caught.value, tasks, directives)
    assert stored_state(trigger_manager) == before
    assert set(config_of(trigger_manager, "t_kept").after) == {"a"}


def test_a_rejected_configuration_leaves_the_earlier_tasks_working(trigger_manager, triggers):
    trigger_manager.update_configuration({"t_kept": {"after": ["a"], "run": ECHO}})
    with pytest.raises(ConfigurationError):
        trigger_manager.update_configuration(
            {
                "t_kept": {"after": ["b"], "run": ECHO},
                "t_broken": {"after": ["a"], "run": "tests.plain_celery_task"},
            }
        )

    trigger_manager.fire("b")
    triggers.assertInstanceMissing("t_kept#0")
    trigger_manager.fire("a", {"v": 1})
    triggers.assertInstanceFinished("t_kept#0", {"received": {"a": {"v": 1}}})
    triggers.assertInstanceMissing("t_broken#0")
