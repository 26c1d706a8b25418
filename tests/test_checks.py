"""The system checks of ``django_triggers.checks``: one behaviour per test."""

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_triggers import checks

# Changing DATABASES in a test makes Django warn that connections keep the old
# settings: the checks read only the settings, which is what these tests change.
pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")

SAFE_SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}

WITHOUT_CELERY_RESULTS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_triggers",
    "example_project.questionnaire",
]


@pytest.fixture
def celery_app(monkeypatch: pytest.MonkeyPatch) -> Celery:
    """A Celery app read from the Django settings, as the checks' current app.

    The example project's app may hold values other tests set on it directly,
    which take precedence over the settings; this one reads only the settings.
    """
    app = Celery("checked", fixups=[], set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    monkeypatch.setattr(checks, "app_or_default", lambda: app)
    return app


def sqlite(tmp_path: Path, **options: Any) -> dict[str, Any]:
    """``DATABASES`` with one SQLite file and ``options``."""
    return {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": tmp_path / "db.sqlite3",
            "OPTIONS": options,
        }
    }


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


# -- the project's own settings ---------------------------------------------------------


def test_the_settings_of_the_example_project_and_the_suite_pass_every_check() -> None:
    out = StringIO()

    call_command("check", stdout=out, stderr=out)

    assert "System check identified no issues" in out.getvalue()


def test_manage_py_check_stops_on_an_error_and_names_its_id() -> None:
    with (
        override_settings(TRIGGERS_DEFAULT_RUNNER="nowhere"),
        pytest.raises(SystemCheckError, match=r"django_triggers\.E003"),
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())


def test_check_reports_warnings_with_their_ids_and_goes_on(celery_app: Celery) -> None:
    err = StringIO()

    with override_settings(TRIGGERS_DEFAULT_RUNNER="celery", CELERY_TASK_ALWAYS_EAGER=True):
        call_command("check", "--tag", checks.TAG, stdout=StringIO(), stderr=err)

    assert "django_triggers.W003" in err.getvalue()


# -- SQLite -----------------------------------------------------------------------------


def test_sqlite_without_a_transaction_mode_is_an_error(tmp_path: Path) -> None:
    options = {
        key: value for key, value in SAFE_SQLITE_OPTIONS.items() if key != "transaction_mode"
    }

    with override_settings(DATABASES=sqlite(tmp_path, **options)):
        messages = checks.check_sqlite_databases()

    assert ids(messages) == ["django_triggers.E001"]
    assert '"transaction_mode": "IMMEDIATE"' in messages[0].hint


def test_sqlite_in_deferred_mode_is_an_error(tmp_path: Path) -> None:
    options = {**SAFE_SQLITE_OPTIONS, "transaction_mode": "DEFERRED"}

    with override_settings(DATABASES=sqlite(tmp_path, **options)):
        assert ids(checks.check_sqlite_databases()) == ["django_triggers.E001"]


def test_sqlite_in_immediate_mode_whatever_its_case_passes(tmp_path: Path) -> None:
    options = {**SAFE_SQLITE_OPTIONS, "transaction_mode": "immediate"}

    with override_settings(DATABASES=sqlite(tmp_path, **options)):
        assert checks.check_sqlite_databases() == []


def test_sqlite_without_wal_in_its_init_command_is_a_warning(tmp_path: Path) -> None:
    options = {**SAFE_SQLITE_OPTIONS, "init_command": "PRAGMA synchronous=NORMAL;"}

    with override_settings(DATABASES=sqlite(tmp_path, **options)):
        messages = checks.check_sqlite_databases()

    assert ids(messages) == ["django_triggers.W001"]
    assert "journal_mode=WAL" in messages[0].hint


def test_sqlite_with_neither_option_gets_the_error_and_the_warning(tmp_path: Path) -> None:
    with override_settings(DATABASES=sqlite(tmp_path)):
        assert ids(checks.check_sqlite_databases()) == [
            "django_triggers.E001",
            "django_triggers.W001",
        ]


def test_an_in_memory_sqlite_database_is_not_checked() -> None:
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

    with override_settings(DATABASES=databases):
        assert checks.check_sqlite_databases() == []


def test_a_postgresql_database_is_not_checked_for_sqlite_options() -> None:
    databases = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "app"}}

    with override_settings(DATABASES=databases):
        assert checks.check_sqlite_databases() == []


class LibraryElsewhereRouter:
    """Sends the library's tables to the ``triggers`` database."""

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return "triggers" if model._meta.app_label == "django_triggers" else None


def test_only_the_database_the_library_writes_to_is_checked(tmp_path: Path) -> None:
    databases = {
        "default": sqlite(tmp_path)["default"],  # unsafe, but not the library's
        "triggers": {**sqlite(tmp_path, **SAFE_SQLITE_OPTIONS)["default"], "NAME": "t.sqlite3"},
    }

    with override_settings(
        DATABASES=databases, DATABASE_ROUTERS=[f"{__name__}.LibraryElsewhereRouter"]
    ):
        assert checks.check_sqlite_databases() == []


# -- runners ----------------------------------------------------------------------------


def test_a_runners_entry_that_does_not_import_is_an_error() -> None:
    with override_settings(TRIGGERS_RUNNERS=["docs.examples.nowhere.Runner"]):
        messages = checks.check_runners_setting()

    assert ids(messages) == ["django_triggers.E002"]
    assert "docs.examples.nowhere.Runner" in messages[0].msg


def test_a_runners_entry_that_is_not_a_runner_is_an_error() -> None:
    with override_settings(TRIGGERS_RUNNERS=["django_triggers.conf.get_setting"]):
        messages = checks.check_runners_setting()

    assert ids(messages) == ["django_triggers.E002"]
    assert "not a BaseTaskRunner subclass" in messages[0].msg


def test_runners_given_as_a_string_rather_than_a_list_is_an_error() -> None:
    with override_settings(TRIGGERS_RUNNERS="docs.examples.customizing.InlineTaskRunner"):
        messages = checks.check_runners_setting()

    assert ids(messages) == ["django_triggers.E002"]
    assert "must be a list" in messages[0].msg


def test_every_bad_runners_entry_is_reported() -> None:
    entries = ["docs.examples.nowhere.Runner", "docs.examples.elsewhere.Runner"]

    with override_settings(TRIGGERS_RUNNERS=entries):
        assert ids(checks.check_runners_setting()) == ["django_triggers.E002"] * 2


def test_runners_that_import_pass() -> None:
    with override_settings(TRIGGERS_RUNNERS=["docs.examples.customizing.InlineTaskRunner"]):
        assert checks.check_runners_setting() == []


def test_an_unknown_default_runner_is_an_error() -> None:
    with override_settings(TRIGGERS_DEFAULT_RUNNER="lambda"):
        messages = checks.check_default_runner()

    assert ids(messages) == ["django_triggers.E003"]
    assert "'celery'" in messages[0].msg and "'threading'" in messages[0].msg


def test_a_runner_listed_in_triggers_runners_can_be_the_default() -> None:
    with override_settings(
        TRIGGERS_RUNNERS=["docs.examples.customizing.InlineTaskRunner"],
        TRIGGERS_DEFAULT_RUNNER="inline",
    ):
        assert checks.check_default_runner() == []


@pytest.mark.parametrize("runner", ["celery", "threading"])
def test_the_built_in_runners_can_be_the_default(runner: str) -> None:
    with override_settings(TRIGGERS_DEFAULT_RUNNER=runner):
        assert checks.check_default_runner() == []


# -- Celery -----------------------------------------------------------------------------


def test_the_django_db_backend_without_django_celery_results_is_an_error(
    celery_app: Celery,
) -> None:
    with override_settings(
        INSTALLED_APPS=WITHOUT_CELERY_RESULTS,
        TRIGGERS_DEFAULT_RUNNER="celery",
        CELERY_RESULT_BACKEND="django-db",
    ):
        assert ids(checks.check_celery_results()) == ["django_triggers.E004"]


def test_no_django_celery_results_with_another_backend_is_a_warning(celery_app: Celery) -> None:
    with override_settings(
        INSTALLED_APPS=WITHOUT_CELERY_RESULTS,
        TRIGGERS_DEFAULT_RUNNER="celery",
        CELERY_RESULT_BACKEND="redis://127.0.0.1:6379/1",
    ):
        assert ids(checks.check_celery_results()) == ["django_triggers.W002"]


def test_no_django_celery_results_is_fine_when_celery_is_not_the_default_runner(
    celery_app: Celery,
) -> None:
    with override_settings(
        INSTALLED_APPS=WITHOUT_CELERY_RESULTS,
        TRIGGERS_DEFAULT_RUNNER="threading",
        CELERY_RESULT_BACKEND="django-db",
    ):
        assert checks.check_celery_results() == []


def test_eager_celery_is_a_warning_when_celery_is_the_default_runner(celery_app: Celery) -> None:
    with override_settings(TRIGGERS_DEFAULT_RUNNER="celery", CELERY_TASK_ALWAYS_EAGER=True):
        messages = checks.check_celery_app()

    assert ids(messages) == ["django_triggers.W003"]
    assert "threading" in messages[0].hint


def test_eager_celery_is_fine_when_celery_is_not_the_default_runner(celery_app: Celery) -> None:
    with override_settings(TRIGGERS_DEFAULT_RUNNER="threading", CELERY_TASK_ALWAYS_EAGER=True):
        assert checks.check_celery_app() == []


def test_the_project_celery_app_passes() -> None:
    with override_settings(TRIGGERS_DEFAULT_RUNNER="celery"):
        assert checks.check_celery_app() == []


def test_celery_fallback_app_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    # What Celery makes up when no app was created in the process (celery._state).
    fallback = Celery("default", fixups=[], set_as_current=False)
    monkeypatch.setattr(checks, "app_or_default", lambda: fallback)

    with override_settings(TRIGGERS_DEFAULT_RUNNER="celery"):
        messages = checks.check_celery_app()

    assert ids(messages) == ["django_triggers.W004"]
    assert "proj/__init__.py" in messages[0].hint
