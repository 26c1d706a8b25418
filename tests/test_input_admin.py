"""What the admin's action forms do with input they cannot use: a form error, never a 500."""

import html

import pytest
from django.db import DataError

from django_triggers.admin import pretty_json
from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance, TriggerSession
from tests.test_admin import (  # noqa: F401  (fixtures)
    fail,
    failed_fixture,
    instance_url,
    manager_fixture,
    post_action,
    session_url,
    set_log_level,
    status_of,
    task,
)
from tests.test_commands import database_rows

DEEP_KWARGS = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"


def lose_manager_class(manager):
    """Record on the session a manager class this process cannot import."""
    TriggerSession.objects.filter(pk=manager.session.pk).update(manager_class="nowhere.Missing")


def fire_form(client, manager, kwargs="", trigger="a"):
    return client.post(
        session_url(manager.session, "fire"),
        {"trigger_name": trigger, "kwargs": kwargs, "event_id": "admin-1", "apply": "Fire"},
    )


def assert_form_error(response, text):
    """The action's page again (not a redirect, not a 500), its form showing ``text``."""
    assert response.status_code == 200
    errors = [str(error) for field in response.context["form"].errors.values() for error in field]
    assert any(text in error for error in errors), errors
    assert html.escape(text) in response.content.decode()


# -- firing a trigger -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param(
            DEEP_KWARGS,
            "The kwargs is nested deeper than can be read: 5001 levels",
            id="unreadable",
        ),
        pytest.param(
            '{"value": 1, "value": 2}',
            "The kwargs names the key 'value' twice in the top-level object",
            id="key-named-twice",
        ),
        pytest.param(
            '{"a": "x\\u0000"}', "the value at a holds a NUL character", id="nul-character"
        ),
        pytest.param(
            '{"a": "\\udc80"}',
            "the value at a holds a lone surrogate (U+DC80)",
            id="lone-surrogate",
        ),
        pytest.param(
            '{"a": ' + "[" * 150 + "]" * 150 + "}",
            "nested deeper than 30 levels",
            id="too-deep-to-store",
        ),
    ],
)
def test_fire_form_with_kwargs_it_cannot_use_shows_the_error_and_fires_nothing(
    admin_client, manager, kwargs, error
):
    before = database_rows()

    response = fire_form(admin_client, manager, kwargs)

    assert_form_error(response, error)
    assert database_rows() == before


def test_fire_form_shows_a_refusal_by_the_database_as_a_form_error(
    admin_client, manager, monkeypatch
):
    def refused_by_the_database(*args, **kwargs):
        raise DataError("value too long for type character varying(255)")

    monkeypatch.setattr(TriggerManager, "fire", refused_by_the_database)
    before = database_rows()

    response = fire_form(admin_client, manager)

    assert_form_error(response, "the database refused a value: value too long")
    assert database_rows() == before


# -- replaying --------------------------------------------------------------------------


def test_replay_form_with_a_nul_character_in_replacement_kwargs_replays_nothing(
    admin_client, failed, manager
):
    before = database_rows()

    response = admin_client.post(
        instance_url(failed, "replay"),
        {"replacement_kwargs": '{"a": {"note": "\\u0000"}}', "apply": "Replay"},
    )

    assert_form_error(response, "t_a#0: the replacement kwargs for 't_a#0' cannot be stored")
    assert database_rows() == before


def test_replay_form_with_replacement_kwargs_nested_thousands_deep_replays_nothing(
    admin_client, failed, manager
):
    before = database_rows()

    response = admin_client.post(
        instance_url(failed, "replay"), {"replacement_kwargs": DEEP_KWARGS, "apply": "Replay"}
    )

    assert_form_error(response, "Replacement kwargs is nested deeper than can be read")
    assert database_rows() == before


def test_replay_action_refused_for_one_failed_instance_replays_none_of_them(
    admin_client, failed, manager
):
    other = TriggerManager("session-2")
    other.update_configuration({"t_a": task(["a"])})
    other.fire("a")
    other_failed = fail(other, "t_a#0")
    lose_manager_class(other)
    before = database_rows()

    response = post_action(admin_client, "replay_instances", [failed, other_failed], apply="Replay")

    assert_form_error(response, "t_a#0: ")
    assert "nowhere.Missing" in response.content.decode()
    assert database_rows() == before


def test_replay_page_of_an_instance_whose_manager_class_is_gone_shows_the_error(
    admin_client, failed, manager
):
    lose_manager_class(manager)
    before = database_rows()

    response = admin_client.post(instance_url(failed, "replay"), {"apply": "Replay"})

    assert_form_error(response, "nowhere.Missing")
    assert database_rows() == before


def test_replay_action_still_leaves_instances_that_are_not_failed_and_replays_the_others(
    admin_client, failed, manager
):
    manager.update_configuration({"t_c": task(["c"])})
    manager.fire("c")
    scheduled = manager.get_instance("t_c#0")

    response = post_action(admin_client, "replay_instances", [scheduled, failed], apply="Replay")

    assert response.status_code == 302
    assert status_of(manager, "t_a#0") == TaskInstance.REPLAYED
    assert status_of(manager, "t_c#0") == TaskInstance.SCHEDULED


# -- skipping ---------------------------------------------------------------------------


def test_skip_form_with_a_result_naming_a_key_twice_skips_nothing(admin_client, failed, manager):
    before = database_rows()

    response = admin_client.post(
        instance_url(failed, "skip"),
        {"cascade": "on", "result": '{"id": 1, "id": 2}', "apply": "Skip"},
    )

    assert_form_error(response, "The result names the key 'id' twice in the top-level object")
    assert database_rows() == before


def test_skip_form_with_a_nul_character_in_the_result_skips_nothing(admin_client, failed, manager):
    before = database_rows()

    response = admin_client.post(
        instance_url(failed, "skip"),
        {"cascade": "on", "result": '{"note": "\\u0000"}', "apply": "Skip"},
    )

    assert_form_error(response, "the value at note holds a NUL character")
    assert database_rows() == before


def test_skip_action_refused_for_a_failed_instance_shows_the_error_and_skips_nothing(
    admin_client, failed, manager
):
    lose_manager_class(manager)
    before = database_rows()

    response = post_action(admin_client, "skip_instances", [failed], apply="Skip")

    assert_form_error(response, "nowhere.Missing")
    assert database_rows() == before


# -- resolving logs ---------------------------------------------------------------------


def test_resolve_logs_page_shows_a_refusal_as_a_form_error(admin_client, failed, manager):
    set_log_level(failed)
    lose_manager_class(manager)
    before = database_rows()

    response = admin_client.post(instance_url(failed, "resolve_logs"), {"apply": "Mark"})

    assert_form_error(response, "nowhere.Missing")
    assert database_rows() == before


# -- showing what is stored -------------------------------------------------------------


def test_stored_json_holding_a_lone_surrogate_is_shown_escaped():
    shown = pretty_json({"note": "caf\u00e9 \ud800"})

    assert shown == '{\n  "note": "caf\u00e9 \\ud800"\n}'
    shown.encode("utf-8")
