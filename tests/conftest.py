import pytest
from django.db import connection

import tests.tasks  # noqa: F401  (registers the test tasks with Celery)
from django_triggers.stores import PostgresStore, store_for

pytest_plugins = ["django_triggers.testing"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skips = {
        # The PostgreSQL store's own statements (TRIGGERS_STORE=orm puts
        # PostgreSQL on the portable store, and these tests do not apply).
        "postgres": None
        if isinstance(store_for(connection.alias), PostgresStore)
        else pytest.mark.skip(reason="needs PostgreSQL's store: run with TRIGGERS_DB=postgres"),
        "server_database": None
        if connection.vendor != "sqlite"
        else pytest.mark.skip(
            reason="needs a database server: run with TRIGGERS_DB=postgres or mariadb"
        ),
    }
    for item in items:
        for marker, skip in skips.items():
            if skip is not None and marker in item.keywords:
                item.add_marker(skip)
