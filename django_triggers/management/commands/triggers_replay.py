from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from django_triggers.management.base import (
    check_name_argument,
    get_manager,
    manager_errors,
    parse_json_object,
    wait_for_task_threads,
    write_json,
)
from django_triggers.models import TaskInstance
from django_triggers.routers import session_database
from django_triggers.text import printable


class Command(BaseCommand):
    help = (
        "Replay failed task instances of a session: each is marked 'replayed' and a clone "
        "with the next number is scheduled. Name the instances, or give --all-failed. "
        "--kwargs replaces the kwargs of the named triggers in every clone. Either every "
        "instance is replayed or, if one cannot be (unknown, not failed), none is."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session", help="The uid of the session.")
        parser.add_argument(
            "instances", nargs="*", metavar="INSTANCE", help="Names of failed instances."
        )
        parser.add_argument(
            "--all-failed", action="store_true", help="Replay every failed instance of the session."
        )
        parser.add_argument(
            "--kwargs",
            metavar="JSON",
            help="Replacement kwargs: a JSON object mapping trigger names to their new kwargs.",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the replays and their new instances as JSON."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names: list[str] = [
            check_name_argument(name, "the instance name")
            for name in dict.fromkeys(options["instances"])
        ]
        if bool(names) == options["all_failed"]:
            raise CommandError("name the failed instances to replay, or give --all-failed")
        replacement_kwargs = (
            parse_json_object(options["kwargs"], "--kwargs")
            if options["kwargs"] is not None
            else None
        )
        manager = get_manager(options["session"])
        with transaction.atomic(using=session_database(manager.session_uid)), manager_errors():
            if options["all_failed"]:
                names = [
                    instance.name
                    for instance in manager.get_unresolved_instances()
                    if instance.status == TaskInstance.FAILED
                ]
            replays = [
                (name, manager.replay_failed_instance(name, replacement_kwargs).name)
                for name in names
            ]
        if options["json"]:
            write_json(
                self.stdout,
                {
                    "session": manager.session_uid,
                    "replayed": [
                        {"instance": name, "new_instance": new_name} for name, new_name in replays
                    ],
                },
            )
        elif replays:
            for name, new_name in replays:
                self.stdout.write(f"{printable(name)} replayed as {printable(new_name)}")
        else:
            self.stdout.write(f"No failed instance in session {manager.session_uid!r}")
        wait_for_task_threads()
