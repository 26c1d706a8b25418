"""What no database can store, or stores differently, is refused before any write.

Names fit their columns by construction, text holds no NUL character or lone
surrogate, JSON values are nested at most 30 levels and have no two keys
JSON would write alike. Each refusal names the culprit, and leaves every row
as it was, on every database.
"""

import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_triggers.configuration import MAX_TASK_NAME_LENGTH, MAX_WITHIN
from django_triggers.exceptions import ConfigurationError
from django_triggers.manager import TriggerManager
from django_triggers.models import (
    FiredTrigger,
    TaskConfig,
    TaskInstance,
    TaskListener,
    TriggerSession,
)
from tests.tasks import nested

ECHO = "tests.Echo"
NUL = "a\x00b"
SURROGATE = "a\udc80b"

pytestmark = pytest.mark.django_db(transaction=True)


def all_rows() -> dict[str, Any]:
    """Every row of the library, as plain values."""
    return {
        model.__name__: list(model.objects.order_by("pk").values())
        for model in (TriggerSession, TaskConfig, TaskListener, FiredTrigger, TaskInstance)
    }


@pytest.fixture
def manager(trigger_manager: TriggerManager) -> TriggerManager:
    trigger_manager.update_configuration(
        {"t_a": {"after": ["start"], "run": ECHO}, "t_b": {"after": ["t_a", "other"], "run": ECHO}}
    )
    return trigger_manager


# -- names fit their columns -------------------------------------------------------------------


def test_a_task_name_over_the_limit_is_refused_naming_the_limit(manager):
    before = all_rows()
    name = "t" * (MAX_TASK_NAME_LENGTH + 1)

    with pytest.raises(ConfigurationError, match=f"the limit is {MAX_TASK_NAME_LENGTH}") as info:
        manager.update_configuration({name: {"after": ["start"], "run": ECHO}})

    assert info.value.task == name[:80]
    assert all_rows() == before


def test_a_task_name_at_the_limit_keeps_every_derived_name_whole(manager, triggers):
    name = "t" * MAX_TASK_NAME_LENGTH
    manager.update_configuration(
        {name: {"after": [], "andEvery": "tick", "run": ECHO, "within": 3600}}
    )

    for _ in range(11):
        manager.fire("tick")

    triggers.assertInstanceFinished(f"{name}#10")
    names = TaskInstance.objects.filter(session=manager.session, task_name=name)
    assert sorted(names.values_list("number", flat=True)) == list(range(11))
    assert all(instance.name == f"{name}#{instance.number}" for instance in names)


@pytest.mark.parametrize("directive", ["after", "unless", "andEvery", "run", "using"])
def test_a_name_over_its_column_is_refused_naming_the_directive(manager, directive):
    long_name = "n" * 256
    directives: dict[str, Any] = {"after": ["start"], "run": ECHO}
    directives[directive] = [long_name] if directive in ("after", "unless") else long_name
    before = all_rows()

    with pytest.raises(ConfigurationError, match="the limit is 255") as info:
        manager.update_configuration({"t_long": directives})

    assert info.value.directive == directive
    assert all_rows() == before


@pytest.mark.parametrize(
    ("call", "culprit"),
    [
        pytest.param(lambda m: m.fire("x" * 256), "a trigger name", id="trigger-name"),
        pytest.param(lambda m: m.fire("start", event_id="e" * 256), "an event id", id="event-id"),
        pytest.param(lambda m: TriggerManager("u" * 256), "a session uid", id="session-uid"),
    ],
)
def test_a_name_over_255_characters_is_refused(manager, call, culprit):
    before = all_rows()

    with pytest.raises(ValueError, match=f"{culprit} .* the limit is 255"):
        call(manager)

    assert all_rows() == before


# -- text a database cannot store ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "problem"), [(NUL, "NUL character"), (SURROGATE, "lone surrogate")]
)
@pytest.mark.parametrize(
    ("call", "culprit"),
    [
        pytest.param(lambda m, bad: m.fire(bad), "a trigger name", id="trigger-name"),
        pytest.param(lambda m, bad: m.fire("start", {"k": bad}), "value at k", id="kwargs-value"),
        pytest.param(
            lambda m, bad: m.fire("start", {"k": [{"deep": bad}]}),
            "value at k[0].deep",
            id="nested-kwargs-value",
        ),
        pytest.param(lambda m, bad: m.fire("start", {bad: 1}), "has a key", id="kwargs-key"),
        pytest.param(lambda m, bad: m.fire("start", event_id=bad), "an event id", id="event-id"),
        pytest.param(lambda m, bad: TriggerManager(bad), "a session uid", id="session-uid"),
        pytest.param(
            lambda m, bad: m.update_configuration({bad: {"after": ["start"], "run": ECHO}}),
            "the task name",
            id="task-name",
        ),
        pytest.param(
            lambda m, bad: m.update_configuration({"t_c": {"after": [bad], "run": ECHO}}),
            "'after'",
            id="after",
        ),
        pytest.param(
            lambda m, bad: m.update_configuration(
                {"t_c": {"after": ["start"], "unless": [bad], "run": ECHO}}
            ),
            "'unless'",
            id="unless",
        ),
        pytest.param(
            lambda m, bad: m.update_configuration(
                {"t_c": {"after": [], "andEvery": bad, "run": ECHO}}
            ),
            "'andEvery'",
            id="andEvery",
        ),
        pytest.param(
            lambda m, bad: m.update_configuration(
                {"t_c": {"after": ["start"], "run": ECHO, "withParams": {"start": {"p": bad}}}}
            ),
            "'withParams'",
            id="withParams",
        ),
        pytest.param(
            lambda m, bad: m.update_configuration(
                {"t_c": {"after": ["start"], "run": ECHO, "custom": {"x": bad}}}
            ),
            "'custom'",
            id="extras",
        ),
        pytest.param(
            lambda m, bad: m.update_instance_metadata("t_b#0", {"note": bad}),
            "the metadata",
            id="metadata",
        ),
    ],
)
def test_text_no_database_can_store_is_refused_naming_where_it_is(
    manager, call, culprit, bad, problem
):
    manager.fire("other")  # t_b#0 exists, waiting for t_a
    before = all_rows()

    with pytest.raises(ValueError, match=problem) as info:
        call(manager, bad)

    assert culprit in str(info.value)
    assert all_rows() == before


def test_a_nul_in_a_skips_result_is_refused(manager, triggers):
    manager.update_configuration({"t_f": {"after": ["start"], "run": "tests.Fail"}})
    manager.fire("start")
    triggers.assertInstanceFailed("t_f#0", ValueError)
    before = all_rows()

    with pytest.raises(ValueError, match="NUL character"):
        manager.skip_failed_instance("t_f#0", cascade=True, result={"r": NUL})

    assert all_rows() == before


# -- JSON values ----------------------------------------------------------------------------------


def test_kwargs_nested_5000_deep_are_refused_naming_the_limit(manager):
    before = all_rows()

    with pytest.raises(ValueError, match="nested deeper than 30 levels"):
        manager.fire("start", {"tree": nested(5000)})

    assert all_rows() == before


def test_extras_nested_5000_deep_are_refused_naming_the_directive(manager):
    before = all_rows()

    with pytest.raises(ConfigurationError, match="nested deeper than 30 levels") as info:
        manager.update_configuration(
            {"t_c": {"after": ["start"], "run": ECHO, "custom": nested(5000)}}
        )

    assert info.value.directive == "custom"
    assert all_rows() == before


def test_keys_json_would_write_alike_are_refused_naming_both(manager):
    before = all_rows()

    with pytest.raises(ValueError, match="keys 1 and '1'"):
        manager.fire("start", {1: "a", "1": "b"})

    assert all_rows() == before


@pytest.mark.parametrize("innermost", [[], {}, 1, "text"])
def test_kwargs_of_31_levels_are_refused_whatever_the_innermost_value(manager, innermost):
    tree: Any = innermost
    lists = 29 if isinstance(innermost, list | dict) else 30
    for _ in range(lists):
        tree = [tree]
    before = all_rows()

    # The kwargs' own mapping, then the lists, then the innermost container if any: 31.
    with pytest.raises(ValueError, match="nested deeper than 30 levels"):
        manager.fire("start", {"tree": tree})

    assert all_rows() == before


def test_kwargs_nested_30_deep_are_stored_whole(manager, triggers):
    tree = nested(29)
    manager.fire("start", {"tree": tree})

    assert manager.get_instance("t_a#0").kwargs == {"start": {"tree": tree}}


# -- configuration ------------------------------------------------------------------------------


def test_a_chain_of_1500_tasks_listed_last_first_is_accepted(trigger_manager):
    chain = {
        f"t{i}": {"after": [f"t{i - 1}" if i else "start"], "run": ECHO}
        for i in reversed(range(1500))
    }
    trigger_manager.update_configuration(chain)
    trigger_manager.update_configuration({"t_end": {"after": ["t1499"], "run": ECHO}})

    assert TaskConfig.objects.filter(session=trigger_manager.session).count() == 1501


def test_a_cycle_at_the_end_of_a_long_chain_is_still_found(trigger_manager):
    chain = {
        f"t{i}": {"after": [f"t{i - 1}" if i else "t1499"], "run": ECHO}
        for i in reversed(range(1500))
    }

    with pytest.raises(ConfigurationError, match="cycle"):
        trigger_manager.update_configuration(chain)

    assert not TaskConfig.objects.filter(session=trigger_manager.session).exists()


@pytest.mark.parametrize("within", [MAX_WITHIN + 1, 1e12, 1e300])
def test_a_within_beyond_100_years_is_refused(manager, within):
    before = all_rows()

    with pytest.raises(ConfigurationError, match="at most 3,153,600,000") as info:
        manager.update_configuration({"t_c": {"after": ["start"], "run": ECHO, "within": within}})

    assert info.value.directive == "within"
    assert all_rows() == before


def test_a_within_of_100_years_sets_a_deadline(manager):
    manager.update_configuration(
        {"t_c": {"after": ["start", "later"], "run": ECHO, "within": MAX_WITHIN}}
    )

    manager.fire("start")

    assert manager.get_instance("t_c#0").deadline is not None


# -- the database is never asked to cut text short -------------------------------------------


@pytest.mark.postgres
def test_no_statement_casts_text_to_a_bounded_type(manager, triggers):
    with CaptureQueriesContext(connection) as queries:
        manager.fire("other", {"o": 1})
        manager.fire("start", {"s": uuid.uuid4().hex})
        triggers.assertInstanceFinished("t_b#0")

    statements = [query["sql"] for query in queries.captured_queries]
    assert statements
    assert not [sql for sql in statements if "varchar(" in sql.lower()]


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda m: TriggerManager.for_existing_session(NUL), id="for-existing-session"),
        pytest.param(lambda m: m.get_instance(NUL), id="get-instance"),
        pytest.param(lambda m: m.replay_failed_instance(NUL), id="replay"),
        pytest.param(lambda m: m.skip_failed_instance(NUL), id="skip"),
        pytest.param(lambda m: list(m.refire_from(NUL)), id="refire-from"),
    ],
)
def test_a_nul_in_a_name_to_look_up_is_refused_before_the_lookup(manager, call):
    with pytest.raises(ValueError, match="NUL character"):
        call(manager)
