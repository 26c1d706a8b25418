from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from django_triggers.management.base import (
    MANAGER_ERRORS,
    check_batch_size,
    check_name_argument,
    describe_refusal,
    get_manager,
    manager_errors,
    read_json_file,
    wait_for_task_threads,
)
from django_triggers.manager import TriggerManager
from django_triggers.models import TriggerSession
from django_triggers.routers import session_database
from django_triggers.text import printable


class Command(BaseCommand):
    help = (
        "Replay a session into a new one: create NEW_SESSION (it must not exist), configure it "
        "with --configuration or a copy of the source's configuration, then fire into it, in "
        "order, the triggers the application fired in the source, printing what each fire "
        "scheduled. Cascades happen as the new session's tasks run, not at their recorded "
        "places. --dry-run does all of it in a transaction that is rolled back: nothing is "
        "kept and no task runs, so it shows what the recorded fires would schedule, but not "
        "what the tasks' cascades would then schedule."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", metavar="SOURCE_SESSION", help="The session to replay.")
        parser.add_argument(
            "session", metavar="NEW_SESSION", help="The uid of the session to create."
        )
        parser.add_argument(
            "--configuration",
            metavar="FILE.json",
            help="Configure the new session from this file instead of copying the source's "
            "configuration.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Roll everything back at the end: show what would be scheduled, keep nothing, "
            "run nothing (so no cascade happens).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="Recorded fires read at a time (default: %(default)s).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = check_batch_size(options["batch_size"])
        source = get_manager(options["source"])
        new_uid = check_name_argument(options["session"], "the new session uid")
        if TriggerSession.objects.using(session_database(new_uid)).filter(uid=new_uid).exists():
            raise CommandError(f"session {new_uid!r} already exists; replay into a new session uid")
        if options["configuration"] is not None:
            configuration = read_json_file(options["configuration"], "configuration file")
            origin = options["configuration"]
        else:
            configuration = source.get_configuration()
            origin = f"session {source.session_uid!r}"

        if options["dry_run"]:
            self.stdout.write(
                "Dry run: nothing is kept and no task runs, so cascades do not happen."
            )
            with transaction.atomic(using=session_database(new_uid)):
                self.replay(source, new_uid, configuration, origin, batch_size, dry_run=True)
                # Dropping the transaction also drops its on_commit callbacks: nothing
                # reaches a runner.
                transaction.set_rollback(True)
            self.stdout.write(f"Rolled back: session {new_uid!r} was not created.")
        else:
            try:
                self.replay(source, new_uid, configuration, origin, batch_size, dry_run=False)
            finally:
                wait_for_task_threads()

    def replay(
        self,
        source: TriggerManager,
        new_uid: str,
        configuration: dict[str, Any],
        origin: str,
        batch_size: int,
        *,
        dry_run: bool,
    ) -> None:
        # The new session is managed like the source, so the same hooks and directives apply.
        with (
            transaction.atomic(using=session_database(new_uid)),
            manager_errors(prefix=f"{origin}: "),
        ):
            manager = type(source)(new_uid)
            manager.update_configuration(configuration)
        self.stdout.write(
            f"{'Would create' if dry_run else 'Created'} session {new_uid!r} with "
            f"{len(configuration)} task(s) configured from {origin}"
        )
        verb = "would schedule" if dry_run else "scheduled"
        count = 0
        try:
            for fired, scheduled in manager.refire_from(source.session_uid, batch_size=batch_size):
                count += 1
                names = ", ".join(instance.name for instance in scheduled) or "nothing"
                self.stdout.write(
                    f"  {count}. {printable(fired.trigger_name)} "
                    f"(fired {fired.fired_at.isoformat()}): {verb} {printable(names)}"
                )
        except MANAGER_ERRORS as exc:
            kept = "" if dry_run else f"; session {new_uid!r} keeps the fires made so far"
            raise CommandError(
                f"stopped after re-firing {count} fire(s): {describe_refusal(exc)}{kept}"
            ) from exc
        self.stdout.write(
            f"Re-fired {count} application fire(s) of {source.session_uid!r} into {new_uid!r}"
        )
