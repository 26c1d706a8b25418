from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count, QuerySet

from django_triggers.graph import workflow_order
from django_triggers.management.base import get_manager, write_json
from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskConfig, TaskInstance, TriggerSession
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
IN_FLIGHT = (TaskInstance.SCHEDULED, TaskInstance.RUNNING)


@dataclass(frozen=True)
class Counts:
    """How much a session holds, counted by the database: enough to know whether it is big."""

    tasks: int
    not_started: int
    #: Instances by status, only the statuses some instance has.
    statuses: dict[str, int]
    fires: int

    @classmethod
    def of(cls, session: TriggerSession, database: str) -> Counts:
        tasks = (
            TaskConfig.objects.using(database)
            .filter(session=session)
            .aggregate(
                tasks=Count("pk"),
                not_started=Count("pk", filter=~TaskConfig.has_instance()),
            )
        )
        statuses = dict(
            TaskInstance.objects.using(database)
            .filter(session=session)
            .order_by()
            .values_list("status")
            .annotate(Count("pk"))
        )
        return cls(
            tasks=tasks["tasks"],
            not_started=tasks["not_started"],
            statuses=statuses,
            fires=FiredTrigger.objects.using(database).filter(session=session).count(),
        )

    @property
    def instances(self) -> int:
        return sum(self.statuses.values())

    def count(self, *statuses: str) -> int:
        return sum(self.statuses.get(status, 0) for status in statuses)

    @property
    def is_big(self) -> bool:
        """Whether a section would print more than :data:`SECTION_LIMIT` lines."""
        return max(self.tasks, self.instances, self.fires) > SECTION_LIMIT


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
        if options["json"]:
            write_json(self.stdout, everything(manager))
            return
        sections = list(dict.fromkeys(options["section"]))
        if not sections and not options["full"]:
            # Counted first, so that a big session is summed up without reading it.
            counts = Counts.of(manager.session, manager.database)
            if counts.is_big:
                self.show_header(manager)
                self.show_summary(manager, counts)
                return
        data = in_workflow_order(everything(manager))
        self.show_header(manager)
        for section in sections or SECTIONS:
            getattr(self, f"show_{section}")(data)

    # -- sections ----------------------------------------------------------------

    def show_header(self, manager: TriggerManager) -> None:
        session = manager.session
        self.stdout.write(self.style.MIGRATE_HEADING(f"Session {printable(manager.session_uid)}"))
        self.write_line(f"  manager: {session.manager_class or TriggerManager.class_path()}")
        self.write_line(f"  created: {session.created.isoformat()}")

    def show_configuration(self, data: dict[str, Any]) -> None:
        self.heading("Configuration", len(data["configuration"]))
        for task, directives in data["configuration"].items():
            self.write_line(f"  {task}")
            for directive, value in directives.items():
                self.write_line(f"    {directive}: {json.dumps(value)}")

    def show_fires(self, data: dict[str, Any]) -> None:
        fires = data["fired_triggers"]
        self.heading("Fired triggers", len(fires))
        for number, fired in enumerate(fires, 1):
            self.write_fire(number, fired)

    def show_instances(self, data: dict[str, Any]) -> None:
        self.heading("Instances", len(data["instances"]))
        # Names are padded as shown, escapes included, so that statuses line up.
        shown_names = {name: printable(name) for name in data["instances"]}
        width = max(map(len, shown_names.values()), default=0)
        for name, instance in data["instances"].items():
            line = f"  {shown_names[name]:<{width}}  {instance['status']}"
            if instance["parent"]:
                line += f"  (replays {instance['parent']}, retry {instance['retries']})"
            self.write_line(line)

    def show_waiting(self, data: dict[str, Any]) -> None:
        self.heading("Waiting", len(data["waiting"]))
        for name, what in data["waiting"].items():
            self.write_waiting(name, what)

    def show_failures(self, data: dict[str, Any]) -> None:
        failures = [
            (name, instance["metadata"])
            for name, instance in data["instances"].items()
            if instance["status"] == TaskInstance.FAILED
        ]
        self.heading("Failures", len(failures))
        for name, metadata in failures:
            self.write_failure(name, metadata)

    def show_summary(self, manager: TriggerManager, counts: Counts) -> None:
        """What a big session holds, what needs attention, and how to see the rest.

        Read with a fixed number of queries, each counting or returning a few
        rows, however big the session: no list is read beyond what it shows.
        """
        session, database = manager.session, manager.database
        instances = TaskInstance.objects.using(database).filter(session=session)
        write = self.write_line
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING("Summary"))
        write(f"  tasks: {counts.tasks} configured, {counts.not_started} without an instance yet")
        by_status = ", ".join(
            f"{status} {counts.statuses[status]}"
            for status, _ in TaskInstance.STATUS_CHOICES
            if counts.statuses.get(status)
        )
        write(f"  instances: {counts.instances}" + (f" ({by_status})" if by_status else ""))
        fires = FiredTrigger.objects.using(database).filter(session=session).order_by("-pk")
        latest = [fired.as_dict() for fired in fires[:SUMMARY_FIRES]][::-1]
        write(
            f"  fires: {counts.fires}"
            + (f", the last at {latest[-1]['fired_at']}" if latest else "")
        )

        # Each list in the order its instances reached their status: what failed
        # first, what may be stuck, what has waited the longest come first.
        failed = counts.count(TaskInstance.FAILED)
        self.heading("Failures", failed)
        for instance in _first(instances.filter(status=TaskInstance.FAILED)):
            self.write_failure(instance.name, instance.metadata)
        self.more(failed - SUMMARY_LIMIT, "failures")

        in_flight = counts.count(*IN_FLIGHT)
        self.heading("In flight", in_flight)
        for instance in _first(instances.filter(status__in=IN_FLIGHT)):
            write(f"  {instance.name}  {instance.status}")
        self.more(in_flight - SUMMARY_LIMIT, "instances")

        waiting = counts.count(TaskInstance.UNSTARTED)
        self.heading("Waiting", waiting)
        unstarted = instances.filter(status=TaskInstance.UNSTARTED).select_related("config")
        for instance in _first(unstarted):
            self.write_waiting(instance.name, instance.waiting_for())
        self.more(waiting - SUMMARY_LIMIT, "waiting")

        self.heading("Tasks without an instance yet", counts.not_started)
        not_started = (
            TaskConfig.objects.using(database)
            .filter(session=session)
            .exclude(TaskConfig.has_instance())
            .order_by("pk")
            .values_list("name", "after", "and_every")[:SUMMARY_LIMIT]
        )
        for task, after, and_every in not_started:
            after = [name for name in after if name != and_every]
            write(f"  {task} waits for: {', '.join(after) or 'its first fire'}")
        self.more(counts.not_started - SUMMARY_LIMIT, "configuration")

        self.heading("Latest fires", counts.fires)
        for number, fired in enumerate(latest, counts.fires - len(latest) + 1):
            self.write_fire(number, fired)
        self.more(counts.fires - len(latest), "fires")

        uid = printable(manager.session_uid)
        self.stdout.write("")
        self.stdout.write(
            f"A summary: the session is big. Each section in full: triggers_show {uid} "
            f"--section {{{','.join(SECTIONS)}}} (or --configuration, --fires, --instances); "
            f"everything: --full, or --json."
        )

    # -- output --------------------------------------------------------------------

    def write_fire(self, number: int, fired: dict[str, Any]) -> None:
        self.write_line(
            f"  {number}. {fired['fired_at']}  {fired['trigger_name']}  "
            f"({fired['source']})  {shorten(fired['kwargs'])}"
        )

    def write_waiting(self, name: str, what: dict[str, list[str]]) -> None:
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

    def write_failure(self, name: str, metadata: dict[str, Any]) -> None:
        self.write_line(
            f"  {name}: {metadata.get('exception_type', 'unknown exception')}: "
            f"{metadata.get('exception_message', '')}"
        )
        if metadata.get("exception_context"):
            self.write_line(f"    context: {shorten(metadata['exception_context'])}")

    def more(self, hidden: int, section: str) -> None:
        """Say how many a list leaves out, and the option that prints them."""
        if hidden > 0:
            self.stdout.write(f"  ... and {hidden} more (--section {section})")

    def write_line(self, line: str) -> None:
        """Write a line of stored data, its control characters spelled out."""
        self.stdout.write(printable(line))

    def heading(self, title: str, count: int) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(f"{title} ({count})"))
        if not count:
            self.stdout.write("  none")


def everything(manager: TriggerManager) -> dict[str, Any]:
    """The manager's ``debug_repr()``, with what each unstarted instance waits for."""
    data = manager.debug_repr()
    unstarted = (
        TaskInstance.objects.using(manager.database)
        .filter(session=manager.session, status=TaskInstance.UNSTARTED)
        .select_related("config")
    )
    waiting = {instance.name: instance.waiting_for() for instance in unstarted}
    # In the order of the instances, as debug_repr() gives them.
    data["waiting"] = {name: waiting[name] for name in data["instances"] if name in waiting}
    return data


def in_workflow_order(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its tasks and instances in workflow order: what runs first comes first."""
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
    data["waiting"] = {
        name: data["waiting"][name] for name in data["instances"] if name in data["waiting"]
    }
    return data


def _first(instances: QuerySet[TaskInstance]) -> list[TaskInstance]:
    """The first instances of a list of the summary: those in their status the longest."""
    return list(instances.order_by("status_changed_at", "pk")[:SUMMARY_LIMIT])


def _task_of(instance_name: str) -> str:
    return instance_name.rpartition("#")[0]


def _number_of(instance_name: str) -> int:
    number = instance_name.rpartition("#")[2]
    return int(number) if number.isdigit() else 0


def shorten(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= KWARGS_WIDTH else f"{text[: KWARGS_WIDTH - 3]}..."
