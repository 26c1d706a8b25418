import json
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_triggers.graph import workflow_order
from django_triggers.management.base import get_manager, write_json
from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance
from django_triggers.text import printable

#: Longest kwargs shown in full in the plain output (``--json`` shows them all).
KWARGS_WIDTH = 200
#: A session with more lines than this in one of its sections is big: it is
#: summed up, and each section is printed in full on demand.
SECTION_LIMIT = 40
#: How many lines each list of the summary of a big session shows.
SUMMARY_LIMIT = 15
#: How many of the latest fires the summary shows.
SUMMARY_FIRES = 5

SECTIONS = ("configuration", "fires", "instances", "waiting", "failures")


class Command(BaseCommand):
    help = (
        "Show a trigger session: its configuration, the triggers fired in order, every task "
        "instance with its status, what each unstarted instance is still waiting for, and the "
        "failures (exception type and message). A big session is summed up instead: counts "
        "by status, what failed, what is in flight or waiting, the latest fires; --section "
        "(or --configuration, --fires, --instances) prints one section in full, --full all "
        "of them. Long kwargs are shortened; --json prints everything: the manager's "
        "debug_repr() with a 'waiting' entry per unstarted instance."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session", help="The uid of the session.")
        parser.add_argument("--json", action="store_true", help="Print the session as JSON.")
        parser.add_argument(
            "--section",
            action="append",
            choices=SECTIONS,
            default=[],
            help="Print only this section, in full (may be repeated).",
        )
        for name in ("configuration", "fires", "instances"):
            parser.add_argument(
                f"--{name}",
                action="append_const",
                const=name,
                dest="section",
                help=f"The same as --section {name}.",
            )
        parser.add_argument(
            "--full",
            action="store_true",
            help="Print every section in full, however big the session.",
        )

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
            return
        order = workflow_order(
            {
                task: [*directives.get("after", []), *filter(None, [directives.get("andEvery")])]
                for task, directives in data["configuration"].items()
            }
        )
        rank = {name: index for index, name in enumerate(order)}
        data["instances"] = dict(
            sorted(
                data["instances"].items(),
                key=lambda item: (rank.get(_task_of(item[0]), len(rank)), _number_of(item[0])),
            )
        )
        data["configuration"] = {name: data["configuration"][name] for name in order}
        self.show_header(manager)
        sections = list(dict.fromkeys(options["section"]))
        big = any(len(data[key]) > SECTION_LIMIT for key in _SECTION_DATA.values())
        if sections:
            for section in sections:
                getattr(self, f"show_{section}")(data)
        elif big and not options["full"]:
            self.show_summary(manager, data)
        else:
            for section in SECTIONS:
                getattr(self, f"show_{section}")(data)

    # -- sections ----------------------------------------------------------------

    def show_header(self, manager: TriggerManager) -> None:
        session = manager.session
        self.stdout.write(self.style.MIGRATE_HEADING(f"Session {printable(manager.session_uid)}"))
        self.write_line(f"  manager: {session.manager_class or TriggerManager.class_path()}")
        self.write_line(f"  created: {session.created.isoformat()}")

    def show_configuration(self, data: dict[str, Any]) -> None:
        self.heading("Configuration", data["configuration"])
        for task, directives in data["configuration"].items():
            self.write_line(f"  {task}")
            for directive, value in directives.items():
                self.write_line(f"    {directive}: {json.dumps(value)}")

    def show_fires(self, data: dict[str, Any], limit: int | None = None) -> None:
        fires = data["fired_triggers"]
        shown = fires if limit is None else fires[-limit:]
        title = "Fired triggers" if limit is None else "Latest fires"
        self.heading(title, fires)
        first = len(fires) - len(shown) + 1
        for number, fired in enumerate(shown, first):
            self.write_line(
                f"  {number}. {fired['fired_at']}  {fired['trigger_name']}  "
                f"({fired['source']})  {shorten(fired['kwargs'])}"
            )
        self.more(len(fires) - len(shown), "fires")

    def show_instances(self, data: dict[str, Any]) -> None:
        self.heading("Instances", data["instances"])
        # Names are padded as shown, escapes included, so that statuses line up.
        shown_names = {name: printable(name) for name in data["instances"]}
        width = max(map(len, shown_names.values()), default=0)
        for name, instance in data["instances"].items():
            line = f"  {shown_names[name]:<{width}}  {instance['status']}"
            if instance["parent"]:
                line += f"  (replays {instance['parent']}, retry {instance['retries']})"
            self.write_line(line)

    def show_waiting(self, data: dict[str, Any], limit: int | None = None) -> None:
        waiting = list(data["waiting"].items())
        shown = waiting if limit is None else waiting[:limit]
        self.heading("Waiting", waiting)
        for name, what in shown:
            line = f"  {name} waits for: {', '.join(what['after_missing']) or 'nothing'}"
            if what["after_fired"]:
                line += f" (has {', '.join(what['after_fired'])})"
            if what["unless_missing"] or what["unless_fired"]:
                line += (
                    f"; abandoned once {', '.join(what['unless_missing'])} "
                    f"{'fires' if len(what['unless_missing']) == 1 else 'fire'}"
                )
                if what["unless_fired"]:
                    line += f" (already fired: {', '.join(what['unless_fired'])})"
            self.write_line(line)
        self.more(len(waiting) - len(shown), "waiting")

    def show_failures(self, data: dict[str, Any], limit: int | None = None) -> None:
        failures = [
            (name, instance["metadata"])
            for name, instance in data["instances"].items()
            if instance["status"] == TaskInstance.FAILED
        ]
        shown = failures if limit is None else failures[:limit]
        self.heading("Failures", failures)
        for name, metadata in shown:
            self.write_line(
                f"  {name}: {metadata.get('exception_type', 'unknown exception')}: "
                f"{metadata.get('exception_message', '')}"
            )
            if metadata.get("exception_context"):
                self.write_line(f"    context: {shorten(metadata['exception_context'])}")
        self.more(len(failures) - len(shown), "failures")

    def show_summary(self, manager: TriggerManager, data: dict[str, Any]) -> None:
        """What a big session holds, what needs attention, and how to see the rest."""
        instances = data["instances"]
        counts = Counter(instance["status"] for instance in instances.values())
        started = {_task_of(name) for name in instances}
        not_started = [task for task in data["configuration"] if task not in started]
        write = self.write_line
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING("Summary"))
        write(
            f"  tasks: {len(data['configuration'])} configured, "
            f"{len(not_started)} without an instance yet"
        )
        by_status = ", ".join(
            f"{status} {counts[status]}"
            for status, _ in TaskInstance.STATUS_CHOICES
            if counts[status]
        )
        write(f"  instances: {len(instances)}" + (f" ({by_status})" if by_status else ""))
        fires = data["fired_triggers"]
        write(
            f"  fires: {len(fires)}" + (f", the last at {fires[-1]['fired_at']}" if fires else "")
        )

        self.show_failures(data, SUMMARY_LIMIT)
        in_flight = [
            (name, instance["status"])
            for name, instance in instances.items()
            if instance["status"] in (TaskInstance.SCHEDULED, TaskInstance.RUNNING)
        ]
        self.heading("In flight", in_flight)
        for name, status in in_flight[:SUMMARY_LIMIT]:
            write(f"  {name}  {status}")
        self.more(len(in_flight) - SUMMARY_LIMIT, "instances")
        self.show_waiting(data, SUMMARY_LIMIT)
        self.heading("Tasks without an instance yet", not_started)
        for task in not_started[:SUMMARY_LIMIT]:
            after = data["configuration"][task].get("after", [])
            write(f"  {task} waits for: {', '.join(after) or 'its first fire'}")
        self.more(len(not_started) - SUMMARY_LIMIT, "configuration")
        self.show_fires(data, SUMMARY_FIRES)

        uid = printable(manager.session_uid)
        self.stdout.write("")
        self.stdout.write(
            f"A summary: the session is big. Each section in full: triggers_show {uid} "
            f"--section {{{','.join(SECTIONS)}}} (or --configuration, --fires, --instances); "
            f"everything: --full, or --json."
        )

    # -- output --------------------------------------------------------------------

    def more(self, hidden: int, section: str) -> None:
        """Say how many a list leaves out, and the option that prints them."""
        if hidden > 0:
            self.stdout.write(f"  ... and {hidden} more (--section {section})")

    def write_line(self, line: str) -> None:
        """Write a line of stored data, its control characters spelled out."""
        self.stdout.write(printable(line))

    def heading(self, title: str, items: Any) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(f"{title} ({len(items)})"))
        if not items:
            self.stdout.write("  none")


#: The data each section prints.
_SECTION_DATA = {
    "configuration": "configuration",
    "fires": "fired_triggers",
    "instances": "instances",
    "waiting": "waiting",
}


def _task_of(instance_name: str) -> str:
    return instance_name.rpartition("#")[0]


def _number_of(instance_name: str) -> int:
    number = instance_name.rpartition("#")[2]
    return int(number) if number.isdigit() else 0


def shorten(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= KWARGS_WIDTH else f"{text[: KWARGS_WIDTH - 3]}..."
