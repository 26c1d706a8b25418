"""What the rules look up by name: task runners, and Celery's trigger tasks.

The manager hands instances to runners by name, and the configuration checks
its ``run`` and ``using`` directives, through this module alone: runners and
trigger tasks sit above the manager (they call it), and register themselves
here when their classes are defined, so nothing below them imports them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, cast

from celery import current_app
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


def load_configured_runners() -> None:
    """Import the runners named in ``TRIGGERS_RUNNERS`` so that they register."""
    for path in get_setting("TRIGGERS_RUNNERS"):
        try:
            import_module(path)
        except ImportError:
            try:
                runner = import_string(path)
            except ImportError as exc:
                raise ImproperlyConfigured(
                    f"TRIGGERS_RUNNERS: cannot import {path!r} ({exc})"
                ) from exc
            if runner not in _runners.values():
                raise ImproperlyConfigured(
                    f"TRIGGERS_RUNNERS: {path!r} is not a BaseTaskRunner subclass with a name"
                ) from None


def get_runner_class(name: str) -> type[BaseTaskRunner]:
    """The runner registered as ``name``; ``LookupError`` naming the known ones if none."""
    if name not in _runners:
        load_configured_runners()
    try:
        return _runners[name]
    except KeyError:
        known = ", ".join(sorted(_runners)) or "none"
        raise LookupError(f"no task runner is registered as {name!r} (known: {known})") from None


def registered_runners() -> dict[str, type[BaseTaskRunner]]:
    """Every runner, by name, those of ``TRIGGERS_RUNNERS`` included."""
    load_configured_runners()
    return dict(_runners)


def register_trigger_task_class(task_class: type[TriggerTask]) -> None:
    """Recognise instances of ``task_class`` as trigger tasks (``TriggerTask`` does)."""
    _trigger_task_classes.append(task_class)


def get_trigger_task(name: str) -> TriggerTask:
    """The Celery task registered as ``name``, which must be a trigger task."""
    task = current_app.tasks.get(name)
    if task is None:
        raise LookupError(
            f"no Celery task is registered as {name!r} "
            f"(register it with app.register_task({name.rsplit('.', 1)[-1]}()))"
        )
    if not isinstance(task, tuple(_trigger_task_classes)):
        raise LookupError(f"Celery task {name!r} does not extend django_triggers.task.TriggerTask")
    return cast("TriggerTask", task)
