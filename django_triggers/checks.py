"""System checks: settings under which the library cannot keep its promises.

Django runs them with ``manage.py check`` and before ``runserver``,
``migrate`` and the test runner; ``docs/checks.rst`` explains each one. They
read settings only, so ``override_settings`` applies to them, and they never
open a database connection.
"""

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from celery.app import app_or_default
from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.db import router
from django.db.utils import load_backend

from django_triggers import registry
from django_triggers.conf import get_setting
from django_triggers.routers import session_databases

#: The tag of every check of the library: ``manage.py check --tag django_triggers``.
TAG = "django_triggers"

_WAL = re.compile(r"journal_mode\s*=\s*['\"]?wal\b", re.IGNORECASE)


def _library_databases() -> list[str]:
    """The aliases the library's tables are written to, as the database routers say.

    Every database holding sessions, and wherever the routers send the
    library's models when asked without a hint.
    """
    config = apps.get_app_config("django_triggers")
    aliases = {router.db_for_write(model) for model in config.get_models()}
    aliases.update(session_databases())
    return sorted(alias for alias in aliases if alias in settings.DATABASES)


def _is_sqlite(database: dict[str, Any]) -> bool:
    try:
        return load_backend(database.get("ENGINE", "")).DatabaseWrapper.vendor == "sqlite"
    except ImproperlyConfigured:
        return False  # Django reports an unknown backend itself


def _is_in_memory(name: Any) -> bool:
    # As django.db.backends.sqlite3.creation.DatabaseCreation.is_in_memory_db.
    return not isinstance(name, Path) and (name == ":memory:" or "mode=memory" in str(name))


def check_sqlite_databases(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """SQLite must begin transactions with the write lock, and should run in WAL mode.

    With SQLite's default deferred transactions, a fire that read the
    session and then writes cannot get the write lock while another
    connection holds it, and fails at once with *database is locked*,
    whatever the timeout. Without WAL, readers and the writer wait for each
    other. In-memory databases are left alone (each connection has its own).
    """
    messages: list[CheckMessage] = []
    for alias in _library_databases():
        database = settings.DATABASES[alias]
        if not _is_sqlite(database) or _is_in_memory(database.get("NAME")):
            continue
        options = database.get("OPTIONS") or {}
        mode = options.get("transaction_mode")
        if not isinstance(mode, str) or mode.upper() not in ("IMMEDIATE", "EXCLUSIVE"):
            messages.append(
                Error(
                    f"SQLite database {alias!r} begins its transactions in "
                    f"{(mode or 'DEFERRED').upper()} mode: concurrent fires fail with "
                    f"'database is locked'.",
                    hint=(
                        f'Add "transaction_mode": "IMMEDIATE" to '
                        f'DATABASES["{alias}"]["OPTIONS"], so that each transaction '
                        f"takes the write lock when it begins and writers wait for each "
                        f'other (up to the "timeout" option) instead of failing.'
                    ),
                    obj=f"DATABASES[{alias!r}]",
                    id="django_triggers.E001",
                )
            )
        if not _WAL.search(str(options.get("init_command") or "")):
            messages.append(
                Warning(
                    f"SQLite database {alias!r} does not set the WAL journal mode in its "
                    f"init_command: readers and the writer (web processes and workers) wait "
                    f"for each other.",
                    hint=(
                        f'Add "init_command": "PRAGMA journal_mode=WAL; PRAGMA '
                        f'synchronous=NORMAL;" to DATABASES["{alias}"]["OPTIONS"]. If the '
                        f"database file is already in WAL mode (SQLite remembers it), "
                        f"silence this warning with SILENCED_SYSTEM_CHECKS."
                    ),
                    obj=f"DATABASES[{alias!r}]",
                    id="django_triggers.W001",
                )
            )
    return messages


def check_runners_setting(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Every entry of ``TRIGGERS_RUNNERS`` must import and define a runner.

    At startup a bad entry is skipped so that this check can report it;
    ``using`` or ``TRIGGERS_DEFAULT_RUNNER`` naming one of its runners would
    fail later, on the first fire.
    """
    return [
        Error(
            problem,
            hint=(
                "List dotted paths of modules that define BaseTaskRunner subclasses, or of "
                "those classes (each with a name), and check that each one imports in this "
                "environment."
            ),
            obj="TRIGGERS_RUNNERS",
            id="django_triggers.E002",
        )
        for problem in registry.configured_runner_errors()
    ]


def check_default_runner(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """``TRIGGERS_DEFAULT_RUNNER`` must name a runner, or every fire of a task without
    ``using`` fails to hand its instances over."""
    name = get_setting("TRIGGERS_DEFAULT_RUNNER")
    registry.configured_runner_errors()  # registers those that import (E002 reports the rest)
    if isinstance(name, str) and name in registry.runner_names():
        return []
    known = ", ".join(repr(known) for known in registry.runner_names()) or "none"
    return [
        Error(
            f"TRIGGERS_DEFAULT_RUNNER is {name!r}, which names no task runner (known: {known}).",
            hint=(
                'Set it to "celery" (the default), "threading", or the name of a '
                "BaseTaskRunner subclass whose module is imported at startup or listed in "
                "TRIGGERS_RUNNERS."
            ),
            obj="TRIGGERS_DEFAULT_RUNNER",
            id="django_triggers.E003",
        )
    ]


def _celery_is_the_default_runner() -> bool:
    return bool(get_setting("TRIGGERS_DEFAULT_RUNNER") == "celery")


def check_celery_results(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """With the Celery runner, django_celery_results links each instance to its Celery result.

    Its ``django-db`` result backend cannot store anything without the app
    installed: every task run would then fail as it ends.
    """
    if not _celery_is_the_default_runner() or apps.is_installed("django_celery_results"):
        return []
    if app_or_default().conf.result_backend == "django-db":
        return [
            Error(
                "The Celery result backend is 'django-db', but django_celery_results is not "
                "in INSTALLED_APPS: workers cannot store the results of their tasks.",
                hint='Add "django_celery_results" to INSTALLED_APPS and run migrate.',
                obj="INSTALLED_APPS",
                id="django_triggers.E004",
            )
        ]
    return [
        Warning(
            "django_celery_results is not in INSTALLED_APPS while the Celery runner is the "
            "default: instances are not linked to their Celery results "
            "(TaskInstance.task_result, the admin's instance page).",
            hint=(
                'Add "django_celery_results" to INSTALLED_APPS, set CELERY_RESULT_BACKEND = '
                '"django-db" and run migrate.'
            ),
            obj="INSTALLED_APPS",
            id="django_triggers.W002",
        )
    ]


def check_celery_app(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """With the Celery runner, fires must reach the project's Celery app, configured and eager-free.

    Celery's fallback app (no app created when Django starts) knows no task
    and no broker. An eager app runs each instance, its cascades and its
    retries inside the process that fired, before ``fire()`` returns, and
    ignores retry cooldowns (a message's ``eta``).
    """
    if not _celery_is_the_default_runner():
        return []
    app = app_or_default()
    if registry.is_fallback_app(app):
        return [
            Warning(
                "No Celery app is created when Django starts, while the Celery runner is the "
                "default: fires cannot find the trigger tasks, nor send them to your broker.",
                hint=(
                    "Create the app in proj/celery.py and import it in proj/__init__.py: "
                    '"from .celery import app as celery_app".'
                ),
                id="django_triggers.W004",
            )
        ]
    if app.conf.task_always_eager:
        return [
            Warning(
                "Celery runs tasks eagerly (task_always_eager) while the Celery runner is the "
                "default: every instance, its cascade and its retries run inside the process "
                "that fired, before fire() returns, and retry cooldowns are ignored.",
                hint=(
                    "Remove CELERY_TASK_ALWAYS_EAGER. To run tasks without a broker in "
                    'development or tests, set TRIGGERS_DEFAULT_RUNNER = "threading", or use '
                    "the tools of django_triggers.testing."
                ),
                obj="CELERY_TASK_ALWAYS_EAGER",
                id="django_triggers.W003",
            )
        ]
    return []


#: What ``TriggersConfig.ready`` registers, with :data:`TAG`.
CHECKS = (
    check_sqlite_databases,
    check_runners_setting,
    check_default_runner,
    check_celery_results,
    check_celery_app,
)
