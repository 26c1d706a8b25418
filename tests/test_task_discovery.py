"""A configuration finds its tasks where Celery's autodiscovery does, in any process.

``manage.py shell``, a script or a web process may configure a session before
anything imported the module that registers its tasks: the lookup then asks
the Celery app to import its task modules, as a worker does when it starts.
"""

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from celery import Celery

from django_triggers import registry
from django_triggers.models import TaskConfig
from tests.helpers import ROOT, database_env

#: Set Django up, and nothing else, then configure a session: argv[1] is its
#: uid, argv[2] the Celery task name the configuration runs.
CONFIGURE = """
import json
import sys

import django

django.setup()

from django_triggers.exceptions import ConfigurationError
from django_triggers.manager import TriggerManager

imported_before = "tests.autodiscovered.tasks" in sys.modules
try:
    TriggerManager(sys.argv[1]).update_configuration(
        {"t_discovered": {"after": ["go"], "run": sys.argv[2]}}
    )
except ConfigurationError as exc:
    error = str(exc)
else:
    error = None
print(json.dumps({"imported_before": imported_before, "error": error}))
"""


def configure_in_a_new_process(session_uid: str, run: str) -> dict[str, Any]:
    """Run :data:`CONFIGURE` on this test's database, with ``tests.autodiscovered`` installed."""
    env = {
        **os.environ,
        **database_env(),
        "DJANGO_SETTINGS_MODULE": "tests.autodiscover_settings",
    }
    completed = subprocess.run(
        [sys.executable, "-c", CONFIGURE, session_uid, run],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout.splitlines()[-1])
    return result


@pytest.mark.django_db(transaction=True)
def test_a_process_that_never_imported_the_tasks_module_configures_its_tasks() -> None:
    session_uid = f"discovery-{uuid.uuid4().hex}"

    outcome = configure_in_a_new_process(session_uid, "tests.autodiscovered.Discovered")

    assert outcome == {"imported_before": False, "error": None}
    config = TaskConfig.objects.get(session__uid=session_uid, name="t_discovered")
    assert config.run == "tests.autodiscovered.Discovered"


@pytest.mark.django_db(transaction=True)
def test_a_task_no_module_registers_is_refused_with_what_to_check() -> None:
    outcome = configure_in_a_new_process(f"discovery-{uuid.uuid4().hex}", "tests.Nowhere")

    error = outcome["error"]
    assert "no Celery task is registered as 'tests.Nowhere'" in error
    assert "in the Celery app 'example_project', even after it imported its task modules" in error
    for what_to_check in ("app.autodiscover_tasks()", "INSTALLED_APPS", "register_task(Nowhere())"):
        assert what_to_check in error


def test_without_a_celery_app_the_error_says_where_to_import_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What Celery makes up when no app was created in the process (celery._state).
    fallback = Celery("default", fixups=[], set_as_current=False)
    monkeypatch.setattr(registry, "app_or_default", lambda: fallback)

    with pytest.raises(LookupError, match="no Celery app was created") as raised:
        registry.get_trigger_task("tests.Echo")

    assert "proj/__init__.py" in str(raised.value)


def test_an_app_imports_its_task_modules_once(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Celery("probe", fixups=[], set_as_current=False)
    imports: list[str] = []
    monkeypatch.setattr(app.loader, "import_default_modules", lambda: imports.append("done"))

    assert registry.import_task_modules(app) is True
    assert registry.import_task_modules(app) is False
    assert imports == ["done"]
