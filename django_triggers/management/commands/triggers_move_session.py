from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_triggers.exceptions import SessionNotFound
from django_triggers.management.base import (
    add_database_argument,
    check_name_argument,
    selected_databases,
    write_json,
)
from django_triggers.moving import (
    CopyMismatch,
    MovedSession,
    MoveRefused,
    misplaced_sessions,
    move_session,
)
from django_triggers.routers import session_database, session_databases
from django_triggers.text import printable


class Command(BaseCommand):
    help = (
        "Move a session, with its configuration, fires and instances, to the database the "
        "database routers now place it in: copy it there in one transaction, check the copy, "
        "then delete it from its old database, holding its lock throughout. Refused, changing "
        "nothing, while an instance of the session is running. With --misplaced, "
        "move every session found in another database than the routers' (after an alias was "
        "added to TRIGGERS_SESSION_DATABASES, say)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "session", nargs="?", help="The uid of the session to move (or give --misplaced)."
        )
        parser.add_argument(
            "--to",
            metavar="ALIAS",
            help="The database to move the session to: the one the routers place it in.",
        )
        parser.add_argument(
            "--misplaced",
            action="store_true",
            help="Move every session that is not where the routers place it.",
        )
        add_database_argument(parser)
        parser.add_argument("--json", action="store_true", help="Print what was moved as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["misplaced"]:
            if options["session"] is not None or options["to"] is not None:
                raise CommandError(
                    "--misplaced moves each session where the routers place it: "
                    "give no session and no --to"
                )
            self.move_misplaced(options)
            return
        if options["session"] is None or options["to"] is None:
            raise CommandError(
                "name the session and the database to move it to (--to), or give --misplaced"
            )
        if options["database"] is not None:
            raise CommandError(
                "--database goes with --misplaced; a session is found wherever it is"
            )
        session_uid = check_name_argument(options["session"], "the session uid")
        try:
            moved = move_session(session_uid, options["to"])
        except (MoveRefused, SessionNotFound, CopyMismatch, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.report([moved], [], options["json"])

    def move_misplaced(self, options: dict[str, Any]) -> None:
        """Move each misplaced session of the chosen databases; report those that could not be."""
        moved: list[MovedSession] = []
        refused: list[tuple[str, str]] = []
        for database in selected_databases(options["database"]) or session_databases():
            for session_uid in misplaced_sessions(database):
                try:
                    moved.append(move_session(session_uid, session_database(session_uid)))
                except (MoveRefused, SessionNotFound, CopyMismatch, ValueError) as exc:
                    refused.append((session_uid, str(exc)))
        self.report(moved, refused, options["json"])
        if refused:
            raise CommandError(f"{len(refused)} session(s) could not be moved; run it again later")

    def report(
        self, moved: list[MovedSession], refused: list[tuple[str, str]], as_json: bool
    ) -> None:
        if as_json:
            write_json(
                self.stdout,
                {
                    "moved": [
                        {
                            "session": each.session_uid,
                            "from": each.source,
                            "to": each.target,
                            "rows": each.rows,
                        }
                        for each in moved
                    ],
                    "refused": [{"session": uid, "error": error} for uid, error in refused],
                },
            )
            return
        for each in moved:
            rows = sum(each.rows.values())
            self.stdout.write(
                f"Moved session {printable(repr(each.session_uid))} from {each.source!r} to "
                f"{each.target!r} ({rows} rows)"
            )
        for session_uid, error in refused:
            self.stderr.write(f"Not moved: {printable(repr(session_uid))}: {printable(error)}")
        if not moved and not refused:
            self.stdout.write("No session to move")
