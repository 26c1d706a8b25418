import pytest
from django.db import connection

import tests.tasks  # noqa: F401  (registers the test tasks with Celery)

pytest_plugins = ["django_triggers.testing"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: run with TRIGGERS_DB=postgres")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
