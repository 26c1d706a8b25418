"""The examples of the Statuses and recovery page."""

from typing import Any

from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance


def session_report(manager: TriggerManager) -> dict[str, Any]:
    """What a session is waiting for, and what went wrong in it."""
    unresolved = manager.get_unresolved_instances()
    return {
        # Tasks with no instance yet, or with an unresolved one.
        "tasks": sorted(config.name for config in manager.get_unresolved_tasks()),
        # The after triggers each waiting instance has not seen yet.
        "waiting": {
            instance.name: manager.waiting_for(instance)["after_missing"]
            for instance in unresolved
            if instance.status == TaskInstance.UNSTARTED
        },
        # Why each failed instance failed.
        "failed": {
            instance.name: instance.metadata["exception_message"]
            for instance in unresolved
            if instance.status == TaskInstance.FAILED
        },
        # Instances that logged an error nobody has looked at yet.
        "logs": [instance.name for instance in manager.get_instances_with_unresolved_logs()],
    }


def replay_with_corrected_birthday(manager: TriggerManager, name: str, birthday: str) -> str:
    """Run a failed t_importSubject again, with the birthday the respondent meant."""
    failed = manager.get_instance(name)
    responses = failed.kwargs["firstPageReceived"]["responses"]
    corrected = {**responses, "birthday": birthday}
    clone = manager.replay_failed_instance(
        failed, replacement_kwargs={"firstPageReceived": {"responses": corrected}}
    )
    return clone.name  # t_importSubject#1, scheduled; t_importSubject#0 is now replayed


def go_on_without_browser_metadata(manager: TriggerManager, name: str) -> None:
    """Give up on a failed t_importBrowserMetadata, letting what waits for it run."""
    manager.skip_failed_instance(name, cascade=True, result={"browser": None})


def withdraw(manager: TriggerManager, reason: str) -> list[str]:
    """The respondent withdrew: abandon every instance still waiting for triggers."""
    abandoned = []
    for instance in manager.get_unresolved_instances():
        if instance.can_abandon:
            manager.update_instance_status(
                instance, TaskInstance.ABANDONED, metadata={"abandoned_reason": reason}
            )
            abandoned.append(instance.name)
    return abandoned


def acknowledge_logs(manager: TriggerManager) -> None:
    """An operator has read the errors the session's tasks logged."""
    for instance in manager.get_instances_with_unresolved_logs():
        manager.mark_instance_logs_resolved(instance)
        manager.update_instance_metadata(instance, {"reviewed_by": "operator@example.com"})
