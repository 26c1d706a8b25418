"""Moving a session, with every row of it, from one database to another.

Sessions live where the database routers place them (:mod:`django_triggers.routers`).
When that placement changes (an alias added to ``TRIGGERS_SESSION_DATABASES``,
a session pinned elsewhere by a router of your own), the sessions it
concerns must follow: :func:`move_session` (and the ``triggers_move_session``
command that calls it) copies a session to the database the routers now
place it in, checks the copy, and deletes the original.

It holds the session's lock in its source database, and the locks of its
scheduled instances, from the first read to the delete, so no change of the
session is lost: a fire that comes in meanwhile waits for it, then finds
the session gone there (the application's next fire finds it in its new
database), and so does a worker about to start a scheduled instance, which
then starts it in the new database. The copy is written in one transaction
of the target database, and checked in that transaction against what was
read: a copy that differs is rolled back and the source is left as it was.
The session must have no instance ``running``: its worker would record the
outcome in the old database, where the session no longer is.

Rows get new primary keys in the target database (each database numbers
its own rows); every other value is copied as it is, timestamps included,
and rows keep their order. The Celery results of the session's tasks
(django-celery-results' ``TaskResult``) are not the session's rows and stay
where they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import models, transaction

from django_triggers import encoding
from django_triggers.configuration import MAX_NAME_LENGTH
from django_triggers.exceptions import SessionNotFound
from django_triggers.models import (
    FiredTrigger,
    TaskConfig,
    TaskInstance,
    TaskListener,
    TriggerSession,
)
from django_triggers.routers import (
    session_database,
    session_databases,
    unknown_database_message,
)
from django_triggers.stores import store_for

#: The session's rows, in the order they are copied: each after those it refers to.
SESSION_MODELS: tuple[type[models.Model], ...] = (
    TriggerSession,
    TaskConfig,
    TaskListener,
    TaskInstance,
    FiredTrigger,
)

#: Statuses of the instances whose rows the move locks: a worker may start them.
LOCKED_STATUSES = (TaskInstance.SCHEDULED, TaskInstance.RUNNING)


class MoveRefused(ValueError):
    """The session cannot be moved as asked; nothing was changed."""


class CopyMismatch(RuntimeError):
    """The copy read back from the target database differs from the source; it was rolled back."""


@dataclass
class MovedSession:
    """What :func:`move_session` did."""

    session_uid: str
    source: str
    target: str
    #: Rows copied (and then deleted from the source), by model label.
    rows: dict[str, int] = field(default_factory=dict)


def databases_holding(session_uid: str) -> list[str]:
    """The databases of sessions that hold a session of that uid (one, unless misplaced)."""
    return [
        alias
        for alias in session_databases()
        if TriggerSession.objects.using(alias).filter(uid=session_uid).exists()
    ]


def move_session(session_uid: str, target: str) -> MovedSession:
    """Move the session ``session_uid`` into the database ``target``; see the module's docstring.

    Raises :class:`MoveRefused` (naming why, changing nothing) when
    ``target`` holds no sessions, when the routers place the session
    elsewhere (it would be out of the application's reach there), when
    the session is already there, or in several databases, or has an
    instance running; ``SessionNotFound`` when no database
    holds it; :class:`CopyMismatch` if the copy did not read back as
    written (rolled back; the source is untouched).
    """
    encoding.check_name(session_uid, what="a session uid", max_length=MAX_NAME_LENGTH)
    if target not in session_databases():
        raise MoveRefused(unknown_database_message(target))
    home = session_database(session_uid)
    if home != target:
        raise MoveRefused(
            f"the routers place session {session_uid!r} in {home!r}, not {target!r}: moved "
            f"there, the application would not find it; change the routing first"
        )
    holding = databases_holding(session_uid)
    if target in holding:
        others = [alias for alias in holding if alias != target]
        also = f" (and in {', '.join(map(repr, others))})" if others else ""
        raise MoveRefused(f"session {session_uid!r} is already in {target!r}{also}")
    if not holding:
        raise SessionNotFound(
            f"no database of sessions holds a session with the uid {session_uid!r}"
        )
    if len(holding) > 1:
        raise MoveRefused(
            f"session {session_uid!r} is in several databases ({', '.join(map(repr, holding))})"
        )
    source = holding[0]
    copied: int | None = None  # the copy's key, once committed
    try:
        with transaction.atomic(using=source):
            session = TriggerSession.objects.using(source).filter(uid=session_uid).first()
            if session is None or not store_for(source).lock_session(session.pk):
                raise SessionNotFound(f"session {session_uid!r} was deleted from {source!r}")
            _refuse_running_instances(source, session)
            rows = _read_rows(source, session.pk)
            with transaction.atomic(using=target):
                copy_pk = _write_rows(target, rows)
                if _contents(_read_rows(target, copy_pk)) != _contents(rows):
                    raise CopyMismatch(
                        f"the copy of session {session_uid!r} in {target!r} differs from the "
                        f"original in {source!r}; it was rolled back"
                    )
            copied = copy_pk
            TriggerSession.objects.using(source).filter(pk=session.pk).delete()
    except BaseException:
        if copied is not None:
            # The original stays: take the copy back, so the session is in one place.
            TriggerSession.objects.using(target).filter(pk=copied).delete()
        raise
    return MovedSession(
        session_uid,
        source,
        target,
        rows={model._meta.label: len(found) for model, found in rows.items()},
    )


def _refuse_running_instances(using: str, session: TriggerSession) -> None:
    """Lock the session's scheduled and running instances; refuse the move if one is running.

    A worker about to start a scheduled one waits for the move, then finds
    the instance gone from here and starts it where the session now is.
    """
    locked = (
        TaskInstance.objects.using(using)
        .select_for_update()
        .filter(session=session, status__in=LOCKED_STATUSES)
        .order_by("pk")
        .values_list("name", "status")
    )
    running = [name for name, status in locked if status == TaskInstance.RUNNING]
    if running:
        raise MoveRefused(
            f"session {session.uid!r} has instances running ({', '.join(running)}): "
            f"move it once they have ended"
        )


def misplaced_sessions(database: str) -> list[str]:
    """The uids of the sessions in ``database`` that the routers place in another one."""
    if database not in session_databases():
        raise MoveRefused(unknown_database_message(database))
    uids = TriggerSession.objects.using(database).order_by("pk").values_list("uid", flat=True)
    return [uid for uid in uids.iterator() if session_database(uid) != database]


Rows = dict[type[models.Model], list[Any]]


def _read_rows(using: str, session_pk: int) -> Rows:
    """Every row of the session, by model, in the order they were written."""
    return {
        model: list(
            model._default_manager.using(using)
            .filter(
                **({"pk": session_pk} if model is TriggerSession else {"session_id": session_pk})
            )
            .order_by("pk")
        )
        for model in SESSION_MODELS
    }


def _write_rows(using: str, rows: Rows) -> int:
    """Insert copies of ``rows`` into ``using``, with new keys; return the new session's key.

    Written raw, as ``loaddata`` does: every value as read, the timestamps
    Django would otherwise set (``auto_now``) included.
    """
    new_pks: dict[Any, dict[int, int]] = {model: {} for model in SESSION_MODELS}
    for model in SESSION_MODELS:
        for row in rows[model]:
            values = {
                field.attname: getattr(row, field.attname)
                for field in model._meta.concrete_fields
                if not field.primary_key
            }
            for relation in model._meta.concrete_fields:
                if relation.is_relation and values.get(relation.attname) is not None:
                    related = relation.related_model
                    values[relation.attname] = new_pks[related][values[relation.attname]]
            copy = model(**values)
            copy.save_base(raw=True, using=using, force_insert=True)
            new_pks[model][row.pk] = copy.pk
    return next(iter(new_pks[TriggerSession].values()))


def _contents(rows: Rows) -> dict[str, list[tuple[Any, ...]]]:
    """The rows as values that do not depend on the database: keys become names.

    A row refers to the session by its uid, to a task by its name, to an
    instance by its name; its own key is left out, its place in the list
    kept.
    """
    names: dict[tuple[Any, Any], str] = {}
    for named in (TriggerSession, TaskConfig, TaskInstance):
        for row in rows[named]:
            names[(named, row.pk)] = row.uid if named is TriggerSession else row.name
    contents: dict[str, list[tuple[Any, ...]]] = {}
    for model, found in rows.items():
        contents[model._meta.label] = [
            tuple(
                (
                    names.get((field.related_model, getattr(row, field.attname)))
                    if field.is_relation
                    else getattr(row, field.attname)
                )
                for field in model._meta.concrete_fields
                if not field.primary_key
            )
            for row in found
        ]
    return contents
