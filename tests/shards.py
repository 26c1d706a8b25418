"""What the tests of sessions spread over two databases share.

They run when ``TRIGGERS_SHARDS`` gives the settings a second database of
sessions, ``shard1``, beside ``default`` (see ``example_project/settings.py``),
with ``django_triggers.routers.SessionHashRouter`` over both.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.db import connections
from django.test import override_settings

from django_triggers.models import (
    FiredTrigger,
    TaskConfig,
    TaskInstance,
    TaskListener,
    TriggerSession,
)
from django_triggers.routers import session_database

DATABASES = ("default", "shard1")

#: Skips a module unless the settings have the second database of sessions.
needs_two_databases = pytest.mark.skipif(
    "shard1" not in settings.DATABASES,
    reason="needs a second database of sessions: run with TRIGGERS_SHARDS=1 (or sqlite)",
)

#: Skips a module unless both databases of sessions are on database servers, which
#: the processes a test starts (Celery workers) reach as it does.
needs_two_databases_on_servers = pytest.mark.skipif(
    "shard1" not in settings.DATABASES
    or "sqlite" in (connections["default"].vendor, connections["shard1"].vendor),
    reason="needs two databases of sessions on a server: run with TRIGGERS_DB=postgres "
    "TRIGGERS_SHARDS=1",
)

#: Every model of a session's rows, by the name the tests count them under.
SESSION_ROWS = {
    "sessions": (TriggerSession, "uid"),
    "configs": (TaskConfig, "session__uid"),
    "listeners": (TaskListener, "session__uid"),
    "instances": (TaskInstance, "session__uid"),
    "fires": (FiredTrigger, "session__uid"),
}

_numbers = itertools.count()


def uid_in(database: str, prefix: str = "session") -> str:
    """A new session uid that the routers place in ``database``."""
    while True:
        uid = f"{prefix}-{next(_numbers)}"
        if session_database(uid) == database:
            return uid


def rows_in(database: str, session_uid: str) -> dict[str, int]:
    """How many rows of each kind the session has in ``database``."""
    return {
        name: model.objects.using(database).filter(**{lookup: session_uid}).count()
        for name, (model, lookup) in SESSION_ROWS.items()
    }


#: Three tasks, each the cascade of the one before: ``start`` runs them all.
CASCADE = {
    "t_a": {"after": ["start"], "run": "tests.Echo"},
    "t_b": {"after": ["t_a"], "run": "tests.Echo"},
    "t_c": {"after": ["t_b"], "run": "tests.Echo"},
}


def other_than(database: str) -> str:
    return next(alias for alias in DATABASES if alias != database)


def nothing() -> dict[str, int]:
    return dict.fromkeys(SESSION_ROWS, 0)


@contextmanager
def placing_every_session_in(database: str) -> Iterator[None]:
    """As if the routers placed every session in ``database`` (the routing before a change)."""
    with override_settings(TRIGGERS_SESSION_DATABASES=[database]):
        yield
