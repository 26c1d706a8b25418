"""The tables' indexes: each foreign key is served by one, and none is there for nothing."""

import pytest
from django.db import connection

from django_triggers.models import FiredTrigger, TaskConfig, TaskInstance, TaskListener

MODELS = [TaskConfig, TaskListener, FiredTrigger, TaskInstance]


def indexes_of(model) -> list[list[str]]:
    """The column lists of the table's indexes (unique constraints included)."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return [
        info["columns"]
        for info in constraints.values()
        if (info["index"] or info["unique"]) and info["columns"]
    ]


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_foreign_key_leads_an_index(db, model):
    indexes = indexes_of(model)
    foreign_keys = [f.column for f in model._meta.concrete_fields if f.is_relation]

    unserved = [column for column in foreign_keys if not any(i[0] == column for i in indexes)]

    assert unserved == []


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_no_index_is_only_the_first_column_of_another(db, model):
    """Each index costs every insert and most updates; a prefix of another one is redundant."""
    indexes = indexes_of(model)

    redundant = [
        index
        for index in indexes
        if len(index) == 1
        and any(other != index and other[: len(index)] == index for other in indexes)
    ]

    assert redundant == []
