"""What the rules look up by name: task runners, and Celery's trigger tasks.

The manager hands instances to runners by name, and the configuration checks
its ``run`` and ``using`` directives, through this module alone: runners and
trigger tasks sit above the manager (they call it), and register themselves
here when their classes are defined, so nothing below them imports them.
Trigger tasks are looked up in Celery's current app, which first imports its
autodiscovered task modules if a name is missing, as a worker does when it
starts.
"""

from __future__ import annotations

import threading
import weakref
from importlib import import_module
from typing import TYPE_CHECKING, cast

from celery import Celery
from celery.app import app_or_default
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_triggers.conf import get_setting

if TYPE_CHECKING:
    from django_triggers.runners import BaseTaskRunner
    from django_triggers.task import TriggerTask

_runners: dict[str, type[BaseTaskRunner]] = {}
_trigger_task_classes: list[type[TriggerTask]] = []


def register_runner(name: str, runner_class: type[BaseTaskRunner]) -> None:
    """Make ``runner_class`` the runner called ``name`` (``BaseTaskRunner`` subclasses do)."""
    _runners[name] = runner_class


def configured_runner_paths() -> list[str]:
    """The entries of ``TRIGGERS_RUNNERS``; ``ImproperlyConfigured`` unless it lists strings."""
    paths = get_setting("TRIGGERS_RUNNERS")
    if isinstance(paths, str) or not isinstance(paths, list | tuple):
        raise ImproperlyConfigured(
            f"TRIGGERS_RUNNERS must be a list of dotted paths, not {type(paths).__name__} {paths!r}"
        )
    for path in paths:
        if not isinstance(path, str) or not path:
            raise ImproperlyConfigured(
                f"TRIGGERS_RUNNERS must be a list of dotted paths; {path!r} is not one"
            )
    return list(paths)


def load_configured_runner(path: str) -> None:
    """Import one entry of ``TRIGGERS_RUNNERS``: a module of runners, or a runner class."""
    try:
        import_module(path)
    except ImportError:
        try:
            runner = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(f"TRIGGERS_RUNNERS: cannot import {path!r} ({exc})") from exc
        if runner not in _runners.values():
            raise ImproperlyConfigured(
                f"TRIGGERS_RUNNERS: {path!r} is not a BaseTaskRunner subclass with a name"
            ) from None


def load_configured_runners() -> None:
    """Import the runners named in ``TRIGGERS_RUNNERS`` so that they register."""
    for path in configured_runner_paths():
        load_configured_runner(path)


def configured_runner_errors() -> list[str]:
    """Import every runner of ``TRIGGERS_RUNNERS`` that imports; say what is wrong with the rest.

    For startup and the system checks, which report the problems rather than
    stop at the first one.
    """
    try:
        paths = configured_runner_paths()
    except ImproperlyConfigured as exc:
        return [str(exc)]
    errors = []
    for path in paths:
        try:
            load_configured_runner(path)
        except ImproperlyConfigured as exc:
            errors.append(str(exc))
        except Exception as exc:  # a module that fails as it is imported
            errors.append(f"TRIGGERS_RUNNERS: cannot import {path!r} ({type(exc).__name__}: {exc})")
    return errors


def get_runner_class(name: str) -> type[BaseTaskRunner]:
    """The runner registered as ``name``; ``LookupError`` naming the known ones if none."""
    if name not in _runners:
        load_configured_runners()
    try:
        return _runners[name]
    except KeyError:
        known = ", ".join(sorted(_runners)) or "none"
        raise LookupError(f"no task runner is registered as {name!r} (known: {known})") from None


def runner_names() -> list[str]:
    """The names of the runners registered so far, without importing ``TRIGGERS_RUNNERS``."""
    return sorted(_runners)


def registered_runners() -> dict[str, type[BaseTaskRunner]]:
    """Every runner, by name, those of ``TRIGGERS_RUNNERS`` included."""
    load_configured_runners()
    return dict(_runners)


def register_trigger_task_class(task_class: type[TriggerTask]) -> None:
    """Recognise instances of ``task_class`` as trigger tasks (``TriggerTask`` does)."""
    _trigger_task_classes.append(task_class)


def get_trigger_task(name: str) -> TriggerTask:
    """The Celery task registered as ``name``, which must be a trigger task.

    A name the current Celery app does not know yet is looked up again once
    the app has imported the task modules it autodiscovers: a process that
    never imported them (``manage.py shell``, a script, a web process) finds
    the tasks a worker would.
    """
    app = app_or_default()
    task = app.tasks.get(name)
    if task is None and not is_fallback_app(app) and import_task_modules(app):
        task = app.tasks.get(name)
    if task is None:
        raise LookupError(_not_registered(name, app))
    if not isinstance(task, tuple(_trigger_task_classes)):
        raise LookupError(f"Celery task {name!r} does not extend django_triggers.task.TriggerTask")
    return cast("TriggerTask", task)


_task_modules_imported: weakref.WeakSet[Celery] = weakref.WeakSet()
# Reentrant: a module being imported may itself look a task up.
_task_modules_lock = threading.RLock()


def import_task_modules(app: Celery) -> bool:
    """Have ``app`` import its task modules, as a worker does when it starts; once per app.

    Celery imports what ``app.autodiscover_tasks()``, ``include`` and
    ``imports`` name only when asked to (workers ask at startup). Returns
    whether it imported them now: ``False`` if it had already done so (or
    is doing so, a task module looking a task up), or while Django is still
    loading its apps (Celery's Django fixup would set
    Django up again).
    """
    if not apps.ready:
        return False
    with _task_modules_lock:
        if app in _task_modules_imported:
            return False
        _task_modules_imported.add(app)
        try:
            app.loader.import_default_modules()
        except BaseException:
            _task_modules_imported.discard(app)  # the next lookup tries again
            raise
    return True


def is_fallback_app(app: Celery) -> bool:
    """Whether ``app`` is the app Celery makes up when no app was created in this process."""
    # Celery("default", fixups=[], set_as_current=False), in celery._state.
    return (
        app.main == "default"
        and not getattr(app, "fixups", None)
        and not getattr(app, "set_as_current", True)
    )


def _not_registered(name: str, app: Celery) -> str:
    """Why task ``name`` is not found, and what to check."""
    class_name = name.rsplit(".", 1)[-1]
    if is_fallback_app(app):
        return (
            f"no Celery task is registered as {name!r}: no Celery app was created in this "
            f"process, so Celery's current app is its empty fallback. Import your project's "
            f"Celery app when Django starts, in proj/__init__.py: "
            f"'from .celery import app as celery_app'"
        )
    imported = (
        "even after it imported its task modules"
        if app in _task_modules_imported
        else "and Django is still loading its apps, so the app has not imported its task modules"
    )
    return (
        f"no Celery task is registered as {name!r} in the Celery app {app.main!r}, "
        f"{imported}. Check that proj/celery.py calls "
        f"app.autodiscover_tasks() (or lists the task's module in include), that the task's "
        f"module is the tasks.py of an app in INSTALLED_APPS, and that it registers the task "
        f"with app.register_task({class_name}()) under that name"
    )
