"""The PostgreSQL store's statements: one file, read as written, true to the models."""

import re
from pathlib import Path

import pytest
from django_celery_results.models import TaskResult
from psycopg import _queries

from django_triggers.models import FiredTrigger, TaskInstance
from django_triggers.stores import INSTANCE_UPDATE_FIELDS, postgres
from django_triggers.stores.postgres import (
    CELERY_RESULT_COLUMNS,
    STATEMENTS,
    celery_results_fit,
    load_statements,
)

STORE_SOURCE = Path(postgres.__file__).read_text()


def test_every_statement_in_the_file_is_run_by_the_store():
    for name in STATEMENTS:
        assert f'"{name}"' in STORE_SOURCE, f"{name} is never run"


def test_the_statements_are_short_enough_for_psycopg_to_keep_how_it_rewrites_them():
    for name, sql in STATEMENTS.items():
        assert len(sql.encode()) <= _queries.MAX_CACHED_STATEMENT_LENGTH, name
        assert len(set(re.findall(r"%\((\w+)\)s", sql))) <= _queries.MAX_CACHED_STATEMENT_PARAMS


def test_a_start_reads_its_cascade_as_a_fire_reads_word_for_word():
    def fire_read(name):
        [body] = re.findall(r"\(\n(SELECT 'c' AS kind.*?)\n\) fire_read", STATEMENTS[name], re.S)
        return body

    assert fire_read("start_instance") == fire_read("read_for_fire")


def common_table_expressions(sql: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+) AS \((.*?)\n\)", sql, re.S | re.M))


def test_a_cascade_writes_its_fire_as_a_fire_writes_word_for_word():
    fire = common_table_expressions(STATEMENTS["write_fire"])
    cascade = common_table_expressions(STATEMENTS["finish_and_fire"])

    assert set(cascade) - set(fire) == {"finish", "celery_result"}
    for name in set(fire) - {"checked"}:
        assert fire[name] == cascade[name], name
    assert (
        STATEMENTS["write_fire"].rsplit(")\n", 1)[1]
        == (STATEMENTS["finish_and_fire"].rsplit(")\n", 1)[1])
    )


def test_the_statuses_written_as_literals_are_the_models():
    literals = set(re.findall(r"status = '(\w+)'", "\n".join(STATEMENTS.values())))

    assert literals == {
        TaskInstance.UNSTARTED,
        TaskInstance.SCHEDULED,
        TaskInstance.RUNNING,
        TaskInstance.FINISHED,
    }


def columns_inserted_into(table: str) -> set[str]:
    [columns] = re.findall(rf"INSERT INTO {table} \((.*?)\)", STATEMENTS["finish_and_fire"], re.S)
    return {column.strip() for column in columns.split(",")}


def test_a_fire_inserts_every_column_of_a_fire_and_of_an_instance():
    for model in (FiredTrigger, TaskInstance):
        columns = {f.column for f in model._meta.concrete_fields if not f.primary_key}

        assert columns_inserted_into(model._meta.db_table) == columns


def test_a_fire_updates_the_fields_the_rules_change_on_an_open_instance():
    [assignments] = re.findall(r"touched AS \(.*?SET (.*?)\nFROM", STATEMENTS["write_fire"], re.S)
    updated = set(re.findall(r"^(\w+) = r\.\1", assignments, re.M))

    assert updated == set(INSTANCE_UPDATE_FIELDS)


def test_a_cascade_writes_every_column_of_the_installed_celery_result_row():
    columns = {f.column for f in TaskResult._meta.concrete_fields if not f.primary_key}

    assert columns_inserted_into(TaskResult._meta.db_table) == columns == CELERY_RESULT_COLUMNS
    assert celery_results_fit()


def test_a_celery_result_row_of_other_columns_puts_postgresql_on_the_portable_store(monkeypatch):
    monkeypatch.setattr(postgres, "CELERY_RESULT_COLUMNS", CELERY_RESULT_COLUMNS - {"worker"})

    assert not celery_results_fit()


def test_loading_drops_comments_and_indentation_and_refuses_a_name_given_twice(tmp_path):
    sql = tmp_path / "statements.sql"
    sql.write_text("-- a file comment\n-- name: one\n-- what it does\nSELECT 1\n    FROM t;\n")
    assert dict(load_statements(sql)) == {"one": "SELECT 1\nFROM t"}

    sql.write_text("-- name: one\nSELECT 1;\n-- name: one\nSELECT 2;\n")
    with pytest.raises(ValueError, match="two statements 'one'"):
        load_statements(sql)
