"""Cookbook: the manager class is named by a setting."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_triggers.manager import TriggerManager

#: The setting holding the dotted path of the manager class.
SETTING = "QUESTIONNAIRE_TRIGGER_MANAGER"
DEFAULT = "django_triggers.manager.TriggerManager"


def get_manager_class() -> type[TriggerManager]:
    """The class named by the setting (TriggerManager when it is not set)."""
    path = getattr(settings, SETTING, DEFAULT)
    try:
        manager_class = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{SETTING}: cannot import {path!r} ({exc})") from exc
    if not (isinstance(manager_class, type) and issubclass(manager_class, TriggerManager)):
        raise ImproperlyConfigured(f"{SETTING}: {path!r} is not a TriggerManager subclass")
    return manager_class


def get_manager(session_uid: str) -> TriggerManager:
    """A manager of the configured class for the session (created if new)."""
    return get_manager_class()(session_uid)
