"""The admin lists a session's tasks, and their instances, in workflow order.

What runs first comes first: neither alphabetically nor in the order the
tasks were configured. In the session used here, both of those orders are
the reverse of the workflow's.
"""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.http import urlencode

from django_triggers.manager import TriggerManager
from django_triggers.runners import BaseTaskRunner

#: The workflow: import, then score, then report.
WORKFLOW = ["c_import", "b_score", "a_report"]


class IdleRunner(BaseTaskRunner):
    """Accepts instances and leaves them scheduled."""

    name = "test_admin_workflow_order.idle"

    def run(self, manager, task_instance):
        pass


def task(after):
    return {"after": after, "run": "tests.Echo", "using": IdleRunner.name}


@pytest.fixture
def manager(db):
    """The report waits for the score, which waits for the import; configured backwards."""
    manager = TriggerManager("workflow-order")
    manager.update_configuration(
        {"a_report": task(["b_score"]), "b_score": task(["c_import"]), "c_import": task(["start"])}
    )
    return manager


def tasks_url(**params):
    return reverse("admin:django_triggers_taskconfig_changelist") + "?" + urlencode(params)


def instances_url(**params):
    return reverse("admin:django_triggers_taskinstance_changelist") + "?" + urlencode(params)


def listed_names(response):
    """The names in the first column of a rendered changelist, top to bottom."""
    assert response.status_code == 200
    return re.findall(
        r'<th class="field-name"><a href="[^"]*">([^<]*)</a></th>', response.content.decode()
    )


def test_the_task_list_of_one_session_is_in_workflow_order(admin_client, manager):
    response = admin_client.get(tasks_url(session__id__exact=manager.session.pk))

    assert listed_names(response) == WORKFLOW


def test_the_instance_list_of_one_session_is_in_workflow_order(admin_client, manager):
    for trigger in ("start", "c_import", "b_score"):
        manager.fire(trigger)

    response = admin_client.get(instances_url(session__id__exact=manager.session.pk))

    assert listed_names(response) == [f"{name}#0" for name in WORKFLOW]


def test_the_tasks_without_an_instance_linked_from_the_session_page_are_in_workflow_order(
    admin_client, manager
):
    page = admin_client.get(
        reverse("admin:django_triggers_triggersession_change", args=[manager.session.pk])
    )

    response = admin_client.get(page.context["attention"]["not_started"].url)

    assert listed_names(response) == WORKFLOW


def test_the_session_page_shows_the_configuration_in_workflow_order(admin_client, manager):
    response = admin_client.get(
        reverse("admin:django_triggers_triggersession_change", args=[manager.session.pk])
    )

    html = response.content.decode()
    configuration = html[html.index('id="configuration"') : html.index('id="timeline"')]
    assert re.findall(r'<div class="dt-task">\s*<h3><code>([^<]*)</code>', configuration) == (
        WORKFLOW
    )


def test_a_list_sorted_by_a_column_is_in_the_order_of_that_column(admin_client, manager):
    response = admin_client.get(tasks_url(session__id__exact=manager.session.pk, o="0"))

    assert listed_names(response) == sorted(WORKFLOW)


def test_the_task_list_of_one_session_takes_the_same_queries_however_many_tasks(
    admin_client, manager
):
    bigger = TriggerManager("bigger")
    bigger.update_configuration(
        {f"t_{index:02d}": task([f"t_{index + 1:02d}"]) for index in range(60)}
    )
    admin_client.get(tasks_url(session__id__exact=manager.session.pk))  # content types

    with CaptureQueriesContext(connection) as small:
        admin_client.get(tasks_url(session__id__exact=manager.session.pk))
    with CaptureQueriesContext(connection) as big:
        response = admin_client.get(tasks_url(session__id__exact=bigger.session.pk))

    assert len(big.captured_queries) == len(small.captured_queries)
    assert listed_names(response)[:3] == ["t_59", "t_58", "t_57"]
