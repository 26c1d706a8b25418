"""Run a questionnaire session end to end and print what happened."""

import datetime
import time
from typing import Any

from django.core.management.base import BaseCommand
from django.urls import reverse

from django_triggers.manager import TriggerManager
from django_triggers.runners import ThreadingTaskRunner
from example_project.questionnaire import services


def wait_for_tasks(manager: TriggerManager, timeout: float) -> None:
    """Wait until no instance of the session is scheduled or running, for up to ``timeout``.

    Threads of the ``threading`` runner are joined; instances sent to Celery
    workers are polled.
    """
    ThreadingTaskRunner.join_all(timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(
        instance.status in services.IN_PROGRESS_STATUSES
        for instance in manager.get_unresolved_instances()
    ):
        time.sleep(0.2)


class Command(BaseCommand):
    help = (
        "Answer one questionnaire (first page, two more pages, completion) in a new "
        "session, the way its views do, wait for its tasks, and print every instance's status."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--embedded",
            action="store_true",
            help="Answer from an embedded application (browser metadata is then not imported).",
        )

    def handle(self, *args: Any, embedded: bool = False, **options: Any) -> None:
        manager = services.start_questionnaire(embedded=embedded)
        self.stdout.write(f"Session {manager.session_uid}, runner: {manager.default_runner_name}")

        services.receive_first_page(
            manager, {"name": "Ada Lovelace", "birthday": datetime.date(1815, 12, 10)}
        )
        services.receive_page(manager, 2, {"mood": "good", "sleep_hours": 8}, user_agent="demo")
        services.receive_page(
            manager, 3, {"comments": "Clear questions.", "recommend": True}, user_agent="demo"
        )
        services.complete_questionnaire(manager)
        wait_for_tasks(manager, timeout=60)

        self.stdout.write("")
        self.stdout.write(f"{'instance':<28} {'status':<10} result")
        for task in services.session_status(manager):
            for instance in task.instances:
                self.stdout.write(f"{instance.name:<28} {instance.status:<10} {instance.result}")
        unresolved = manager.get_unresolved_instances()
        if unresolved:
            self.stderr.write(f"Unresolved: {', '.join(i.name for i in unresolved)}")
        else:
            self.stdout.write(self.style.SUCCESS("Every instance is resolved."))
        self.next_steps(manager)

    def next_steps(self, manager: TriggerManager) -> None:
        """Where to look at the session next: the shell, the status page, the admin."""
        uid = manager.session_uid
        base = "http://127.0.0.1:8000"
        status = reverse("questionnaire:status", args=[uid])
        admin = reverse("admin:django_triggers_triggersession_change", args=[manager.session.pk])
        self.stdout.write("")
        self.stdout.write("Next steps:")
        self.stdout.write(f"  python manage.py triggers_show {uid}")
        self.stdout.write(f"  python manage.py triggers_graph {uid}")
        self.stdout.write("  python manage.py createsuperuser   # once, for the admin")
        self.stdout.write("  python manage.py runserver")
        self.stdout.write(f"  then open {base}{status} (the status page)")
        self.stdout.write(f"  and {base}{admin} (the session in the admin)")
