import json
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_triggers.recovery import DEFAULT_REDISPATCH_AFTER, DEFAULT_STUCK_AFTER, recover


def seconds(value: str, option: str) -> timedelta:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 <= number < float("inf"):
        raise CommandError(f"{option} expects a number of seconds >= 0, not {value!r}")
    return timedelta(seconds=number)


class Command(BaseCommand):
    help = (
        "Hand over again scheduled task instances that never reached their runner or whose "
        "message was lost, abandon instances whose 'within' deadline passed (firing "
        "'<task>.timeout'), and report instances stuck in 'running'. Safe to run on several "
        "machines at once; "
        "run it every minute or so (cron, or Celery beat through "
        "django_triggers.recovery.recover)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--redispatch-after",
            type=str,
            default=str(DEFAULT_REDISPATCH_AFTER.total_seconds()),
            metavar="SECONDS",
            help="Hand over again instances scheduled this long ago and never dispatched "
            "(default: %(default)s).",
        )
        parser.add_argument(
            "--stuck-after",
            type=str,
            default=str(DEFAULT_STUCK_AFTER.total_seconds()),
            metavar="SECONDS",
            help="Hand over again instances dispatched this long ago (and past their eta) "
            "that are still scheduled, and report instances running for longer than this "
            "(default: %(default)s).",
        )
        parser.add_argument(
            "--fail-stuck",
            action="store_true",
            help="Mark instances running for longer than --stuck-after as failed, so they "
            "can be replayed.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="Rows read at a time (default: %(default)s).",
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError(f"--batch-size must be at least 1, not {options['batch_size']}")
        report = recover(
            redispatch_after=seconds(options["redispatch_after"], "--redispatch-after"),
            stuck_after=seconds(options["stuck_after"], "--stuck-after"),
            fail_stuck=options["fail_stuck"],
            batch_size=options["batch_size"],
            progress=None if options["json"] else self.stderr.write,
        )
        data = report.as_dict()
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2))
            return
        for section, entries in data.items():
            self.stdout.write(f"{section.replace('_', ' ')}: {len(entries)}")
            for entry in entries:
                line = f"  {entry['session']} {entry['instance']}"
                if "error" in entry:
                    line += f": {entry['error']}"
                self.stdout.write(line)
