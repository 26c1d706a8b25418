"""Signals sent once the transaction that caused them has committed.

Receivers get plain values (no model instances), so they can feed metrics or
logs without touching the database::

    from django.dispatch import receiver
    from django_triggers.signals import instance_status_changed

    @receiver(instance_status_changed)
    def count_transitions(sender, session_uid, instance_name, task_name,
                          old_status, new_status, **kwargs):
        metrics.increment("triggers.instances", tags={"task": task_name, "status": new_status})

A receiver that raises is logged and does not disturb the others, nor the
dispatch of scheduled instances.
"""

from django.dispatch import Signal

#: A trigger was fired. Arguments: ``session_uid``, ``trigger_name``,
#: ``trigger_kwargs``, ``source``, ``event_id`` and ``scheduled`` (the names of
#: the instances the fire scheduled). The sender is the manager class.
trigger_fired = Signal()

#: An instance was created (``old_status`` is ``None``) or changed status.
#: Arguments: ``session_uid``, ``instance_name``, ``task_name``,
#: ``old_status``, ``new_status``. The sender is the manager class.
instance_status_changed = Signal()
