"""Run a questionnaire session end to end and print what happened."""

import uuid
from typing import Any

from django.core.management.base import BaseCommand

from django_triggers.manager import TriggerManager
from django_triggers.runners import ThreadingTaskRunner
from example_project.questionnaire.workflow import CONFIGURATION


class Command(BaseCommand):
    help = (
        "Fire the triggers of one questionnaire (first page, two more pages, completion) "
        "into a new session, wait for its tasks, and print every instance's status."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--embedded",
            action="store_true",
            help="Answer from an embedded application (browser metadata is then not imported).",
        )

    def handle(self, *args: Any, embedded: bool = False, **options: Any) -> None:
        session_uid = f"questionnaire-{uuid.uuid4().hex[:8]}"
        manager = TriggerManager(session_uid)
        manager.update_configuration(CONFIGURATION)
        self.stdout.write(f"Session {session_uid}, runner: {manager.default_runner_name}")

        if embedded:
            manager.fire("isEmbeddedApplication")
        first_page = {"name": "Ada Lovelace", "birthday": "1815-12-10"}
        manager.fire("firstPageReceived", {"responses": first_page})
        for page in (2, 3):
            manager.fire(
                "pageReceived",
                {"page": page, "answers": {"q": f"answer {page}"}, "browser": {"agent": "demo"}},
            )
        manager.fire("questionnaireComplete")
        ThreadingTaskRunner.join_all(timeout=60)

        self.stdout.write("")
        self.stdout.write(f"{'instance':<28} {'status':<10} result")
        for instance in manager.session.instances.order_by("task_name", "number"):
            self.stdout.write(f"{instance.name:<28} {instance.status:<10} {instance.result}")
        unresolved = manager.get_unresolved_instances()
        if unresolved:
            self.stderr.write(f"Unresolved: {', '.join(i.name for i in unresolved)}")
        else:
            self.stdout.write(self.style.SUCCESS("Every instance is resolved."))
