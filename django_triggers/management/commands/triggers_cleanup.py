from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from django_triggers.cleanup import delete_resolved_sessions, parse_age
from django_triggers.management.base import (
    add_database_argument,
    check_batch_size,
    selected_databases,
    write_json,
)


class Command(BaseCommand):
    help = (
        "Delete the sessions that are over, with their configuration, fires and instances: "
        "those in which every configured task has an instance and every instance is resolved "
        "(finished, skipped, replayed or abandoned), or that were never configured nor fired "
        "into, and whose last activity (creation, configuration change, fire or status "
        "change) is older than --older-than. Works in batches and reports each one; "
        "--dry-run only counts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            required=True,
            metavar="DURATION",
            help="Minimum age of the last activity: 30d, 12h, 90m, 45s, 2w, or seconds (3600).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count the sessions, delete nothing."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="Sessions handled at a time, each batch in its own transaction "
            "(default: %(default)s).",
        )
        add_database_argument(parser)
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the number of sessions deleted (or, dry, to delete) as JSON.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = check_batch_size(options["batch_size"])
        databases = selected_databases(options["database"])
        try:
            older_than = parse_age(options["older_than"])
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}") from None
        now = timezone.now()
        try:
            count = delete_resolved_sessions(
                older_than,
                batch_size=batch_size,
                dry_run=options["dry_run"],
                now=now,
                progress=None if options["json"] else self.stderr.write,
                databases=databases,
            )
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}") from None
        if options["json"]:
            write_json(
                self.stdout,
                {
                    "sessions": count,
                    "dry_run": options["dry_run"],
                    "inactive_since": (now - older_than).isoformat(),
                },
            )
        else:
            verb = "Would delete" if options["dry_run"] else "Deleted"
            self.stdout.write(
                f"{verb} {count} session(s) resolved and inactive since "
                f"{(now - older_than).isoformat()}"
            )
