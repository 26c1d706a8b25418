"""The database and environment shared by every process of a benchmark run.

The example project's settings read their database and broker from
environment variables, so the run sets those variables before Django starts
and hands the same ones to every process it starts (fire processes, the
Celery worker). The benchmark always works on a database of its own: a fresh
SQLite file in a temporary directory, or a PostgreSQL database (by default
``django_triggers_bench``) that is dropped and created again at the start of
each run, so that every run starts from empty tables and the schema of this
checkout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_PG_NAME = "django_triggers_bench"
DEFAULT_BROKER = "redis://127.0.0.1:6379/14"

#: Celery reads these from the environment in preference to the app's
#: configuration; the run sets the broker itself and drops the others.
CELERY_ENV_OVERRIDES = (
    "CELERY_BROKER_URL",
    "CELERY_BROKER_READ_URL",
    "CELERY_BROKER_WRITE_URL",
    "CELERY_RESULT_BACKEND",
)


class BenchmarkSetupError(RuntimeError):
    """The benchmark's database or broker could not be prepared."""


def postgres_connection_kwargs(dbname: str) -> dict[str, str]:
    """Connection parameters of the PostgreSQL server, as the example settings read them."""
    return {
        "host": os.environ.get("TRIGGERS_PG_HOST", "127.0.0.1"),
        "port": os.environ.get("TRIGGERS_PG_PORT", "5432"),
        "user": os.environ.get("TRIGGERS_PG_USER", "postgres"),
        "password": os.environ.get("TRIGGERS_PG_PASSWORD", ""),
        "dbname": dbname,
    }


def recreate_postgres_database(name: str) -> None:
    """Drop ``name`` if it exists and create it empty, through the ``postgres`` database."""
    import psycopg
    from psycopg import errors, sql
    from psycopg.conninfo import make_conninfo

    try:
        conninfo = make_conninfo(**postgres_connection_kwargs("postgres"))
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except errors.ObjectInUse as exc:
        raise BenchmarkSetupError(
            f"the benchmark database {name!r} is in use by another connection (another "
            f"benchmark run?); wait for it to end or pass --pg-name"
        ) from exc
    except psycopg.OperationalError as exc:
        raise BenchmarkSetupError(f"cannot reach PostgreSQL: {exc}") from exc


def recreate_mariadb_database(name: str) -> None:
    """Drop ``name`` if it exists and create it empty (case-sensitive, as the library needs)."""
    import MySQLdb

    try:
        conn = MySQLdb.connect(
            host=os.environ.get("TRIGGERS_MYSQL_HOST", "127.0.0.1"),
            port=int(os.environ.get("TRIGGERS_MYSQL_PORT", "3306")),
            user=os.environ.get("TRIGGERS_MYSQL_USER", "root"),
            password=os.environ.get("TRIGGERS_MYSQL_PASSWORD", ""),
        )
    except MySQLdb.OperationalError as exc:
        raise BenchmarkSetupError(f"cannot reach MariaDB: {exc}") from exc
    try:
        cursor = conn.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        conn.close()


def prepare_environment(*, db: str, workdir: Path, pg_name: str, broker: str) -> dict[str, str]:
    """Create the run's database and return the variables every process of the run gets.

    The variables are also set in this process's environment; call this
    before Django is set up.
    """
    variables = {
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        # DEBUG would make Django keep every query in memory and time it.
        "DJANGO_DEBUG": "0",
        "TRIGGERS_DB": db,
        "TRIGGERS_DEFAULT_RUNNER": "celery",
        "CELERY_BROKER_URL": broker,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    if db in ("postgres", "mariadb") and "bench" not in pg_name:
        raise BenchmarkSetupError(
            f"refusing to use the database {pg_name!r}: the benchmark drops and "
            f"recreates its database, so its name must contain 'bench'"
        )
    if db == "postgres":
        recreate_postgres_database(pg_name)
        variables["TRIGGERS_PG_NAME"] = pg_name
    elif db == "mariadb":
        recreate_mariadb_database(pg_name)
        variables["TRIGGERS_MYSQL_NAME"] = pg_name
    else:
        variables["TRIGGERS_SQLITE_PATH"] = str(workdir / "bench.sqlite3")
    for key in CELERY_ENV_OVERRIDES:
        os.environ.pop(key, None)
    os.environ.update(variables)
    return variables


def child_environment() -> dict[str, str]:
    """The environment of a process started by the run (this one's, once prepared)."""
    return dict(os.environ)


def setup_django() -> None:
    """Start Django and load the benchmark's tasks and runner into this process."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import bench.runners
    import bench.tasks  # noqa: F401


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
