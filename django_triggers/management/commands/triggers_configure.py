from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from django_triggers.management.base import (
    get_manager,
    manager_errors,
    read_json_file,
    write_json,
)
from django_triggers.routers import session_database
from django_triggers.text import printable


class Command(BaseCommand):
    help = (
        "Add or replace the tasks of a session's configuration from a JSON file holding an "
        "object of task names to directives, as update_configuration() does: tasks not named "
        "in the file are kept. An invalid configuration is refused as a whole and nothing is "
        "stored. The session must exist unless --create is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session", help="The uid of the session.")
        parser.add_argument("file", metavar="FILE.json", help="The configuration to apply.")
        parser.add_argument(
            "--create", action="store_true", help="Create the session if it does not exist."
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the session's whole configuration afterwards, as JSON.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        session_uid, path = options["session"], options["file"]
        configuration = read_json_file(path, "configuration file")
        # One transaction: a session made by --create is not kept if the configuration is refused.
        with (
            transaction.atomic(using=session_database(session_uid)),
            manager_errors(prefix=f"{path}: "),
        ):
            manager = get_manager(session_uid, create=options["create"], offer_create=True)
            manager.update_configuration(configuration)
        if options["json"]:
            write_json(
                self.stdout,
                {
                    "session": session_uid,
                    "configured": list(configuration),
                    "configuration": manager.get_configuration(),
                },
            )
        else:
            self.stdout.write(
                f"Configured {len(configuration)} task(s) in session {session_uid!r}: "
                f"{printable(', '.join(configuration)) or 'none'}"
            )
