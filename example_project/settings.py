"""Settings of the example project, also used by the test suite.

By default the project needs no services: SQLite, and tasks run in threads of
the web process::

    python manage.py migrate
    python manage.py runserver

With PostgreSQL and Celery, give the web process and the worker the same
environment::

    export TRIGGERS_DB=postgres CELERY_BROKER_URL=redis://127.0.0.1:6379/0
    python manage.py migrate
    celery -A example_project worker -l info    # in one terminal
    python manage.py runserver                  # in another

Environment variables:

``TRIGGERS_DB``
    ``sqlite`` (default; a file next to this one, no services needed),
    ``postgres`` or ``mariadb`` (MariaDB or MySQL).
``TRIGGERS_PG_NAME``, ``TRIGGERS_PG_HOST``, ``TRIGGERS_PG_PORT``,
``TRIGGERS_PG_USER``, ``TRIGGERS_PG_PASSWORD``
    PostgreSQL connection (defaults: ``django_triggers``, ``127.0.0.1``,
    ``5432``, ``postgres``, empty).
``TRIGGERS_MYSQL_NAME``, ``TRIGGERS_MYSQL_HOST``, ``TRIGGERS_MYSQL_PORT``,
``TRIGGERS_MYSQL_USER``, ``TRIGGERS_MYSQL_PASSWORD``
    MariaDB or MySQL connection (defaults: ``django_triggers``,
    ``127.0.0.1``, ``3306``, ``root``, empty).
``TRIGGERS_SQLITE_PATH``
    Where the SQLite database lives (default: ``example_project/db.sqlite3``).
``CELERY_BROKER_URL``
    The Celery broker; when it is unset, tasks run in threads of the web
    process (the ``threading`` runner) and no broker is needed.
``TRIGGERS_DEFAULT_RUNNER``
    Overrides that choice: ``threading`` or ``celery``.
``TRIGGERS_STORE``
    ``auto`` (default) or ``orm``: the portable store on every database,
    PostgreSQL included.
``TRIGGERS_SHARDS``
    Unset by default. ``1`` adds a second database of sessions, ``shard1``,
    of the same kind as ``default`` (its name is the default database's
    with ``_shard1`` added: ``django_triggers_shard1``, or
    ``db_shard1.sqlite3`` beside the SQLite file); ``sqlite`` makes that
    second database a SQLite file (``db_shard1.sqlite3`` beside
    ``TRIGGERS_SQLITE_PATH``'s file) whatever ``default`` is. Either way,
    ``django_triggers.routers.SessionHashRouter`` spreads sessions over
    ``default`` and ``shard1``. For ``tests/test_shards.py`` and
    ``tests/test_shards_worker.py``; the rest of the suite expects sessions
    in ``default`` only.
``DJANGO_SECRET_KEY``, ``DJANGO_DEBUG``
    The secret key (a fixed, public one by default) and debug mode (``1``,
    the default, or ``0``).
"""

import copy
import os
from pathlib import Path
from typing import Any

import django

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_results",
    "django_triggers",
    "example_project.questionnaire",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "example_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES: dict[str, dict[str, Any]]
DATABASE_KIND = os.environ.get("TRIGGERS_DB", "sqlite")
if DATABASE_KIND == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": os.environ.get("TRIGGERS_MYSQL_NAME", "django_triggers"),
            "HOST": os.environ.get("TRIGGERS_MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("TRIGGERS_MYSQL_PORT", "3306"),
            "USER": os.environ.get("TRIGGERS_MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("TRIGGERS_MYSQL_PASSWORD", ""),
            # READ COMMITTED, as on PostgreSQL: a statement that waited for a
            # row lock reads what the lock's holder committed.
            "OPTIONS": {"charset": "utf8mb4", "isolation_level": "read committed"},
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_bin"},
        }
    }
elif DATABASE_KIND == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("TRIGGERS_PG_NAME", "django_triggers"),
            "HOST": os.environ.get("TRIGGERS_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("TRIGGERS_PG_PORT", "5432"),
            "USER": os.environ.get("TRIGGERS_PG_USER", "postgres"),
            "PASSWORD": os.environ.get("TRIGGERS_PG_PASSWORD", ""),
            # Bind parameters on the server and let psycopg prepare the
            # statements a fire repeats, so that PostgreSQL plans them once
            # per connection (behind PgBouncer in transaction mode, leave
            # prepare_threshold out).
            "OPTIONS": {"server_side_binding": True, "prepare_threshold": 5},
            # Keep connections (and their prepared statements) across
            # requests and Celery tasks.
            "CONN_MAX_AGE": int(os.environ.get("TRIGGERS_PG_CONN_MAX_AGE", "60")),
            "CONN_HEALTH_CHECKS": True,
        }
    }
else:
    sqlite_path = Path(os.environ.get("TRIGGERS_SQLITE_PATH", BASE_DIR / "db.sqlite3"))
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": sqlite_path,
            "OPTIONS": {
                # Concurrent fires need both: WAL lets readers run beside the
                # writer, and IMMEDIATE takes the write lock when a transaction
                # begins, so writers queue (up to "timeout" seconds) instead of
                # failing with "database is locked" when they upgrade a read.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # The tests use a file too (not the in-memory default), so that
            # threads see one database with the same locking as production.
            "TEST": {"NAME": sqlite_path.with_name(f"test_{sqlite_path.name}")},
        }
    }

SHARDS = os.environ.get("TRIGGERS_SHARDS", "")
if SHARDS not in ("", "1", "sqlite"):
    raise ValueError(f"TRIGGERS_SHARDS must be 1 or sqlite, not {SHARDS!r}")
if SHARDS:
    # A second database of sessions, named after the first.
    shard = copy.deepcopy(DATABASES["default"])
    sqlite_file = Path(os.environ.get("TRIGGERS_SQLITE_PATH", BASE_DIR / "db.sqlite3"))
    sqlite_file = sqlite_file.with_name(f"{sqlite_file.stem}_shard1{sqlite_file.suffix}")
    if SHARDS == "sqlite" and DATABASE_KIND != "sqlite":
        shard = {
            "ENGINE": "django.db.backends.sqlite3",
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    if shard["ENGINE"] == "django.db.backends.sqlite3":
        shard["NAME"] = sqlite_file
        shard["TEST"] = {"NAME": sqlite_file.with_name(f"test_{sqlite_file.name}")}
    else:
        shard["NAME"] = f"{shard['NAME']}_shard1"
    DATABASES["shard1"] = shard
    DATABASE_ROUTERS = ["django_triggers.routers.SessionHashRouter"]
    TRIGGERS_SESSION_DATABASES = ["default", "shard1"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Email a task sends (the examples in docs/ do) goes to the console. Django
# 6.1 replaced EMAIL_BACKEND with MAILERS.
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
STATIC_URL = "static/"

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
# Acknowledge a message when its task ends, and put it back if the worker
# process dies: a redelivered message finds its instance no longer scheduled
# and does nothing, so this cannot run an instance twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every database connection before and after each
# task, whatever CONN_MAX_AGE says, unless this is set: each task would then
# connect again and lose the connection's prepared statements. With it set,
# example_project/celery.py gives tasks the connection lifecycle of requests.
CELERY_DB_REUSE_MAX = 1_000_000_000

# Without a broker the demo runs tasks in threads; with one, on Celery workers.
TRIGGERS_STORE = os.environ.get("TRIGGERS_STORE", "auto")
TRIGGERS_DEFAULT_RUNNER = os.environ.get(
    "TRIGGERS_DEFAULT_RUNNER", "celery" if CELERY_BROKER_URL else "threading"
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_triggers": {"handlers": ["console"], "level": "WARNING"}},
}
