from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_triggers.configuration import parse_configuration
from django_triggers.management.base import get_manager, manager_errors, read_json_file
from django_triggers.models import TaskConfig
from django_triggers.text import printable


class Command(BaseCommand):
    help = (
        "Check a configuration file (a JSON object of task names to directives) without "
        "storing anything: prints 'valid', or fails with the error naming the task and the "
        "directive. With --session, the file is checked as an update of that session's "
        "configuration, so that cycles through the tasks it already has are found too."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE.json", help="The configuration to check.")
        parser.add_argument(
            "--session",
            metavar="SESSION",
            help="Check the file against this existing session's configuration.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path, session_uid = options["file"], options["session"]
        configuration = read_json_file(path, "configuration file")
        existing_after: dict[str, list[str]] = {}
        if session_uid is not None:
            manager = get_manager(session_uid, read_only=True)
            existing_after = dict(
                TaskConfig.objects.using(manager.database)
                .filter(session=manager.session)
                .values_list("name", "after")
            )
        with manager_errors(prefix=f"{path}: "):
            specs = parse_configuration(configuration, existing_after)
        against = f" for session {session_uid!r}" if session_uid is not None else ""
        names = ", ".join(spec.name for spec in specs) or "none"
        self.stdout.write(f"valid{against}: {len(specs)} task(s) ({printable(names)})")
