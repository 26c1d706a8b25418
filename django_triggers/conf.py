"""Settings of django-triggers, read lazily so ``override_settings`` works."""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Name of the runner used when neither ``using`` nor the manager names one.
    "TRIGGERS_DEFAULT_RUNNER": "celery",
    # Dotted paths of runner classes (or modules defining them) to import at startup.
    "TRIGGERS_RUNNERS": (),
    # How the library writes its rows: "auto" (PostgreSQL's own statements on
    # PostgreSQL, the ORM elsewhere) or "orm" (the ORM on every database).
    "TRIGGERS_STORE": "auto",
}


def get_setting(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])
