import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_triggers.management.base import get_manager, write_json
from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance
from django_triggers.text import printable

#: Longest kwargs shown in full in the plain output (``--json`` shows them all).
KWARGS_WIDTH = 200


class Command(BaseCommand):
    help = (
        "Show a trigger session: its configuration, the triggers fired in order, every task "
        "instance with its status, what each unstarted instance is still waiting for, and the "
        "failures (exception type and message). Long kwargs are shortened; --json prints "
        "everything: the manager's debug_repr() with a 'waiting' entry per unstarted instance."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session", help="The uid of the session.")
        parser.add_argument("--json", action="store_true", help="Print the session as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        manager = get_manager(options["session"], read_only=True)
        data = manager.debug_repr()
        data["waiting"] = {
            name: manager.waiting_for(name)
            for name, instance in data["instances"].items()
            if instance["status"] == TaskInstance.UNSTARTED
        }
        if options["json"]:
            write_json(self.stdout, data)
        else:
            self.show(manager, data)

    def show(self, manager: TriggerManager, data: dict[str, Any]) -> None:
        write = self.write_line
        session = manager.session
        self.stdout.write(self.style.MIGRATE_HEADING(f"Session {printable(manager.session_uid)}"))
        write(f"  manager: {session.manager_class or TriggerManager.class_path()}")
        write(f"  created: {session.created.isoformat()}")

        self.heading("Configuration", data["configuration"])
        for task, directives in data["configuration"].items():
            write(f"  {task}")
            for directive, value in directives.items():
                write(f"    {directive}: {json.dumps(value)}")

        self.heading("Fired triggers", data["fired_triggers"])
        for number, fired in enumerate(data["fired_triggers"], 1):
            write(
                f"  {number}. {fired['fired_at']}  {fired['trigger_name']}  "
                f"({fired['source']})  {shorten(fired['kwargs'])}"
            )

        self.heading("Instances", data["instances"])
        # Names are padded as shown, escapes included, so that statuses line up.
        shown_names = {name: printable(name) for name in data["instances"]}
        width = max(map(len, shown_names.values()), default=0)
        for name, instance in data["instances"].items():
            line = f"  {shown_names[name]:<{width}}  {instance['status']}"
            if instance["parent"]:
                line += f"  (replays {instance['parent']}, retry {instance['retries']})"
            write(line)

        self.heading("Waiting", data["waiting"])
        for name, waiting in data["waiting"].items():
            line = f"  {name} waits for: {', '.join(waiting['after_missing']) or 'nothing'}"
            if waiting["after_fired"]:
                line += f" (has {', '.join(waiting['after_fired'])})"
            if waiting["unless_missing"] or waiting["unless_fired"]:
                line += (
                    f"; abandoned once {', '.join(waiting['unless_missing'])} "
                    f"{'fires' if len(waiting['unless_missing']) == 1 else 'fire'}"
                )
                if waiting["unless_fired"]:
                    line += f" (already fired: {', '.join(waiting['unless_fired'])})"
            write(line)

        failures = {
            name: instance["metadata"]
            for name, instance in data["instances"].items()
            if instance["status"] == TaskInstance.FAILED
        }
        self.heading("Failures", failures)
        for name, metadata in failures.items():
            write(
                f"  {name}: {metadata.get('exception_type', 'unknown exception')}: "
                f"{metadata.get('exception_message', '')}"
            )
            if metadata.get("exception_context"):
                write(f"    context: {shorten(metadata['exception_context'])}")

    def write_line(self, line: str) -> None:
        """Write a line of stored data, its control characters spelled out."""
        self.stdout.write(printable(line))

    def heading(self, title: str, items: Any) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(f"{title} ({len(items)})"))
        if not items:
            self.stdout.write("  none")


def shorten(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= KWARGS_WIDTH else f"{text[: KWARGS_WIDTH - 3]}..."
