import pytest
from django.db import connection

import tests.tasks  # noqa: F401  (registers the test tasks with Celery)

pytest_plugins = ["django_triggers.testing"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skips = {
        "postgres": None
        if connection.vendor == "postgresql"
        else pytest.mark.skip(reason="needs PostgreSQL: run with TRIGGERS_DB=postgres"),
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
