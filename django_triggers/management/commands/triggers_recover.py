import math
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_triggers.management.base import (
    add_database_argument,
    check_batch_size,
    selected_databases,
    write_json,
)
from django_triggers.recovery import (
    DEFAULT_REDISPATCH_AFTER,
    DEFAULT_STUCK_AFTER,
    MAX_WAIT,
    RecoveryReport,
    recover,
)
from django_triggers.text import printable


def seconds(value: str, option: str) -> timedelta:
    """``value`` as seconds from 0 to :data:`MAX_WAIT`, or a ``CommandError`` naming ``option``."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 <= number <= MAX_WAIT.total_seconds():
        raise CommandError(
            f"{option} expects a number of seconds from 0 to {MAX_WAIT.total_seconds():.0f} "
            f"(100 years), not {value!r}"
        )
    return timedelta(seconds=number)


class Command(BaseCommand):
    help = (
        "Hand over again scheduled task instances that never reached their runner or whose "
        "message was lost, abandon instances whose 'within' deadline passed (firing "
        "'<task>.timeout'), and report instances stuck in 'running'. Safe to run on several "
        "machines at once; run it every minute or so (cron, or Celery beat through "
        "django_triggers.recovery.recover). Prints a summary; -v 2 also reports each sweep "
        "as it goes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--redispatch-after",
            type=str,
            default=str(DEFAULT_REDISPATCH_AFTER.total_seconds()),
            metavar="SECONDS",
            help="Hand over again instances scheduled this long ago and never dispatched "
            "(default: %(default)s; at most 100 years).",
        )
        parser.add_argument(
            "--stuck-after",
            type=str,
            default=str(DEFAULT_STUCK_AFTER.total_seconds()),
            metavar="SECONDS",
            help="Hand over again instances dispatched this long ago (and past their eta) "
            "that are still scheduled, and report instances running for longer than this "
            "(default: %(default)s; at most 100 years).",
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
        add_database_argument(parser)
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = check_batch_size(options["batch_size"])
        redispatch_after = seconds(options["redispatch_after"], "--redispatch-after")
        stuck_after = seconds(options["stuck_after"], "--stuck-after")
        databases = selected_databases(options["database"])
        report_progress = options["verbosity"] >= 2 and not options["json"]
        report = recover(
            redispatch_after=redispatch_after,
            stuck_after=stuck_after,
            fail_stuck=options["fail_stuck"],
            batch_size=batch_size,
            progress=self.stdout.write if report_progress else None,
            databases=databases,
        )
        if options["json"]:
            write_json(self.stdout, report.as_dict())
        else:
            self.write_summary(report)

    def write_summary(self, report: RecoveryReport) -> None:
        """One section per outcome: how many, then which (and, if handed over again, why)."""
        self.write_section(
            "redispatched",
            [f"{uid} {name} (never dispatched)" for uid, name in report.never_dispatched]
            + [f"{uid} {name} (stuck scheduled)" for uid, name in report.stuck_scheduled],
        )
        for section, keys in (
            ("expired", report.expired),
            ("stuck running", report.stuck_running),
            ("failed stuck", report.failed_stuck),
        ):
            self.write_section(section, [f"{uid} {name}" for uid, name in keys])
        self.write_section(
            "errors", [f"{uid} {name}: {error}" for uid, name, error in report.errors]
        )

    def write_section(self, title: str, lines: list[str]) -> None:
        self.stdout.write(f"{title}: {len(lines)}")
        for line in lines:
            self.stdout.write(f"  {printable(line)}")
