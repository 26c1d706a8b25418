"""Where the rules' rows are read and written: one store per database.

:func:`store_for` is the one place a store is chosen: the PostgreSQL store
(hand-written statements, a fire without the session's lock) where the
database is PostgreSQL, the portable ORM store everywhere else, or on every
database with ``TRIGGERS_STORE = "orm"``.
"""

from __future__ import annotations

from django.db import connections

from django_triggers.conf import get_setting
from django_triggers.stores.base import (
    INSTANCE_UPDATE_FIELDS,
    Finishing,
    FireState,
    Started,
    Store,
    Upsert,
)
from django_triggers.stores.orm import OrmStore
from django_triggers.stores.postgres import PostgresStore, celery_results_fit

__all__ = [
    "INSTANCE_UPDATE_FIELDS",
    "Finishing",
    "FireState",
    "OrmStore",
    "PostgresStore",
    "Started",
    "Store",
    "Upsert",
    "store_for",
]

STORE_CHOICES = ("auto", "orm")

_stores: dict[tuple[str, str], Store] = {}


def store_for(using: str) -> Store:
    """The store of the database ``using``."""
    choice = get_setting("TRIGGERS_STORE")
    store = _stores.get((using, choice))
    if store is None:
        if choice not in STORE_CHOICES:
            raise ValueError(f"TRIGGERS_STORE must be one of {STORE_CHOICES}, not {choice!r}")
        # The PostgreSQL store's statements are PostgreSQL's own SQL
        # (data-modifying CTEs, jsonb): no backend feature flag names that.
        # They also write django-celery-results' rows, as installed here.
        postgres = (
            choice == "auto" and connections[using].vendor == "postgresql" and celery_results_fit()
        )
        store = PostgresStore(using) if postgres else OrmStore(using)
        _stores[(using, choice)] = store
    return store
