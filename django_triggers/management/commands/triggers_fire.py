from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from django_triggers.management.base import (
    get_manager,
    manager_errors,
    parse_json_object,
    read_json_file,
    wait_for_task_threads,
    write_json,
)
from django_triggers.models import FiredTrigger
from django_triggers.routers import session_database
from django_triggers.text import printable


class Command(BaseCommand):
    help = (
        "Fire a trigger in a session, as the application would (the fire is recorded with the "
        "source 'command'), and print the task instances it scheduled. The session must exist "
        "unless --create is given. Instances run by the threading runner are awaited before "
        "the command exits."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session", help="The uid of the session.")
        parser.add_argument("trigger", help="The name of the trigger to fire.")
        kwargs = parser.add_mutually_exclusive_group()
        kwargs.add_argument(
            "--kwargs", metavar="JSON", help="The trigger's kwargs, a JSON object (default: {})."
        )
        kwargs.add_argument(
            "--kwargs-file", metavar="PATH", help="Read the trigger's kwargs from a JSON file."
        )
        parser.add_argument(
            "--event-id",
            metavar="ID",
            help="The id of the event behind this fire: a later fire with the same id in the "
            "session changes nothing.",
        )
        parser.add_argument(
            "--create", action="store_true", help="Create the session if it does not exist."
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the scheduled instances as JSON."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        kwargs = self.read_kwargs(options)
        session_uid, trigger = options["session"], options["trigger"]
        # One transaction: a session made by --create is not kept if the fire is refused.
        with transaction.atomic(using=session_database(session_uid)), manager_errors():
            manager = get_manager(session_uid, create=options["create"], offer_create=True)
            scheduled = manager.fire(
                trigger, kwargs, source=FiredTrigger.COMMAND, event_id=options["event_id"]
            )
        names = [instance.name for instance in scheduled]
        if options["json"]:
            write_json(
                self.stdout, {"session": session_uid, "trigger": trigger, "scheduled": names}
            )
        else:
            self.stdout.write(
                f"Fired {trigger!r} in session {session_uid!r}: "
                f"scheduled {printable(', '.join(names)) or 'nothing'}"
            )
        wait_for_task_threads()

    def read_kwargs(self, options: dict[str, Any]) -> dict[str, Any] | None:
        if options["kwargs"] is not None and options["kwargs_file"] is not None:
            raise CommandError("give the kwargs with --kwargs or --kwargs-file, not both")
        if options["kwargs"] is not None:
            return parse_json_object(options["kwargs"], "--kwargs")
        if options["kwargs_file"] is not None:
            return read_json_file(options["kwargs_file"], "kwargs file")
        return None
