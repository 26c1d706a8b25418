"""Deleting sessions that are over.

Every questionnaire, order or journey leaves a session behind, with its
configuration, fires and instances. Once every instance of a session is
resolved (finished, skipped, replayed or abandoned) and nothing has happened
in it for a while, :func:`delete_resolved_sessions` (and the
``triggers_cleanup`` command that calls it) deletes it with all its rows.

A session's last activity is its latest fire, or its creation when nothing
was ever fired in it. Sessions are found and deleted in batches of primary
keys, so memory stays bounded however many match, and each batch is checked
again, under the sessions' locks, in the transaction that deletes it: a
session that received a fire meanwhile is kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, F, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from django_triggers.models import FiredTrigger, TaskInstance, TriggerSession

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


def resolved_sessions(inactive_since: datetime) -> QuerySet[TriggerSession]:
    """Sessions with no unresolved instance and no activity since ``inactive_since``."""
    unresolved = TaskInstance.objects.filter(session=OuterRef("pk")).exclude(
        status__in=TaskInstance.RESOLVED_STATUSES
    )
    latest_fire = (
        FiredTrigger.objects.filter(session=OuterRef("pk"))
        .order_by("-fired_at")
        .values("fired_at")[:1]
    )
    return (
        TriggerSession.objects.alias(last_activity=Coalesce(Subquery(latest_fire), F("created")))
        .filter(last_activity__lt=inactive_since)
        .exclude(Exists(unresolved))
    )


def delete_resolved_sessions(
    older_than: timedelta,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Delete the sessions that are over; return how many were (or, dry, would be) deleted.

    A session is over when none of its instances is unresolved and its last
    activity is older than ``older_than``. ``progress`` is called with a line
    per batch of ``batch_size`` sessions.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if older_than <= timedelta(0):
        raise ValueError(f"older_than must be a positive age, not {older_than}")
    now = now or timezone.now()
    try:
        inactive_since = now - older_than
    except OverflowError:
        raise ValueError(f"older_than is too large: {older_than}") from None

    total = 0
    last_pk = 0
    batch_number = 0
    while True:
        pks = list(
            resolved_sessions(inactive_since)
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
            message = f"batch {batch_number}: would delete {len(pks)} session(s)"
        else:
            deleted, rows = _delete(pks, inactive_since)
            total += deleted
            message = f"batch {batch_number}: deleted {deleted} session(s) ({rows} rows)"
        if progress:
            progress(f"{message}, {total} so far")
    return total


def _delete(pks: list[int], inactive_since: datetime) -> tuple[int, int]:
    """Delete those of ``pks`` still over; return (sessions deleted, rows deleted)."""
    with transaction.atomic():
        # Fires lock their session's row first: holding these locks, none can
        # slip in between the check and the delete.
        locked = list(
            TriggerSession.objects.select_for_update()
            .filter(pk__in=pks)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        still_over = list(
            resolved_sessions(inactive_since).filter(pk__in=locked).values_list("pk", flat=True)
        )
        if not still_over:
            return 0, 0
        rows, per_model = TriggerSession.objects.filter(pk__in=still_over).delete()
        return per_model.get(TriggerSession._meta.label, 0), rows
