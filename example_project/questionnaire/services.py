"""What the questionnaire tells django-triggers, in one place.

The views and the ``demo`` command both call these functions: each step of a
questionnaire fires one trigger into the questionnaire's session, and
:func:`session_status` reads back what its tasks did.
"""

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from django_triggers.graph import workflow_order
from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance
from example_project.questionnaire.workflow import CONFIGURATION

#: Statuses of instances that are on their way: the status page refreshes while any is.
IN_PROGRESS_STATUSES = frozenset({TaskInstance.SCHEDULED, TaskInstance.RUNNING})


def start_questionnaire(*, embedded: bool = False) -> TriggerManager:
    """Open a new session, configured with the questionnaire's workflow.

    ``embedded`` records that the questionnaire is answered from inside
    another application (``isEmbeddedApplication``), which has no browser
    metadata worth importing.
    """
    with transaction.atomic():
        manager = TriggerManager(f"questionnaire-{uuid.uuid4().hex[:12]}")
        manager.update_configuration(CONFIGURATION)
        if embedded:
            manager.fire("isEmbeddedApplication")
    return manager


def receive_first_page(manager: TriggerManager, responses: Mapping[str, Any]) -> None:
    """The first page holds who is answering: ``name`` and ``birthday``."""
    manager.fire("firstPageReceived", {"responses": dict(responses)})


def receive_page(
    manager: TriggerManager, page: int, answers: Mapping[str, Any], *, user_agent: str
) -> None:
    """Any page after the first, with the ``User-Agent`` of the browser that sent it."""
    manager.fire(
        "pageReceived",
        {"page": page, "answers": dict(answers), "browser": {"agent": user_agent}},
    )


def complete_questionnaire(manager: TriggerManager) -> None:
    """The respondent has submitted the questionnaire."""
    manager.fire("questionnaireComplete")


@dataclass(frozen=True)
class InstanceStatus:
    name: str
    status: str
    result: Any
    #: The ``after`` triggers an unstarted instance has not seen fire yet.
    waiting_for: list[str] = field(default_factory=list)

    @property
    def result_json(self) -> str:
        """The result as JSON, or an empty string when there is none."""
        return "" if self.result is None else json.dumps(self.result)


@dataclass(frozen=True)
class TaskStatus:
    name: str
    run: str
    #: Its ``after`` triggers, ``andEvery`` included.
    after: list[str]
    unless: list[str]
    instances: list[InstanceStatus]


def session_status(manager: TriggerManager) -> list[TaskStatus]:
    """Every configured task of the session, in workflow order (what runs first comes
    first), with its instances and their statuses."""
    configuration = manager.get_configuration()
    order = workflow_order(
        {
            name: [*directives["after"], *filter(None, [directives.get("andEvery")])]
            for name, directives in configuration.items()
        }
    )
    tasks = []
    for name in order:
        directives = configuration[name]
        instances = [
            InstanceStatus(
                name=instance.name,
                status=instance.status,
                result=instance.result,
                waiting_for=(
                    manager.waiting_for(instance)["after_missing"]
                    if instance.status == TaskInstance.UNSTARTED
                    else []
                ),
            )
            for instance in manager.instances_of_task(name)
        ]
        and_every = [directives["andEvery"]] if "andEvery" in directives else []
        tasks.append(
            TaskStatus(
                name=name,
                run=directives["run"],
                after=[*directives["after"], *and_every],
                unless=list(directives.get("unless", [])),
                instances=instances,
            )
        )
    return tasks
