"""Sweeps that keep every committed instance moving: run it from cron or Celery beat.

``recover()`` (and the ``triggers_recover`` command that calls it)

* hands over again instances that were scheduled but never reached their
  runner (the broker was down when their transaction committed);
* hands over again instances handed to their runner, due to start, and still
  not started after a threshold: their message was lost (the process died
  between the commit and the publish, or the broker lost its queue);
* abandons unstarted instances whose ``within`` deadline has passed, and
  fires ``<task>.timeout`` for each;
* reports instances ``running`` for longer than that threshold, and with
  ``fail_stuck`` fails them (their worker is presumed lost) so that they can
  be replayed.

It walks every database holding sessions (``session_databases()`` of
:mod:`django_triggers.routers`), or those it is given, in batches of primary
keys, so memory stays bounded however many rows match, and handles each
instance in its own transaction under its session's lock: several sweeps may
run at once, on several machines, and each instance is acted on once. An
instance whose session is in another database than the one the routers place
it in is not acted on (its workers could not find it): it is reported among
the errors.

The :class:`RecoveryReport` it returns counts what was done: both kinds of
hand-over are ``redispatched``, and ``never_dispatched`` and
``stuck_scheduled`` say why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from django.db.models import Q, QuerySet
from django.utils import timezone

from django_triggers import metrics
from django_triggers.exceptions import ManagerClassError, SessionNotFound
from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance
from django_triggers.routers import MisplacedSession, databases_to_sweep, session_database

#: ``(session uid, instance name)``
InstanceKey = tuple[str, str]

DEFAULT_REDISPATCH_AFTER = timedelta(seconds=60)
DEFAULT_STUCK_AFTER = timedelta(hours=1)
#: Longest ``redispatch_after`` and ``stuck_after`` accepted: 100 years, far
#: beyond any useful wait, and far from the limits of dates.
MAX_WAIT = timedelta(days=36525)


@dataclass
class RecoveryReport:
    """What one run of :func:`recover` did, as ``(session uid, instance name)`` pairs."""

    #: Handed over again after their runner refused them (``redispatch_after``).
    never_dispatched: list[InstanceKey] = field(default_factory=list)
    #: Handed over again after their message was lost (``stuck_after``).
    stuck_scheduled: list[InstanceKey] = field(default_factory=list)
    #: Abandoned because their ``within`` deadline passed.
    expired: list[InstanceKey] = field(default_factory=list)
    #: ``running`` for longer than ``stuck_after``.
    stuck_running: list[InstanceKey] = field(default_factory=list)
    #: Of those, the ones failed (``fail_stuck``).
    failed_stuck: list[InstanceKey] = field(default_factory=list)
    #: Instances that could not be handled, with the reason.
    errors: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def redispatched(self) -> list[InstanceKey]:
        """Every instance handed over again, whatever the reason."""
        return [*self.never_dispatched, *self.stuck_scheduled]

    def as_dict(self) -> dict[str, list[dict[str, str]]]:
        """The report as JSON-ready lists of ``{"session", "instance"}`` (and ``"error"``)."""
        result = {
            name: [{"session": uid, "instance": instance} for uid, instance in keys]
            for name, keys in (
                ("redispatched", self.redispatched),
                ("never_dispatched", self.never_dispatched),
                ("stuck_scheduled", self.stuck_scheduled),
                ("expired", self.expired),
                ("stuck_running", self.stuck_running),
                ("failed_stuck", self.failed_stuck),
            )
        }
        result["errors"] = [
            {"session": uid, "instance": instance, "error": error}
            for uid, instance, error in self.errors
        ]
        return result


def recover(
    *,
    redispatch_after: timedelta = DEFAULT_REDISPATCH_AFTER,
    stuck_after: timedelta = DEFAULT_STUCK_AFTER,
    fail_stuck: bool = False,
    batch_size: int = 500,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    databases: Sequence[str] | None = None,
) -> RecoveryReport:
    """Run every sweep once, in each database of sessions; see the module's docstring.

    ``redispatch_after`` is how long an instance whose runner refused it
    waits before it is handed over again. ``stuck_after`` is how long a
    handed-over instance may stay ``scheduled`` past its ``eta`` before it is
    handed over again (keep it above the longest wait in your queues), and
    how long an instance may stay ``running`` before it is reported. Both
    are between 0 and :data:`MAX_WAIT`; anything else raises ``ValueError``
    before any change. ``databases`` limits the sweeps to those aliases (by
    default, every database holding sessions); an alias holding no sessions
    raises ``ValueError`` naming it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    for argument, wait in (("redispatch_after", redispatch_after), ("stuck_after", stuck_after)):
        if not timedelta(0) <= wait <= MAX_WAIT:
            raise ValueError(f"{argument} must be between 0 and 100 years, not {wait}")
    swept = databases_to_sweep(databases)
    now = now or timezone.now()
    try:
        refused_before = now - redispatch_after
        stuck_before = now - stuck_after
    except OverflowError:
        raise ValueError(f"now is too close to the earliest date: {now}") from None
    report = RecoveryReport()
    for database in swept:
        _recover_database(
            database,
            report,
            now=now,
            refused_before=refused_before,
            stuck_before=stuck_before,
            fail_stuck=fail_stuck,
            batch_size=batch_size,
            # Several databases: each sweep's progress says which one it is in.
            progress=_progress_in(database, progress) if len(swept) > 1 else progress,
        )
    outcomes = report.as_dict()
    del outcomes["redispatched"]  # the sum of two others
    metrics.count_recovery({outcome: len(keys) for outcome, keys in outcomes.items()})
    return report


def _progress_in(
    database: str, progress: Callable[[str], None] | None
) -> Callable[[str], None] | None:
    """``progress``, its lines ending with the database they are about."""
    if progress is None:
        return None
    report = progress
    return lambda line: report(f"{line} ({database})")


def _recover_database(
    database: str,
    report: RecoveryReport,
    *,
    now: datetime,
    refused_before: datetime,
    stuck_before: datetime,
    fail_stuck: bool,
    batch_size: int,
    progress: Callable[[str], None] | None,
) -> None:
    """Run every sweep over the instances in ``database``, adding what it did to ``report``."""
    managers: dict[str, TriggerManager] = {}
    instances = TaskInstance.objects.using(database)

    def manager_for(session_uid: str) -> TriggerManager:
        if session_uid not in managers:
            home = session_database(session_uid)
            if home != database:
                raise MisplacedSession(
                    f"session {session_uid!r} is in database {database!r}, but the routers "
                    f"place it in {home!r}; move it there with triggers_move_session"
                )
            if len(managers) >= batch_size:
                managers.clear()
            managers[session_uid] = TriggerManager.for_existing_session(session_uid)
        return managers[session_uid]

    def sweep(
        label: str,
        queryset: QuerySet[TaskInstance],
        found: list[InstanceKey],
        act: Callable[[TriggerManager, str], bool] | None = None,
    ) -> None:
        before = len(found)
        examined = 0
        for session_uid, instance_name in _in_batches(queryset, batch_size):
            examined += 1
            try:
                if act is None or act(manager_for(session_uid), instance_name):
                    found.append((session_uid, instance_name))
            except (ManagerClassError, SessionNotFound, MisplacedSession) as exc:
                report.errors.append((session_uid, instance_name, str(exc)))
            if progress and examined % batch_size == 0:
                progress(f"{label}: {examined} examined so far")
        if progress:
            progress(f"{label}: {len(found) - before} of {examined} examined")

    sweep(
        "deadlines",
        instances.filter(status=TaskInstance.UNSTARTED, deadline__lte=now),
        report.expired,
        lambda manager, name: manager.expire_instance(name, now),
    )
    handed_over = len(report.never_dispatched)
    sweep(
        "never dispatched",
        instances.filter(
            status=TaskInstance.SCHEDULED,
            dispatched_at__isnull=True,
            modified__lte=refused_before,
        ),
        report.never_dispatched,
        lambda manager, name: manager.redispatch_instance(
            name,
            lambda instance: instance.dispatched_at is None and instance.modified <= refused_before,
        ),
    )
    # Just handed over: not stuck, even when ``now`` is ahead of the clock.
    never_dispatched = set(report.never_dispatched[handed_over:])
    sweep(
        "stuck scheduled",
        instances.filter(
            Q(eta__isnull=True) | Q(eta__lte=stuck_before),
            status=TaskInstance.SCHEDULED,
            status_changed_at__lte=stuck_before,
            dispatched_at__lte=stuck_before,
        ),
        report.stuck_scheduled,
        lambda manager, name: (
            (manager.session_uid, name) not in never_dispatched
            and manager.redispatch_instance(name, partial(_is_stuck_scheduled, before=stuck_before))
        ),
    )
    stuck_running = instances.filter(
        status=TaskInstance.RUNNING, status_changed_at__lte=stuck_before
    )
    sweep("stuck running", stuck_running, report.stuck_running)
    if fail_stuck:
        sweep(
            "failing stuck running",
            stuck_running,
            report.failed_stuck,
            lambda manager, name: manager.fail_stuck_instance(name, stuck_before),
        )


def _is_stuck_scheduled(instance: TaskInstance, *, before: datetime) -> bool:
    """Handed to its runner, due to start, and still not started, since before ``before``."""
    return (
        instance.status_changed_at <= before
        and instance.dispatched_at is not None
        and instance.dispatched_at <= before
        and (instance.eta is None or instance.eta <= before)
    )


def _in_batches(queryset: QuerySet[TaskInstance], batch_size: int) -> Iterator[InstanceKey]:
    """``(session uid, instance name)`` of each match, read ``batch_size`` rows at a time."""
    last_pk = 0
    while True:
        batch = list(
            queryset.filter(pk__gt=last_pk)
            .order_by("pk")
            .values_list("pk", "session__uid", "name")[:batch_size]
        )
        if not batch:
            return
        for pk, session_uid, name in batch:
            last_pk = pk
            yield session_uid, name
