"""The session page of a big session: bounded in size and queries, what needs attention first.

The session (2,000 tasks, 5,000 instances, 4,800 fires, among small
sessions) is written with ``bulk_create`` by :mod:`bench.big_session`, the
one ``python -m bench.admin_page`` measures.
"""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bench.big_session import build_big_session, build_small_sessions
from django_triggers import admin as triggers_admin
from django_triggers.manager import TriggerManager
from django_triggers.models import TaskConfig, TaskInstance

#: The most HTML the page of the big session may weigh.
HTML_LIMIT = 500_000
#: The statements of one request of the session page, whatever the session's
#: size: the user's session and user, the session twice (the admin's object,
#: the page's), then the configurations, the instances' few columns, the rows
#: listed, the fires' count and page, the instances they scheduled, the
#: triggers fired and the status of each task's latest instance.
QUERIES = 12


@pytest.fixture(scope="module")
def big(django_db_setup, django_db_blocker):
    """The big session, built once for the module and deleted after it."""
    with django_db_blocker.unblock():
        build_small_sessions(3, prefix="before")
        big = build_big_session("big-session")
        build_small_sessions(3, prefix="after")
        yield big
        from django_triggers.models import TriggerSession

        TriggerSession.objects.all().delete()


def page_url(session):
    return reverse("admin:django_triggers_triggersession_change", args=[session.pk])


def get_page(client, session, **params):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(page_url(session), params)
    assert response.status_code == 200
    return response, queries


def test_the_page_of_a_big_session_is_bounded_in_size_and_queries(admin_client, big):
    get_page(admin_client, big.session)  # the first request reads the content types

    response, queries = get_page(admin_client, big.session)

    assert len(response.content) <= HTML_LIMIT
    assert len(queries.captured_queries) == QUERIES


def test_a_small_session_takes_the_same_queries(admin_client, big):
    small = TriggerManager("small-one")
    small.update_configuration({"t_a": {"after": ["a"], "run": "tests.Echo"}})
    small.fire("a")
    get_page(admin_client, small.session)

    _, queries = get_page(admin_client, small.session)

    assert len(queries.captured_queries) == QUERIES


def test_every_failed_instance_is_listed_first_with_the_counts(admin_client, big):
    response, _ = get_page(admin_client, big.session)

    attention = response.context["attention"]
    assert attention["failed"].total == len(big.failed) == 30
    assert sorted(row["instance"].name for row in attention["failed"].rows) == sorted(
        f"{name}#0" for name in big.failed
    )
    html = response.content.decode()
    assert html.index('id="attention"') < html.index('id="workflow"')
    assert html.index('id="attention-failed"') < html.index('id="attention-waiting"')
    assert "Failed (30)" in html
    assert "Waiting for triggers (200)" in html
    assert "Tasks without an instance yet (300)" in html
    assert attention["waiting"].hidden == 200 - triggers_admin.ATTENTION_LIMIT
    assert "See all 200" in html
    assert "See all 300" in html


def test_the_links_for_what_is_cut_list_all_of_it(admin_client, big):
    attention = get_page(admin_client, big.session)[0].context["attention"]

    waiting = admin_client.get(attention["waiting"].url)
    not_started = admin_client.get(attention["not_started"].url)

    assert waiting.context["cl"].result_count == 200
    assert not_started.context["cl"].result_count == 300
    assert {config.session_id for config in not_started.context["cl"].result_list} == {
        big.session.pk
    }


def test_long_lists_come_a_page_at_a_time_with_their_counts(admin_client, big):
    first, _ = get_page(admin_client, big.session)
    last, _ = get_page(admin_client, big.session, instances_page=50, timeline_page=96)

    assert len(first.context["instance_rows"]) == triggers_admin.INSTANCES_LIMIT
    assert first.context["instances_page"].count == 50
    assert "Page 1 of 50 (5000 in all)" in first.content.decode()
    assert len(first.context["timeline"]) == triggers_admin.TIMELINE_LIMIT
    # The first page of fires holds the latest ones.
    assert first.context["timeline"][-1]["number"] == 4800
    assert last.context["timeline"][0]["number"] == 1
    assert last.context["instances_page"].next_url is None
    assert first.context["configuration_hidden"] == 2000 - triggers_admin.CONFIGURATION_LIMIT
    assert first.context["configuration_json"] is None


def test_instances_and_tasks_are_in_workflow_order(admin_client, big):
    response, _ = get_page(admin_client, big.session)

    shown = [row["instance"].task_name for row in response.context["instance_rows"]]
    configured = [task["name"] for task in response.context["configuration"]]
    # The twenty tasks after ``start`` come first, in the order configured.
    first_step = list(
        TaskConfig.objects.filter(session=big.session).order_by("id").values_list("name", flat=True)
    )[:20]
    assert configured[:20] == first_step
    assert shown[0] == first_step[0]
    assert configured != sorted(configured)


def test_the_diagram_of_a_big_workflow_shows_what_needs_attention_and_links_to_all(
    admin_client, big
):
    response, _ = get_page(admin_client, big.session)

    part = response.context["graph_focus"]
    assert not part.is_whole
    assert part.tasks_total == 2000
    html = response.content.decode()
    start = html.index('<svg xmlns="http://www.w3.org/2000/svg" class="triggers-graph"')
    svg = html[start : html.index("</svg>", start)]
    assert len(re.findall(r'<g class="node ', svg)) <= triggers_admin.DIAGRAM_LIMIT
    for name in big.failed[:5]:
        assert f"task {name}: failed" in svg
    assert "See the whole workflow" in html

    whole = admin_client.get(response.context["graph_url"])
    assert whole["Content-Type"].startswith("image/svg+xml")
    assert whole.content.count(b'<g class="node task"') == 2000


def test_the_whole_configuration_downloads_as_json(admin_client, big):
    response = admin_client.get(
        get_page(admin_client, big.session)[0].context["configuration_json_url"]
    )

    assert len(response.json()) == 2000
    assert TaskInstance.objects.filter(session=big.session).count() == big.instances == 5000
