"""The documentation: its examples run against the real app, and it builds without warnings.

Every Python example of the documentation lives in ``docs/examples/`` and is
shown with ``literalinclude``; these tests import those modules and check
what the pages say they do, with tasks run by the threading runner.
"""

import datetime
import json
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, RequestFactory
from django.utils import timezone

from django_triggers.exceptions import ConfigurationError
from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskConfig, TaskInstance
from django_triggers.recovery import recover
from django_triggers.registry import registered_runners
from django_triggers.runners import BaseTaskRunner, ThreadingTaskRunner
from docs.examples import (
    cookbook_finalize,
    cookbook_manager_setting,
    cookbook_super_sessions,
    customizing,
    directives,
    statuses,
    writing_tasks,
)
from docs.examples.directives import Record

# The examples of the Testing page, collected and run here as they are.
from docs.examples.tutorial.pytest_tests import (  # noqa: F401
    test_the_subject_is_imported_once_complete,
)
from docs.examples.tutorial.tests import (  # noqa: F401
    QuestionnaireInATestCase,
    QuestionnaireWorkflowTests,
)
from example_project.questionnaire.models import PageResponse, Subject

DOCS = Path(__file__).resolve().parent.parent / "docs"

db = pytest.mark.django_db(transaction=True)


@pytest.fixture
def manager(settings: Any) -> Iterator[TriggerManager]:
    """A manager on a fresh session, with tasks run in threads."""
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"
    yield TriggerManager(f"docs-{uuid.uuid4().hex}")
    wait()


def wait() -> None:
    ThreadingTaskRunner.join_all(timeout=60)


def status_of(manager: TriggerManager) -> dict[str, str]:
    """``{instance name: status}`` of the session, once its task threads are done."""
    wait()
    return {i.name: i.status for i in TaskInstance.objects.filter(session=manager.session)}


def result_of(manager: TriggerManager, name: str) -> Any:
    wait()
    return manager.get_instance(name).result


def fires_of(manager: TriggerManager, source: str = FiredTrigger.APPLICATION) -> list[Any]:
    """``(trigger, instances it scheduled)`` of each fire of ``source``, in order."""
    return [
        (fired.trigger_name, fired.scheduled_instances)
        for fired in FiredTrigger.objects.filter(session=manager.session, source=source)
    ]


# -- Getting started ---------------------------------------------------------------


@db
@pytest.mark.parametrize("embedded", [False, True])
def test_getting_started_questionnaire_through_its_views(settings: Any, embedded: bool) -> None:
    settings.ROOT_URLCONF = "docs.examples.tutorial.urls"
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"
    client = Client(headers={"user-agent": "Firefox/128.0"})
    response = client.post("/questionnaires/", {"embedded": "1"} if embedded else {})
    assert response.status_code == 201
    uid = response.json()["session"]
    base = f"/questionnaires/{uid}"

    answers = {"name": "Ada Lovelace", "birthday": "1815-12-10"}
    assert client.post(f"{base}/pages/1/", answers).status_code == 200
    for number, page in ((2, {"mood": "good"}), (3, {"sleep": 8})):
        response = client.post(f"{base}/pages/{number}/", {"answers": json.dumps(page)})
        assert response.json() == {"received": number}
    assert client.post(f"{base}/complete/").status_code == 200

    manager = TriggerManager.for_existing_session(uid)
    assert status_of(manager) == {
        "t_importSubject#0": "finished",
        "t_importResponses#0": "finished",
        "t_importResponses#1": "finished",
        "t_importBrowserMetadata#0": "abandoned" if embedded else "finished",
    }
    subject = Subject.objects.get(session_uid=uid)
    assert (subject.name, subject.birthday) == ("Ada Lovelace", datetime.date(1815, 12, 10))
    assert subject.browser == (None if embedded else {"agent": "Firefox/128.0"})
    assert sorted(subject.pages.values_list("page", "answers")) == [
        (2, {"mood": "good"}),
        (3, {"sleep": 8}),
    ]
    assert manager.get_instance("t_importSubject#0").result == {"subjectId": subject.pk}
    # The table of the Getting started page, fire by fire.
    started = [("isEmbeddedApplication", [])] if embedded else []
    assert fires_of(manager) == [
        *started,
        ("firstPageReceived", []),
        ("pageReceived", []),
        ("pageReceived", []),
        ("questionnaireComplete", ["t_importSubject#0"]),
    ]
    [(cascade, scheduled), *_] = fires_of(manager, FiredTrigger.CASCADE)
    assert cascade == "t_importSubject"
    expected = ["t_importResponses#0", "t_importResponses#1", "t_importBrowserMetadata#0"]
    assert sorted(scheduled) == sorted(expected[:2] if embedded else expected)


@db
def test_getting_started_views_refuse_unknown_sessions_and_invalid_pages(settings: Any) -> None:
    settings.ROOT_URLCONF = "docs.examples.tutorial.urls"
    client = Client()
    assert client.post("/questionnaires/nope/complete/").status_code == 404
    uid = client.post("/questionnaires/").json()["session"]
    response = client.post(f"/questionnaires/{uid}/pages/1/", {"name": "Ada"})
    assert response.status_code == 400
    assert "birthday" in response.json()["errors"]
    assert not FiredTrigger.objects.filter(session__uid=uid).exists()


# -- Configuration -------------------------------------------------------------------


@db
def test_after_triggers_fire_in_any_order_and_a_one_shot_task_runs_once(
    manager: TriggerManager,
) -> None:
    directives.after_in_any_order(manager)
    assert fires_of(manager) == [
        ("questionnaireComplete", []),
        ("firstPageReceived", ["t_importSubject#0"]),
        ("firstPageReceived", []),
    ]
    assert status_of(manager) == {"t_importSubject#0": "finished"}
    assert result_of(manager, "t_importSubject#0") == {
        "received": {"questionnaireComplete": {}, "firstPageReceived": directives.FIRST_PAGE}
    }


@db
def test_a_task_name_fires_as_a_trigger_with_the_task_result(manager: TriggerManager) -> None:
    directives.task_names_are_triggers(manager)
    subject_result = result_of(manager, "t_importSubject#0")
    assert status_of(manager) == {"t_importSubject#0": "finished", "t_welcome#0": "finished"}
    assert result_of(manager, "t_welcome#0") == {"received": {"t_importSubject": subject_result}}
    assert fires_of(manager, FiredTrigger.CASCADE) == [
        ("t_importSubject", ["t_welcome#0"]),
        ("t_welcome", []),
    ]


@db
def test_run_names_a_registered_trigger_task(manager: TriggerManager) -> None:
    directives.run_names_a_registered_task(manager)
    assert manager.get_configuration()["t_importSubject"]["run"] == "directives.Record"
    with pytest.raises(ConfigurationError, match="directive 'run'"):
        manager.update_configuration({"t_x": {"after": ["a"], "run": "directives.Missing"}})


@db
def test_and_every_makes_one_instance_per_fire_numbered_in_order(manager: TriggerManager) -> None:
    directives.and_every_page(manager)
    assert fires_of(manager) == [
        ("pageReceived", []),
        ("pageReceived", []),
        ("subjectImported", ["t_importResponses#0", "t_importResponses#1"]),
        ("pageReceived", ["t_importResponses#2"]),
    ]
    for number, page in enumerate((2, 3, 4)):
        assert result_of(manager, f"t_importResponses#{number}") == {
            "received": {"pageReceived": {"page": page}, "subjectImported": {"subjectId": 7}}
        }


@db
def test_and_every_alone_schedules_every_fire(manager: TriggerManager) -> None:
    directives.and_every_alone(manager)
    assert fires_of(manager) == [("pageReceived", [f"t_logPage#{n}"]) for n in range(3)]
    assert set(status_of(manager).values()) == {"finished"}


@db
def test_unless_abandons_a_waiting_instance_and_nothing_runs_later(manager: TriggerManager) -> None:
    directives.unless_embedded(manager)
    assert fires_of(manager) == [
        ("pageReceived", []),
        ("isEmbeddedApplication", []),
        ("subjectImported", []),
    ]
    assert status_of(manager) == {"t_importBrowserMetadata#0": "abandoned"}


@db
def test_unless_needs_all_its_triggers_then_abandons_new_instances(manager: TriggerManager) -> None:
    directives.unless_needs_all_its_triggers(manager)
    assert fires_of(manager) == [
        ("questionnaireComplete", []),
        ("reminderDue", ["t_sendReminder#0"]),
        ("reportSent", []),
        ("reminderDue", []),
    ]
    assert status_of(manager) == {"t_sendReminder#0": "finished", "t_sendReminder#1": "abandoned"}


@db
def test_with_params_are_deep_merged_under_the_trigger_kwargs(manager: TriggerManager) -> None:
    directives.with_params_deep_merge(manager)
    assert result_of(manager, "t_computeScore#0") == {
        "received": {
            "questionnaireComplete": {},
            "model": {"name": "Psych 01", "version": 2},
            "scoring": {"scale": 10, "options": {"round": True, "floor": 1}},
        }
    }


class RefusingRunner(BaseTaskRunner):
    """A default runner that must not be used: ``using`` names another."""

    name = "docs-refusing"

    def run(self, manager: TriggerManager, task_instance: TaskInstance) -> None:
        raise AssertionError(f"{task_instance.name} should have used its own runner")


@db
def test_using_picks_the_runner_of_a_task(manager: TriggerManager, settings: Any) -> None:
    settings.TRIGGERS_DEFAULT_RUNNER = "docs-refusing"
    directives.using_a_runner(manager)
    assert status_of(manager) == {"t_importSubject#0": "finished"}
    with pytest.raises(ConfigurationError, match="directive 'using'"):
        manager.update_configuration({"t_x": {"after": ["a"], "run": Record.name, "using": "x"}})


@db
def test_within_abandons_late_instances_and_fires_the_timeout_trigger(
    manager: TriggerManager,
) -> None:
    directives.within_a_deadline(manager)
    instance = manager.get_instance("t_importSubject#0")
    assert instance.status == "unstarted"
    assert instance.deadline - instance.created == timedelta(days=3)

    assert recover(now=timezone.now() + timedelta(days=2)).expired == []
    report = recover(now=timezone.now() + timedelta(days=3, minutes=1))
    assert report.expired == [(manager.session_uid, "t_importSubject#0")]
    assert status_of(manager) == {"t_importSubject#0": "abandoned", "t_remind#0": "finished"}
    assert result_of(manager, "t_remind#0") == {
        "reminded": True,
        "missing": ["questionnaireComplete"],
    }
    reason = manager.get_instance("t_importSubject#0").metadata["abandoned_reason"]
    assert reason["missing_triggers"] == ["questionnaireComplete"]


@db
def test_unknown_directives_are_kept_in_extras(manager: TriggerManager) -> None:
    extras = directives.custom_directives(manager)
    assert extras == {"notifyOnFailure": ["research-team@example.com"]}
    configuration = manager.get_configuration()["t_importSubject"]
    assert configuration["notifyOnFailure"] == ["research-team@example.com"]


@db
def test_an_instance_keeps_the_first_kwargs_it_saw(manager: TriggerManager) -> None:
    directives.latest_kwargs_for_new_instances(manager)
    received = result_of(manager, "t_importSubject#0")["received"]
    assert received["firstPageReceived"] == {"responses": {"name": "Ada"}}
    assert manager.latest_kwargs["firstPageReceived"] == {"responses": {"name": "Ada Lovelace"}}


@db
def test_configuring_is_not_retroactive_but_new_instances_get_latest_kwargs(
    manager: TriggerManager,
) -> None:
    directives.not_retroactive(manager)
    assert fires_of(manager) == [
        ("firstPageReceived", []),
        ("firstPageReceived", []),
        ("questionnaireComplete", ["t_importSubject#0"]),
    ]
    received = result_of(manager, "t_importSubject#0")["received"]
    assert received["firstPageReceived"] == {"responses": {"name": "Ada Lovelace"}}


@db
def test_update_configuration_adds_replaces_and_keeps(manager: TriggerManager) -> None:
    directives.replacing_a_task(manager)
    configuration = manager.get_configuration()
    assert sorted(configuration) == ["t_computeScore", "t_importResponses", "t_importSubject"]
    assert configuration["t_importSubject"]["after"] == [
        "firstPageReceived",
        "questionnaireComplete",
    ]


@db
def test_a_replaced_task_keeps_its_instances_which_then_need_the_new_after_set(
    manager: TriggerManager,
) -> None:
    manager.update_configuration({"t_task": {"after": ["a", "b"], "run": Record.name}})
    manager.fire("a")
    manager.update_configuration({"t_task": {"after": ["a", "b", "c"], "run": Record.name}})
    manager.fire("b")
    assert status_of(manager) == {"t_task#0": "unstarted"}
    manager.fire("c")
    assert status_of(manager) == {"t_task#0": "finished"}


@db
def test_and_every_completes_an_instance_created_by_another_after_trigger(
    manager: TriggerManager,
) -> None:
    manager.update_configuration(
        {"t_task": {"after": ["subjectImported"], "andEvery": "pageReceived", "run": Record.name}}
    )
    manager.fire("subjectImported", {"subjectId": 7})
    assert manager.fire("pageReceived", {"page": 2})[0].name == "t_task#0"
    assert manager.fire("pageReceived", {"page": 3})[0].name == "t_task#1"
    assert status_of(manager) == {"t_task#0": "finished", "t_task#1": "finished"}


@db
def test_a_refused_configuration_names_task_and_directive_and_stores_nothing(
    manager: TriggerManager,
) -> None:
    message = directives.a_refused_configuration(manager)
    assert message.startswith("Task 't_computeScore', directive 'withParams': ")
    assert not TaskConfig.objects.filter(session=manager.session).exists()


# What the Configuration page's table of refused configurations lists.
REFUSED = {
    "after missing": ({"run": Record.name}, "after"),
    "after not a list": ({"after": "pageReceived", "run": Record.name}, "after"),
    "after empty": ({"after": [], "run": Record.name}, "after"),
    "run missing": ({"after": ["a"]}, "run"),
    "run not registered": ({"after": ["a"], "run": "proj.tasks.Nothing"}, "run"),
    "run not a TriggerTask": ({"after": ["a"], "run": "celery.backend_cleanup"}, "run"),
    "andEvery not a string": ({"after": [], "andEvery": ["a"], "run": Record.name}, "andEvery"),
    "unless empty": ({"after": ["a"], "unless": [], "run": Record.name}, "unless"),
    "withParams not a dict of dicts": (
        {"after": ["a"], "run": Record.name, "withParams": {"model": "Psych 01"}},
        "withParams",
    ),
    "unknown runner": ({"after": ["a"], "run": Record.name, "using": "lambda"}, "using"),
    "within not positive": ({"after": ["a"], "run": Record.name, "within": 0}, "within"),
    "waits for itself": ({"after": ["t_task"], "run": Record.name}, "after"),
    "custom directive not JSON": ({"after": ["a"], "run": Record.name, "x": object()}, "x"),
}


@db
@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_each_refused_configuration_of_the_table(manager: TriggerManager, case: str) -> None:
    directives_, directive = REFUSED[case]
    with pytest.raises(ConfigurationError) as refused:
        manager.update_configuration({"t_task": directives_})
    assert str(refused.value).startswith(f"Task 't_task', directive {directive!r}: ")
    assert (refused.value.task, refused.value.directive) == ("t_task", directive)


@db
def test_a_cycle_of_tasks_is_refused(manager: TriggerManager) -> None:
    manager.update_configuration({"t_a": {"after": ["t_b"], "run": Record.name}})
    with pytest.raises(ConfigurationError, match="cycle: t_b -> t_a -> t_b"):
        manager.update_configuration({"t_b": {"after": ["t_a"], "run": Record.name}})


# -- Writing tasks -------------------------------------------------------------------


def configure(manager: TriggerManager, *tasks: str) -> None:
    manager.update_configuration({name: writing_tasks.CONFIGURATION[name] for name in tasks})


ADA = {"responses": {"name": " Ada Lovelace ", "birthday": "1815-12-10"}}


@db
def test_filter_kwargs_and_the_task_logger(
    manager: TriggerManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="django_triggers.tasks")
    configure(manager, "t_importSubject")
    manager.fire("firstPageReceived", ADA)
    manager.fire("questionnaireComplete")
    wait()

    subject = Subject.objects.get(session_uid=manager.session_uid)
    assert (subject.name, subject.birthday) == ("Ada Lovelace", datetime.date(1815, 12, 10))
    assert result_of(manager, "t_importSubject#0") == {"subjectId": subject.pk}
    assert manager.get_instance("t_importSubject#0").log_level_name == "INFO"
    [record] = [r for r in caplog.records if r.name == "django_triggers.tasks.t_importSubject"]
    assert record.getMessage() == "Imported Ada Lovelace"
    assert record.context == {"session": manager.session_uid, "subjectId": subject.pk}


@db
def test_the_highest_level_logged_is_stored_on_the_instance(manager: TriggerManager) -> None:
    Subject.objects.create(session_uid=manager.session_uid, name="Ada", birthday="1815-12-10")
    configure(manager, "t_importSubject")
    manager.fire("firstPageReceived", ADA)
    manager.fire("questionnaireComplete")
    assert status_of(manager) == {"t_importSubject#0": "finished"}
    assert manager.get_instance("t_importSubject#0").log_level_name == "WARNING"


@db
def test_invalid_kwargs_fail_the_instance_with_the_filter_errors(
    manager: TriggerManager, caplog: pytest.LogCaptureFixture
) -> None:
    configure(manager, "t_importSubject")
    manager.fire("firstPageReceived", {"responses": {"name": "Ada", "birthday": "soon"}})
    manager.fire("questionnaireComplete")
    assert status_of(manager) == {"t_importSubject#0": "failed"}
    instance = manager.get_instance("t_importSubject#0")
    assert instance.metadata["exception_type"] == "builtins.ValueError"
    assert "birthday" in instance.metadata["exception_message"]
    assert "filter_errors" in instance.metadata["exception_context"]
    assert instance.log_level_name == "ERROR"
    assert not instance.logs_resolved
    logged = [r for r in caplog.records if r.name == "django_triggers.tasks.t_importSubject"]
    assert "filter_errors" in logged[-1].context


@db
def test_a_task_fires_triggers_and_reads_with_params(manager: TriggerManager) -> None:
    subject = Subject.objects.create(session_uid="s", name="Ada", birthday="1815-12-10")
    configure(manager, "t_computeScore")
    manager.update_configuration({"t_followUp": {"after": ["lowScore"], "run": Record.name}})
    manager.fire("questionnaireComplete")
    manager.fire("t_importSubject", {"subjectId": subject.pk})
    assert result_of(manager, "t_computeScore#0") == {
        "subjectId": subject.pk,
        "model": "Psych 01",
        "score": 0,
    }
    assert result_of(manager, "t_followUp#0") == {
        "received": {"lowScore": {"subjectId": subject.pk, "score": 0}}
    }


@db
def test_with_context_is_stored_with_the_failure(manager: TriggerManager) -> None:
    configure(manager, "t_computeScore")
    manager.fire("questionnaireComplete")
    manager.fire("t_importSubject", {"subjectId": 404})
    assert status_of(manager) == {"t_computeScore#0": "failed"}
    metadata = manager.get_instance("t_computeScore#0").metadata
    assert metadata["exception_type"] == "builtins.LookupError"
    assert metadata["exception_context"] == {"subjectId": 404, "model": "Psych 01"}
    assert "Subject.DoesNotExist" in metadata["traceback"]


@db
@pytest.mark.parametrize("email", ["ada@example.com", ""])
def test_a_task_skips_itself_or_finishes_with_none(manager: TriggerManager, email: str) -> None:
    mail.outbox.clear()
    configure(manager, "t_welcome")
    manager.fire("firstPageReceived", {"responses": {"name": "Ada", "email": email}})
    if email:
        assert status_of(manager) == {"t_welcome#0": "finished"}
        assert result_of(manager, "t_welcome#0") == {}
        assert mail.outbox[0].to == [email]
        assert fires_of(manager, FiredTrigger.CASCADE) == [("t_welcome", [])]
    else:
        assert status_of(manager) == {"t_welcome#0": "skipped"}
        assert manager.get_instance("t_welcome#0").metadata["reason"] == "no email address"
        assert mail.outbox == []
        assert fires_of(manager, FiredTrigger.CASCADE) == []


class FlakyBrowserService:
    def __init__(self, failures: int):
        self.failures = failures

    def describe(self, agent: str) -> dict[str, str]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the browser service is unreachable")
        return {"name": agent}


@db
def test_retry_replays_the_instance_after_its_cooldown(
    manager: TriggerManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writing_tasks, "browser_service", FlakyBrowserService(failures=2))
    monkeypatch.setattr(writing_tasks, "RETRY_COOLDOWN", 0.2)
    configure(manager, "t_importBrowserMetadata")
    manager.fire("pageReceived", {"page": 2, "browser": {"agent": "Firefox"}})
    assert status_of(manager) == {
        "t_importBrowserMetadata#0": "replayed",
        "t_importBrowserMetadata#1": "replayed",
        "t_importBrowserMetadata#2": "finished",
    }
    first, second, third = manager.instances_of_task("t_importBrowserMetadata")
    assert first.metadata["exception_type"] == "builtins.ConnectionError"
    assert (second.parent, second.retries, third.parent, third.retries) == (first, 1, second, 2)
    assert second.eta - second.created == timedelta(seconds=0.2)  # the cooldown
    assert third.result == {"browser": {"name": "Firefox"}}


@db
def test_retrying_past_max_retries_fails_with_max_retries_exceeded(
    manager: TriggerManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writing_tasks, "browser_service", FlakyBrowserService(failures=99))
    monkeypatch.setattr(writing_tasks, "RETRY_COOLDOWN", 0)
    configure(manager, "t_importBrowserMetadata")
    manager.fire("pageReceived", {"page": 2, "browser": {"agent": "Firefox"}})
    expected = {f"t_importBrowserMetadata#{n}": "replayed" for n in range(5)}
    expected["t_importBrowserMetadata#5"] = "failed"
    assert status_of(manager) == expected
    last = manager.get_instance("t_importBrowserMetadata#5")
    assert last.metadata["exception_type"] == "django_triggers.task.MaxRetriesExceeded"
    assert last.retries == 5


@db
def test_retry_with_replacement_kwargs(manager: TriggerManager) -> None:
    subject = Subject.objects.create(session_uid="s", name="Ada", birthday="1815-12-10")
    configure(manager, "t_importResponses")
    manager.fire("t_importSubject", {"subjectId": subject.pk})
    manager.fire("pageReceived", {"page": 2, "answers": "mood=good;sleep=8"})
    assert status_of(manager) == {
        "t_importResponses#0": "replayed",
        "t_importResponses#1": "finished",
    }
    clone = manager.get_instance("t_importResponses#1")
    assert clone.kwargs["pageReceived"]["answers"] == {"mood": "good", "sleep": "8"}
    assert PageResponse.objects.get(subject=subject).answers == {"mood": "good", "sleep": "8"}


# -- Statuses and recovery ---------------------------------------------------------------


@db
def test_session_report_logs_and_replay_with_corrected_kwargs(manager: TriggerManager) -> None:
    configure(manager, "t_importSubject", "t_computeScore")
    manager.fire("firstPageReceived", {"responses": {"name": "Ada", "birthday": "1815-13-10"}})
    manager.fire("questionnaireComplete")
    wait()
    report = statuses.session_report(manager)
    assert report["tasks"] == ["t_computeScore", "t_importSubject"]
    assert report["waiting"] == {"t_computeScore#0": ["t_importSubject"]}
    assert list(report["failed"]) == ["t_importSubject#0"]
    assert report["logs"] == ["t_importSubject#0"]

    statuses.acknowledge_logs(manager)
    instance = manager.get_instance("t_importSubject#0")
    assert instance.logs_resolved and instance.metadata["reviewed_by"] == "operator@example.com"
    assert statuses.session_report(manager)["logs"] == []

    name = statuses.replay_with_corrected_birthday(manager, "t_importSubject#0", "1815-12-10")
    assert name == "t_importSubject#1"
    assert status_of(manager) == {
        "t_importSubject#0": "replayed",
        "t_importSubject#1": "finished",
        "t_computeScore#0": "finished",
    }
    assert manager.get_instance("t_importSubject#1").parent.name == "t_importSubject#0"
    assert statuses.session_report(manager) == {
        "tasks": [],
        "waiting": {},
        "failed": {},
        "logs": [],
    }


@db
def test_skip_with_cascade_lets_waiting_tasks_run(
    manager: TriggerManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writing_tasks, "browser_service", FlakyBrowserService(failures=99))
    monkeypatch.setattr(writing_tasks.ImportBrowserMetadata, "max_retries", 0)
    configure(manager, "t_importBrowserMetadata")
    manager.update_configuration(
        {"t_report": {"after": ["t_importBrowserMetadata"], "run": Record.name}}
    )
    manager.fire("pageReceived", {"page": 2, "browser": {"agent": "Firefox"}})
    assert status_of(manager) == {"t_importBrowserMetadata#0": "failed"}

    statuses.go_on_without_browser_metadata(manager, "t_importBrowserMetadata#0")
    assert status_of(manager) == {"t_importBrowserMetadata#0": "skipped", "t_report#0": "finished"}
    assert result_of(manager, "t_report#0") == {
        "received": {"t_importBrowserMetadata": {"browser": None}}
    }
    assert fires_of(manager, FiredTrigger.SKIP) == [("t_importBrowserMetadata", ["t_report#0"])]


@db
def test_withdraw_abandons_waiting_instances(manager: TriggerManager) -> None:
    configure(manager, "t_importSubject", "t_welcome")
    manager.fire("firstPageReceived", {"responses": {"name": "Ada"}})
    wait()
    assert statuses.withdraw(manager, "withdrew consent") == ["t_importSubject#0"]
    assert status_of(manager) == {"t_importSubject#0": "abandoned", "t_welcome#0": "skipped"}
    metadata = manager.get_instance("t_importSubject#0").metadata
    assert metadata["abandoned_reason"] == "withdrew consent"
    with pytest.raises(ValueError, match="only failed instances can be replayed"):
        manager.replay_failed_instance("t_importSubject#0")


# -- Custom managers and runners ------------------------------------------------------------


@db
def test_hooks_of_a_custom_manager(settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"
    caplog.set_level(logging.INFO, logger="questionnaire.audit")
    manager = customizing.AuditedManager(f"docs-{uuid.uuid4().hex}")
    manager.update_configuration(
        {"t_step": {"after": ["start"], "run": cookbook_finalize.Step.name}}
    )
    manager.fire("start", {"fail": True})
    wait()
    manager.replay_failed_instance("t_step#0")
    wait()
    manager.skip_failed_instance("t_step#1")
    lines = [r.getMessage() for r in caplog.records if r.name == "questionnaire.audit"]
    uid = manager.session_uid
    assert lines == [
        f"{uid}: start fired, scheduling t_step#0",
        f"{uid}: t_step#1 replays a failed instance",
        f"{uid}: t_step#1 skipped (cascade: False)",
    ]
    assert manager.session.manager_class == "docs.examples.customizing.AuditedManager"


@db
def test_a_custom_runner_as_a_manager_default() -> None:
    manager = customizing.InlineManager(f"docs-{uuid.uuid4().hex}")
    manager.update_configuration(
        {
            "t_first": {"after": ["start"], "run": Record.name},
            "t_second": {"after": ["t_first"], "run": Record.name},
        }
    )
    manager.fire("start")
    # Inline: fire() returned after the task and its cascade ran.
    assert status_of(manager) == {"t_first#0": "finished", "t_second#0": "finished"}
    assert manager.default_runner_name == "inline"


def test_runners_listed_in_the_setting_are_registered(settings: Any) -> None:
    settings.TRIGGERS_RUNNERS = ["docs.examples.customizing.InlineTaskRunner"]
    assert registered_runners()["inline"] is customizing.InlineTaskRunner
    settings.TRIGGERS_RUNNERS = ["docs.examples.nowhere.Runner"]
    with pytest.raises(ImproperlyConfigured, match="TRIGGERS_RUNNERS"):
        registered_runners()


# -- Signals --------------------------------------------------------------------------------


@db
def test_signal_receivers(manager: TriggerManager, caplog: pytest.LogCaptureFixture) -> None:
    from django_triggers.signals import instance_status_changed, trigger_fired
    from docs.examples import observability

    caplog.set_level(logging.INFO, logger="questionnaire.workflow")
    try:
        manager.update_configuration({"t_record": {"after": ["start"], "run": Record.name}})
        manager.fire("start")
        wait()
        counts = observability.metrics.counts
        for status in ("unstarted", "scheduled", "running", "finished"):
            assert counts[f"triggers.t_record.{status}"] >= 1
        lines = [r.getMessage() for r in caplog.records if r.name == "questionnaire.workflow"]
        assert f"start fired in {manager.session_uid} (application), scheduling t_record#0" in lines
    finally:
        instance_status_changed.disconnect(dispatch_uid="questionnaire-count-statuses")
        trigger_fired.disconnect(dispatch_uid="questionnaire-log-fires")


# -- Running in production --------------------------------------------------------------------


@db
def test_the_recovery_task_and_an_idempotent_webhook(manager: TriggerManager) -> None:
    from docs.examples import production

    assert set(production.recover_triggers()) >= {"redispatched", "expired", "errors"}

    order = TriggerManager("order-42")
    order.update_configuration({"t_invoice": {"after": ["paymentReceived"], "run": Record.name}})
    event = {"id": "evt_1", "order": 42, "amount": "12.50"}
    request_factory = RequestFactory()

    def post(payload: dict[str, Any]) -> int:
        request = request_factory.post("/", json.dumps(payload), content_type="application/json")
        return production.payment_webhook(request).status_code

    assert post(event) == 204
    assert post(event) == 204  # delivered again
    assert fires_of(order) == [("paymentReceived", ["t_invoice#0"])]
    assert status_of(order) == {"t_invoice#0": "finished"}
    with pytest.raises(ValueError, match="event id 'evt_1' was already used"):
        post({**event, "amount": "99.00"})
    from django.http import Http404

    with pytest.raises(Http404):
        post({**event, "order": 7})


# -- Cookbook -----------------------------------------------------------------------------------


@db
def test_finalizing_a_session(settings: Any) -> None:
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"
    manager = cookbook_finalize.FinalizingManager(f"docs-{uuid.uuid4().hex}")
    manager.update_configuration(cookbook_finalize.CONFIGURATION)
    manager.fire("firstPageReceived", {"fail": True})
    manager.fire("questionnaireComplete")
    assert status_of(manager) == {"t_importSubject#0": "failed"}

    manager.replay_failed_instance("t_importSubject#0", {"firstPageReceived": {}})
    wait()
    assert status_of(manager) == {
        "t_importSubject#0": "replayed",
        "t_importSubject#1": "finished",
        "t_importResponses#0": "finished",
        "t_computeScore#0": "finished",
        "t_sendReport#0": "finished",
    }
    assert result_of(manager, "t_sendReport#0") == {"statuses": {"finished": 3, "replayed": 1}}
    assert [name for name, _ in fires_of(manager)].count(cookbook_finalize.ALL_RESOLVED) == 1


@db
def test_finalize_after_a_manual_status_change(settings: Any) -> None:
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"
    manager = cookbook_finalize.FinalizingManager(f"docs-{uuid.uuid4().hex}")
    manager.update_configuration(
        {
            "t_wait": {"after": ["a", "b"], "run": cookbook_finalize.Step.name},
            "t_sendReport": cookbook_finalize.CONFIGURATION["t_sendReport"],
        }
    )
    manager.fire("a")
    manager.update_instance_status("t_wait#0", TaskInstance.ABANDONED)
    assert status_of(manager) == {"t_wait#0": "abandoned"}  # no hook ran
    manager.finalize_if_done()
    assert status_of(manager) == {"t_wait#0": "abandoned", "t_sendReport#0": "finished"}
    assert result_of(manager, "t_sendReport#0") == {"statuses": {"abandoned": 1}}


@db
def test_super_sessions_of_an_order(settings: Any) -> None:
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"
    order_uid = "order-42"
    sessions = cookbook_super_sessions.two_parcels(order_uid)
    assert sessions.steps() == ["shipment-1", "shipment-2"]
    assert fires_of(sessions.main())[0] == ("paymentReceived", ["t_sendInvoice#0"])
    wait()

    assert status_of(sessions.main()) == {
        "t_sendInvoice#0": "finished",
        "t_notifyShipped#0": "finished",
        "t_notifyDelivered#0": "finished",
    }
    assert result_of(sessions.main(), "t_notifyDelivered#0") == {
        "told": {"shipmentDelivered": {"shipment": "shipment-1"}}
    }
    assert status_of(sessions.step("shipment-1")) == {
        "t_printLabel#0": "finished",
        "t_deliver#0": "finished",
    }
    assert sessions.unresolved() == {
        order_uid: [],
        f"{order_uid}:shipment-1": [],
        f"{order_uid}:shipment-2": ["t_printLabel#0"],
    }
    assert cookbook_super_sessions.OrderSessions.of(f"{order_uid}:shipment-2").order_uid == (
        order_uid
    )
    with pytest.raises(ValueError, match="cannot contain"):
        cookbook_super_sessions.OrderSessions("a:b")


@db
def test_manager_class_from_a_setting(settings: Any) -> None:
    assert type(cookbook_manager_setting.get_manager("docs-a")) is TriggerManager

    path = "docs.examples.customizing.AuditedManager"
    settings.QUESTIONNAIRE_TRIGGER_MANAGER = path
    manager = cookbook_manager_setting.get_manager("docs-b")
    assert type(manager) is customizing.AuditedManager
    assert manager.session.manager_class == path
    assert type(TriggerManager.for_existing_session("docs-b")) is customizing.AuditedManager

    settings.QUESTIONNAIRE_TRIGGER_MANAGER = "docs.examples.customizing.Nothing"
    with pytest.raises(ImproperlyConfigured, match="cannot import"):
        cookbook_manager_setting.get_manager("docs-c")
    settings.QUESTIONNAIRE_TRIGGER_MANAGER = "docs.examples.customizing.audit"
    with pytest.raises(ImproperlyConfigured, match="not a TriggerManager subclass"):
        cookbook_manager_setting.get_manager("docs-c")


# -- The pages ------------------------------------------------------------------------------


def python_blocks() -> list[tuple[str, str]]:
    """``(page, code)`` of every ``code-block:: python`` written inline in a page."""
    blocks = []
    for page in sorted(DOCS.glob("**/*.rst")):
        if "_build" in page.parts:
            continue
        text = page.read_text()
        for match in re.finditer(r"^( *)\.\. code-block:: python\n((?:\1 +:.*\n)*)\n", text, re.M):
            indent = len(match[1])
            lines = []
            for line in text[match.end() :].splitlines():
                if line.strip() and len(line) - len(line.lstrip()) <= indent:
                    break
                lines.append(line)
            code = "\n".join(lines)
            blocks.append((page.relative_to(DOCS).as_posix(), code))
    return blocks


@pytest.mark.parametrize(("page", "code"), python_blocks())
def test_inline_python_blocks_are_valid_python(page: str, code: str) -> None:
    import textwrap

    compile(textwrap.dedent(code), page, "exec")


def test_every_example_module_is_shown_in_a_page() -> None:
    pages = "\n".join(p.read_text() for p in DOCS.glob("**/*.rst"))
    for module in sorted((DOCS / "examples").glob("**/*.py")):
        if module.name == "__init__.py":
            continue
        path = module.relative_to(DOCS).as_posix()
        assert f"literalinclude:: {path}" in pages, f"{path} is not included in any page"


def test_the_documentation_builds_without_warnings(tmp_path: Path) -> None:
    build = pytest.importorskip(
        "sphinx.cmd.build", reason="Sphinx is not installed: pip install -e '.[docs]'"
    )
    status = build.build_main(["-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path)])
    assert status == 0, "sphinx-build -W failed: see the warnings above"
    assert (tmp_path / "index.html").exists()
