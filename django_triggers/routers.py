"""Which database holds a session: the one decision every read and write of a session follows.

Every table of the library hangs off a session, and every statement of a
fire, a start or a finish touches one session only, so sessions can live in
several databases. The library asks Django's database routers where a
session is, passing its uid as a hint::

    router.db_for_write(TriggerSession, session_uid="order-17")

:func:`session_database` is that question, asked in one place; the manager,
the workers, the runners, the sweeps, the admin and the commands all go
through it. Without a router that answers it, every session is in
Django's ``default`` database, as for any model.

The hints the library passes to routers:

``session_uid`` (:data:`SESSION_UID_HINT`)
    The uid of the session a statement reads or writes, to
    ``db_for_write`` when the library looks a session up.
``session_database`` (:data:`SESSION_DATABASE_HINT`)
    The alias of the database whose sessions the admin shows, to
    ``db_for_read``: return a replica of that database to move the admin's
    reads there (see :func:`read_database`).

Sweeps (recovery, cleanup) and the admin need the list of databases that
hold sessions: :func:`session_databases` asks each router for it, through
an optional ``session_databases()`` method.

:class:`SessionHashRouter` is a complete router that spreads sessions over
the databases listed in the ``TRIGGERS_SESSION_DATABASES`` setting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import router
from django.db.models import Model

from django_triggers.models import TriggerSession

#: The hint naming the session a statement is about: its uid.
SESSION_UID_HINT = "session_uid"
#: The hint naming the database whose sessions the admin reads.
SESSION_DATABASE_HINT = "session_database"

#: The label of the library's app, whose models routers place with the sessions.
APP_LABEL = TriggerSession._meta.app_label


class MisplacedSession(LookupError):
    """A session was found in another database than the one the routers place it in.

    The application, its workers and the commands look for a session where
    the routers place it: a session elsewhere is out of their reach until it
    is moved there (``triggers_move_session``).
    """


def session_database(session_uid: str) -> str:
    """The alias of the database that holds the session ``session_uid``, as the routers say."""
    return router.db_for_write(TriggerSession, **{SESSION_UID_HINT: session_uid})


def session_databases() -> list[str]:
    """Every alias that may hold sessions, in a stable order, each once.

    What the routers' ``session_databases()`` methods list, in the order of
    ``DATABASE_ROUTERS``; without such a method, the one database the
    routers give for sessions when asked with no hint (``default`` without
    routers).
    """
    aliases: list[str] = []
    for each in router.routers:
        listed = getattr(each, "session_databases", None)
        if listed is not None:
            aliases.extend(listed())
    if not aliases:
        aliases.append(router.db_for_write(TriggerSession))
    return list(dict.fromkeys(aliases))


def databases_to_sweep(databases: Sequence[str] | None = None) -> list[str]:
    """The databases a sweep works through: ``databases``, each once, or every one of sessions.

    An alias that holds no sessions raises ``ValueError`` naming it.
    """
    known = session_databases()
    if databases is None:
        return known
    for alias in databases:
        if alias not in known:
            raise ValueError(unknown_database_message(alias))
    return list(dict.fromkeys(databases))


def read_database(model: type[Model], alias: str, session_uid: str | None = None) -> str:
    """Where to read, for display, rows of ``model`` stored in the database ``alias``.

    The first router whose ``db_for_read`` answers, given the hints
    ``session_database=alias`` (and ``session_uid`` for one session's rows);
    ``alias`` itself if none does. The admin reads this way, so that a
    router can send its reads to a replica of ``alias``.
    """
    hints: dict[str, Any] = {SESSION_DATABASE_HINT: alias}
    if session_uid is not None:
        hints[SESSION_UID_HINT] = session_uid
    for each in router.routers:
        read = getattr(each, "db_for_read", None)
        chosen = read(model, **hints) if read is not None else None
        if chosen:
            return str(chosen)
    return alias


def unknown_database_message(alias: str) -> str:
    """Why ``alias`` cannot be used as a database of sessions, naming those that can."""
    known = ", ".join(repr(each) for each in session_databases())
    if alias not in settings.DATABASES:
        return f"unknown database {alias!r}: DATABASES has no such alias (sessions are in {known})"
    return f"database {alias!r} holds no sessions (sessions are in {known})"


class SessionHashRouter:
    """Spread sessions over the databases of ``TRIGGERS_SESSION_DATABASES`` by their uid.

    ::

        DATABASE_ROUTERS = ["django_triggers.routers.SessionHashRouter"]
        TRIGGERS_SESSION_DATABASES = ["shard0", "shard1"]

    A session goes to the alias whose SHA-256 of ``alias`` and uid is the
    highest (rendezvous hashing): the same alias in every process and every
    Python version, and adding an alias moves only the sessions that now
    belong to it (about one in the new number of aliases), leaving every
    other session where it is. Never rename an alias: its sessions would
    move with its name.

    The library's rows follow their session: a query with the
    ``session_uid`` hint goes to the session's alias, a query on a row (a
    related manager, a foreign key) to that row's database. Other queries of
    the library's models are left to the next router, or to ``default``.
    The library's tables are migrated on every listed alias and nowhere
    else; other apps are left to other routers. Relations between the
    library's rows are allowed (they never cross a session, so never a
    database).
    """

    def session_databases(self) -> list[str]:
        """The aliases of ``TRIGGERS_SESSION_DATABASES``, checked against ``DATABASES``."""
        aliases = getattr(settings, "TRIGGERS_SESSION_DATABASES", None)
        if (
            not isinstance(aliases, list | tuple)
            or not aliases
            or not all(isinstance(alias, str) for alias in aliases)
        ):
            raise ImproperlyConfigured(
                "SessionHashRouter needs TRIGGERS_SESSION_DATABASES, a non-empty list of "
                f"database aliases, not {aliases!r}"
            )
        for alias in aliases:
            if alias not in settings.DATABASES:
                raise ImproperlyConfigured(
                    f"TRIGGERS_SESSION_DATABASES names {alias!r}, which is not in DATABASES"
                )
        return list(dict.fromkeys(aliases))

    def database_for(self, session_uid: str) -> str:
        """The alias the session ``session_uid`` belongs to."""
        return max(self.session_databases(), key=lambda alias: _weight(alias, session_uid))

    def _route(self, model: type[Model], **hints: Any) -> str | None:
        if model._meta.app_label != APP_LABEL:
            return None
        session_uid = hints.get(SESSION_UID_HINT)
        if isinstance(session_uid, str):
            return self.database_for(session_uid)
        instance = hints.get("instance")
        if instance is not None and instance._state.db:
            return str(instance._state.db)
        return None

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return self._route(model, **hints)

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return self._route(model, **hints)

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        if obj1._meta.app_label == APP_LABEL and obj2._meta.app_label == APP_LABEL:
            return True
        return None

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if app_label != APP_LABEL:
            return None
        return db in self.session_databases()


def _weight(alias: str, session_uid: str) -> int:
    """The rendezvous weight of ``alias`` for a session: stable everywhere, unlike ``hash()``."""
    text = f"{alias}\x00{session_uid}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")
