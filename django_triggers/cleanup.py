"""Deleting sessions that are over.

Every questionnaire, order or journey leaves a session behind, with its
configuration, fires and instances. :func:`delete_resolved_sessions` (and
the ``triggers_cleanup`` command that calls it) deletes, with all its rows,
a session that is over and has been quiet for a while:

* over: every task configured in it has an instance and every instance is
  resolved (finished, skipped, replayed or abandoned); or it has no
  configuration and was never fired into. A task still waiting for its first
  instance is live work, however old the session: deleting the session would
  let the next fire recreate it empty, scheduling nothing;
* quiet: its creation, and every configuration change, fire and status
  change in it, are older than the window.

Sessions are found and deleted in every database holding sessions
(``session_databases()`` of :mod:`django_triggers.routers`), or in those
given, in batches of primary keys, so memory stays bounded however many
match, and each batch is checked again, under the sessions' locks, in the
transaction that deletes it: a session that was fired into, reconfigured or
changed meanwhile is kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from django_triggers.models import FiredTrigger, TaskConfig, TaskInstance, TriggerSession
from django_triggers.routers import databases_to_sweep, session_databases

_AGE = re.compile(r"([0-9]+)([smhdw]?)")
_SECONDS_PER_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(value: str) -> timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` or plain seconds (``"3600"``)."""
    match = _AGE.fullmatch(value.strip().lower())
    if match is None or int(match[1]) == 0:
        raise ValueError(
            f"expected an age greater than 0 like 30d, 12h, 90m or 3600 (seconds), not {value!r}"
        )
    try:
        return timedelta(seconds=int(match[1]) * _SECONDS_PER_UNIT[match[2]])
    except OverflowError:
        raise ValueError(f"the age {value!r} is too large") from None


def resolved_sessions(
    inactive_since: datetime, using: str | None = None
) -> QuerySet[TriggerSession]:
    """Sessions over and quiet since before ``inactive_since``; see the module's docstring.

    One query: each condition is an ``EXISTS`` on the session's rows, so the
    database checks them per session through the session-first indexes.
    ``using``: the database to look in (by default, the first holding sessions).
    """
    configs = TaskConfig.objects.filter(session=OuterRef("pk"))
    fires = FiredTrigger.objects.filter(session=OuterRef("pk"))
    instances = TaskInstance.objects.filter(session=OuterRef("pk"))
    task_without_instance = configs.exclude(TaskConfig.has_instance())
    unresolved_instance = instances.exclude(status__in=TaskInstance.RESOLVED_STATUSES)
    recent_configuration = configs.filter(
        Q(created__gte=inactive_since) | Q(updated__gte=inactive_since)
    )
    recent_fire = fires.filter(fired_at__gte=inactive_since)
    recent_status_change = instances.filter(status_changed_at__gte=inactive_since)
    return TriggerSession.objects.using(using or session_databases()[0]).filter(
        Exists(configs) | ~Exists(fires),
        ~Exists(task_without_instance),
        ~Exists(unresolved_instance),
        ~Exists(recent_configuration),
        ~Exists(recent_fire),
        ~Exists(recent_status_change),
        created__lt=inactive_since,
    )


def delete_resolved_sessions(
    older_than: timedelta,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    databases: Sequence[str] | None = None,
) -> int:
    """Delete the sessions that are over; return how many were (or, dry, would be) deleted.

    See the module's docstring for when a session is over; its last activity
    must be older than ``older_than``. ``progress`` is called with a line per
    batch of ``batch_size`` sessions. ``databases`` limits the work to those
    aliases (by default, every database holding sessions); an alias holding
    no sessions raises ``ValueError`` naming it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if older_than <= timedelta(0):
        raise ValueError(f"older_than must be a positive age, not {older_than}")
    swept = databases_to_sweep(databases)
    now = now or timezone.now()
    try:
        inactive_since = now - older_than
    except OverflowError:
        raise ValueError(f"older_than is too large: {older_than}") from None

    total = 0
    batch_number = 0
    for using in swept:
        # Several databases: each line says which one its batch is in.
        where = f" in {using}" if len(swept) > 1 else ""
        last_pk = 0
        while True:
            pks = list(
                resolved_sessions(inactive_since, using)
                .filter(pk__gt=last_pk)
                .order_by("pk")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not pks:
                break
            last_pk = pks[-1]
            batch_number += 1
            if dry_run:
                total += len(pks)
                message = f"batch {batch_number}{where}: would delete {len(pks)} session(s)"
            else:
                deleted, rows = _delete(pks, inactive_since, using)
                total += deleted
                message = f"batch {batch_number}{where}: deleted {deleted} session(s) ({rows} rows)"
            if progress:
                progress(f"{message}, {total} so far")
    return total


def _delete(pks: list[int], inactive_since: datetime, using: str | None = None) -> tuple[int, int]:
    """Delete those of ``pks`` still over, in ``using`` (by default, the first database of
    sessions); return (sessions deleted, rows deleted)."""
    using = using or session_databases()[0]
    with transaction.atomic(using=using):
        # Fires lock their session's row first: holding these locks, none can
        # slip in between the check and the delete.
        locked = list(
            TriggerSession.objects.using(using)
            .select_for_update()
            .filter(pk__in=pks)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        still_over = list(
            resolved_sessions(inactive_since, using)
            .filter(pk__in=locked)
            .values_list("pk", flat=True)
        )
        if not still_over:
            return 0, 0
        rows, per_model = TriggerSession.objects.using(using).filter(pk__in=still_over).delete()
        return per_model.get(TriggerSession._meta.label, 0), rows
