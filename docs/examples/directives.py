"""The examples of the Configuration page, one function per directive or rule.

Each function takes the manager of a fresh session, configures it and fires
triggers; the comments say what each fire does, and ``tests/test_docs.py``
checks them.
"""

from typing import Any

from django_triggers.exceptions import ConfigurationError
from django_triggers.manager import TriggerManager
from django_triggers.task import TaskContext, TriggerTask
from example_project.celery import app


class Record(TriggerTask):
    """Return the kwargs the task was given, to show what arrived."""

    name = "directives.Record"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        return {"received": context.trigger_kwargs}


class RemindRespondent(TriggerTask):
    """Fallback of a task that waited too long: say which triggers never came."""

    name = "directives.RemindRespondent"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        timeout = context.trigger_kwargs["t_importSubject.timeout"]
        return {"reminded": True, "missing": timeout["missing_triggers"]}


app.register_task(Record())
app.register_task(RemindRespondent())

FIRST_PAGE = {"responses": {"name": "Ada Lovelace", "birthday": "1815-12-10"}}


def after_in_any_order(manager: TriggerManager) -> None:
    manager.update_configuration(
        {
            "t_importSubject": {
                "after": ["firstPageReceived", "questionnaireComplete"],
                "run": Record.name,
            },
        }
    )
    # t_importSubject#0 is created, and waits for firstPageReceived.
    manager.fire("questionnaireComplete")
    # Both have fired: t_importSubject#0 is scheduled.
    manager.fire("firstPageReceived", FIRST_PAGE)
    # A one-shot task has run: firing its triggers again does nothing to it.
    manager.fire("firstPageReceived", FIRST_PAGE)


def task_names_are_triggers(manager: TriggerManager) -> None:
    manager.update_configuration(
        {
            "t_importSubject": {
                "after": ["firstPageReceived", "questionnaireComplete"],
                "run": Record.name,
            },
            # Runs when t_importSubject has finished, with what it returned.
            "t_welcome": {"after": ["t_importSubject"], "run": Record.name},
        }
    )
    manager.fire("firstPageReceived", FIRST_PAGE)
    manager.fire("questionnaireComplete")


def run_names_a_registered_task(manager: TriggerManager) -> None:
    manager.update_configuration(
        {
            "t_importSubject": {
                "after": ["firstPageReceived"],
                "run": Record.name,  # "directives.Record", as registered with Celery
            },
        }
    )


def and_every_page(manager: TriggerManager) -> None:
    manager.update_configuration(
        {
            "t_importResponses": {
                "after": ["subjectImported"],
                "andEvery": "pageReceived",
                "run": Record.name,
            },
        }
    )
    manager.fire("pageReceived", {"page": 2})  # t_importResponses#0, waiting
    manager.fire("pageReceived", {"page": 3})  # t_importResponses#1, waiting
    # Both waiting instances take it and are scheduled.
    manager.fire("subjectImported", {"subjectId": 7})
    # A new instance, t_importResponses#2, takes the latest subjectImported
    # kwargs and is scheduled at once.
    manager.fire("pageReceived", {"page": 4})


def and_every_alone(manager: TriggerManager) -> None:
    manager.update_configuration(
        {
            # after may be empty when andEvery is given: one instance per fire.
            "t_logPage": {"after": [], "andEvery": "pageReceived", "run": Record.name},
        }
    )
    for number in (1, 2, 3):
        manager.fire("pageReceived", {"page": number})  # t_logPage#0, #1, #2


def unless_embedded(manager: TriggerManager) -> None:
    manager.update_configuration(
        {
            "t_importBrowserMetadata": {
                "after": ["subjectImported", "pageReceived"],
                "unless": ["isEmbeddedApplication"],
                "run": Record.name,
            },
        }
    )
    # t_importBrowserMetadata#0 is created, waiting for subjectImported.
    manager.fire("pageReceived", {"page": 2, "browser": {"agent": "Firefox"}})
    # Its unless triggers have all fired: t_importBrowserMetadata#0 is abandoned.
    manager.fire("isEmbeddedApplication")
    # Nothing left to run: the task is one-shot and its instance is resolved.
    manager.fire("subjectImported", {"subjectId": 7})


def unless_needs_all_its_triggers(manager: TriggerManager) -> None:
    manager.update_configuration(
        {
            "t_sendReminder": {
                "after": [],
                "andEvery": "reminderDue",
                "unless": ["questionnaireComplete", "reportSent"],
                "run": Record.name,
            },
        }
    )
    # Only one of the two unless triggers has fired: reminders still run.
    manager.fire("questionnaireComplete")
    manager.fire("reminderDue", {"day": 1})  # t_sendReminder#0 is scheduled
    # Now both have fired...
    manager.fire("reportSent")
    # ... so every instance created from now on is abandoned as it is created.
    manager.fire("reminderDue", {"day": 2})  # t_sendReminder#1, abandoned


def with_params_deep_merge(manager: TriggerManager) -> None:
    manager.update_configuration(
        {
            "t_computeScore": {
                "after": ["questionnaireComplete", "scoring"],
                "run": Record.name,
                "withParams": {
                    # A key no trigger is named after: it reaches the task as is.
                    "model": {"name": "Psych 01", "version": 2},
                    # A key that is also a trigger: merged under its kwargs.
                    "scoring": {"scale": 100, "options": {"round": True, "floor": 0}},
                },
            },
        }
    )
    manager.fire("questionnaireComplete")
    manager.fire("scoring", {"scale": 10, "options": {"floor": 1}})
    # The task receives:
    # {"questionnaireComplete": {},
    #  "model": {"name": "Psych 01", "version": 2},
    #  "scoring": {"scale": 10, "options": {"round": True, "floor": 1}}}


def using_a_runner(manager: TriggerManager) -> None:
    manager.update_configuration(
        {
            "t_importSubject": {
                "after": ["firstPageReceived"],
                "run": Record.name,
                # Run it in a thread of the process that fired, not on a worker.
                "using": "threading",
            },
        }
    )
    manager.fire("firstPageReceived", FIRST_PAGE)


def within_a_deadline(manager: TriggerManager) -> None:
    manager.update_configuration(
        {
            "t_importSubject": {
                "after": ["firstPageReceived", "questionnaireComplete"],
                "run": Record.name,
                "within": 3 * 24 * 3600,  # three days, in seconds
            },
            # If the questionnaire is not complete in time, remind the respondent.
            "t_remind": {"after": ["t_importSubject.timeout"], "run": RemindRespondent.name},
        }
    )
    # t_importSubject#0 is created with a deadline three days from now.
    manager.fire("firstPageReceived", FIRST_PAGE)


def custom_directives(manager: TriggerManager) -> dict[str, Any]:
    manager.update_configuration(
        {
            "t_importSubject": {
                "after": ["firstPageReceived", "questionnaireComplete"],
                "run": Record.name,
                # Not a directive the app knows: kept for a custom manager to read.
                "notifyOnFailure": ["research-team@example.com"],
            },
        }
    )
    config = manager.session.configs.get(name="t_importSubject")
    return config.extras  # {"notifyOnFailure": ["research-team@example.com"]}


def latest_kwargs_for_new_instances(manager: TriggerManager) -> None:
    manager.update_configuration(
        {
            "t_importSubject": {
                "after": ["firstPageReceived", "questionnaireComplete"],
                "run": Record.name,
            },
        }
    )
    manager.fire("firstPageReceived", {"responses": {"name": "Ada"}})
    # t_importSubject#0 already saw firstPageReceived: it keeps the first kwargs.
    manager.fire("firstPageReceived", {"responses": {"name": "Ada Lovelace"}})
    manager.fire("questionnaireComplete")  # t_importSubject#0 runs with {"name": "Ada"}


def not_retroactive(manager: TriggerManager) -> None:
    manager.fire("firstPageReceived", {"responses": {"name": "Ada"}})
    manager.fire("firstPageReceived", {"responses": {"name": "Ada Lovelace"}})
    # Configuring a task creates and schedules nothing, even though one of
    # its triggers has fired...
    manager.update_configuration(
        {
            "t_importSubject": {
                "after": ["firstPageReceived", "questionnaireComplete"],
                "run": Record.name,
            },
        }
    )
    # ... but the next fire that concerns it creates t_importSubject#0 with the
    # latest kwargs of the triggers fired before: {"name": "Ada Lovelace"}.
    manager.fire("questionnaireComplete")


def replacing_a_task(manager: TriggerManager) -> None:
    manager.update_configuration(
        {
            "t_importSubject": {"after": ["firstPageReceived"], "run": Record.name},
            "t_importResponses": {"after": ["pageReceived"], "run": Record.name},
        }
    )
    # Replaces t_importSubject, adds t_computeScore, keeps t_importResponses.
    manager.update_configuration(
        {
            "t_importSubject": {
                "after": ["firstPageReceived", "questionnaireComplete"],
                "run": Record.name,
            },
            "t_computeScore": {"after": ["t_importSubject"], "run": Record.name},
        }
    )


def a_refused_configuration(manager: TriggerManager) -> str:
    try:
        manager.update_configuration(
            {
                "t_importSubject": {"after": ["firstPageReceived"], "run": Record.name},
                "t_computeScore": {
                    "after": ["t_importSubject"],
                    "run": Record.name,
                    "withParams": {"model": "Psych 01"},  # not a dict of dicts
                },
            }
        )
    except ConfigurationError as exc:
        # Nothing was stored, not even the valid t_importSubject.
        return str(exc)
    raise AssertionError("the configuration should have been refused")
