"""The example project: a questionnaire whose views fire triggers."""

import datetime
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import resolve, reverse

from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TriggerSession
from django_triggers.runners import ThreadingTaskRunner
from example_project.questionnaire import services
from example_project.questionnaire.models import PageResponse, Subject

pytestmark = pytest.mark.django_db(transaction=True)

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) ExampleBrowser/1.0"


@pytest.fixture(autouse=True)
def threading_runner(settings: Any) -> None:
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"


def start_questionnaire(client: Client, *, embedded: bool = False) -> str:
    """Start a questionnaire through its start page; return the session uid."""
    data = {"embedded": "on"} if embedded else {}
    response = client.post(reverse("questionnaire:start"), data)
    assert response.status_code == 302
    match = resolve(response.url)
    assert (match.view_name, match.kwargs["page"]) == ("questionnaire:page", 1)
    session_uid: str = match.kwargs["session_uid"]
    return session_uid


def answer_questionnaire(client: Client, *, embedded: bool = False) -> str:
    """Answer every page and submit; wait for the tasks; return the session uid."""
    session_uid = start_questionnaire(client, embedded=embedded)
    pages = {
        1: {"name": "Ada Lovelace", "birthday": "1815-12-10"},
        2: {"mood": "good", "sleep_hours": "8"},
        3: {"comments": "Clear questions.", "recommend": "on"},
    }
    for number, data in pages.items():
        response = client.post(
            reverse("questionnaire:page", args=[session_uid, number]),
            data,
            headers={"user-agent": USER_AGENT},
        )
        assert response.status_code == 302, response.context["form"].errors
    response = client.post(reverse("questionnaire:complete", args=[session_uid]))
    assert response.url == reverse("questionnaire:status", args=[session_uid])
    ThreadingTaskRunner.join_all(timeout=60)
    return session_uid


def statuses(session_uid: str) -> dict[str, str]:
    manager = TriggerManager.for_existing_session(session_uid)
    return {
        instance.name: instance.status
        for task_name in manager.get_configuration()
        for instance in manager.instances_of_task(task_name)
    }


def test_start_configures_a_session_with_the_workflow(client: Client) -> None:
    session_uid = start_questionnaire(client)

    manager = TriggerManager.for_existing_session(session_uid)
    assert sorted(manager.get_configuration()) == [
        "t_computeScore",
        "t_importBrowserMetadata",
        "t_importResponses",
        "t_importSubject",
    ]


def test_full_questionnaire_finishes_every_instance(client: Client) -> None:
    session_uid = answer_questionnaire(client)

    assert statuses(session_uid) == {
        "t_computeScore#0": "finished",
        "t_importBrowserMetadata#0": "finished",
        "t_importResponses#0": "finished",
        "t_importResponses#1": "finished",
        "t_importSubject#0": "finished",
    }


def test_full_questionnaire_creates_the_subject_and_its_page_responses(client: Client) -> None:
    session_uid = answer_questionnaire(client)

    subject = Subject.objects.get(session_uid=session_uid)
    assert (subject.name, subject.birthday) == ("Ada Lovelace", datetime.date(1815, 12, 10))
    assert subject.score is not None
    answers = {page.page: page.answers for page in subject.pages.order_by("page")}
    assert answers == {
        2: {"mood": "good", "sleep_hours": 8},
        3: {"comments": "Clear questions.", "recommend": True},
    }


def test_browser_metadata_records_the_user_agent(client: Client) -> None:
    session_uid = answer_questionnaire(client)

    subject = Subject.objects.get(session_uid=session_uid)
    assert subject.browser == {"source": "user-agent", "agent": USER_AGENT}


def test_embedded_application_abandons_the_browser_metadata_task(client: Client) -> None:
    session_uid = answer_questionnaire(client, embedded=True)

    assert statuses(session_uid)["t_importBrowserMetadata#0"] == "abandoned"
    assert Subject.objects.get(session_uid=session_uid).browser is None


def test_embedded_query_parameter_ticks_the_start_checkbox(client: Client) -> None:
    response = client.get(reverse("questionnaire:start"), {"embedded": "1"})

    assert response.context["form"]["embedded"].value() is True


@pytest.mark.parametrize(
    ("page", "data", "invalid_field"),
    [
        (1, {"name": "", "birthday": "1815-12-10"}, "name"),
        (1, {"name": "Ada Lovelace", "birthday": "not a date"}, "birthday"),
        (1, {"name": "Ada Lovelace", "birthday": "2999-01-01"}, "birthday"),
        (2, {"mood": "good", "sleep_hours": "30"}, "sleep_hours"),
    ],
)
def test_invalid_page_rerenders_with_errors_and_fires_nothing(
    client: Client, page: int, data: dict[str, str], invalid_field: str
) -> None:
    session_uid = start_questionnaire(client)

    response = client.post(reverse("questionnaire:page", args=[session_uid, page]), data)

    assert response.status_code == 200
    assert invalid_field in response.context["form"].errors
    assert response.context["form"].errors[invalid_field][0] in response.content.decode()
    assert not FiredTrigger.objects.filter(session__uid=session_uid).exists()


def test_status_page_lists_the_instances_and_their_statuses(client: Client) -> None:
    session_uid = answer_questionnaire(client, embedded=True)

    response = client.get(reverse("questionnaire:status", args=[session_uid]))

    content = response.content.decode()
    assert "Every instance is resolved." in content
    for name, status in statuses(session_uid).items():
        assert f"<td>{name}</td>" in content
        assert f'<td class="status-{status}">{status}</td>' in content


def test_status_page_shows_what_an_instance_waits_for(client: Client) -> None:
    session_uid = start_questionnaire(client)
    client.post(
        reverse("questionnaire:page", args=[session_uid, 1]),
        {"name": "Ada Lovelace", "birthday": "1815-12-10"},
    )

    response = client.get(reverse("questionnaire:status", args=[session_uid]))

    assert "Unresolved instances: t_importSubject#0." in response.content.decode()
    assert "waiting for questionnaireComplete" in response.content.decode()


def test_unknown_session_is_not_found_and_not_created(client: Client) -> None:
    response = client.get(reverse("questionnaire:page", args=["questionnaire-unknown", 1]))

    assert response.status_code == 404
    assert not TriggerSession.objects.filter(uid="questionnaire-unknown").exists()


def test_demo_command_resolves_every_instance() -> None:
    out = StringIO()

    call_command("demo", stdout=out)

    assert "Every instance is resolved." in out.getvalue()
    assert PageResponse.objects.count() == 2


def test_demo_command_ends_with_the_next_steps_for_its_session() -> None:
    out = StringIO()

    call_command("demo", stdout=out)

    session = TriggerSession.objects.latest("id")
    lines = out.getvalue().splitlines()
    steps = lines[lines.index("Next steps:") :]
    assert f"  python manage.py triggers_show {session.uid}" in steps
    assert "  python manage.py runserver" in steps
    assert (
        f"  and http://127.0.0.1:8000/admin/django_triggers/triggersession/{session.pk}/change/"
        " (the session in the admin)"
    ) in steps
    assert any(line.endswith(f"/{session.uid}/ (the status page)") for line in steps)


def test_status_lists_tasks_in_workflow_order() -> None:
    manager = services.start_questionnaire()

    tasks = [task.name for task in services.session_status(manager)]

    # t_importSubject runs first; the others wait for its trigger, in the order configured.
    assert tasks == [
        "t_importSubject",
        "t_importResponses",
        "t_importBrowserMetadata",
        "t_computeScore",
    ]
