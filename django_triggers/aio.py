"""The manager's methods for async code: ``afire`` and its siblings.

:class:`~django_triggers.manager.TriggerManager` inherits
:class:`AsyncManagerMixin`, so that an async view awaits
``manager.afire(...)`` where a sync one calls ``manager.fire(...)``. Each
``a``-prefixed method takes the same arguments as its sync counterpart,
returns the same result and raises the same exceptions: it runs that very
method with :func:`asgiref.sync.sync_to_async` in thread-sensitive mode, as
Django's own async ORM methods (``aget``, ``asave``) run theirs. So it runs
in the thread that holds the request's database connection, and its
transaction and row locks are the sync method's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

from asgiref.sync import sync_to_async

from django_triggers.models import FiredTrigger, TaskInstance

if TYPE_CHECKING:
    from django_triggers.manager import TriggerManager

InstanceRef = str | TaskInstance


class _SyncManager(Protocol):
    """The sync methods the mixin runs: those of ``TriggerManager``."""

    def fire(
        self,
        trigger_name: str,
        trigger_kwargs: Mapping[str, Any] | None = None,
        *,
        source: str = ...,
        event_id: str | None = None,
    ) -> list[TaskInstance]: ...

    def update_configuration(self, configuration: Mapping[str, Mapping[str, Any]]) -> None: ...

    def get_instance(self, instance: InstanceRef) -> TaskInstance: ...

    def replay_failed_instance(
        self,
        instance: InstanceRef,
        replacement_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> TaskInstance: ...

    def skip_failed_instance(
        self,
        instance: InstanceRef,
        cascade: bool = False,
        result: Mapping[str, Any] | None = None,
    ) -> TaskInstance: ...


if TYPE_CHECKING:

    def _runs_on(manager: TriggerManager) -> _SyncManager:
        """Type-checked only: the manager has the sync methods, with these signatures."""
        return manager


def _sync(manager: AsyncManagerMixin) -> _SyncManager:
    """The manager, as the sync methods its mixin runs (``TriggerManager`` has them)."""
    return cast(_SyncManager, manager)


class AsyncManagerMixin:
    """Async counterparts of the manager's methods an application calls from its views.

    Construct the manager as usual (the constructor reads and writes
    nothing), then await these. The other methods have no async
    counterpart: wrap them in :func:`~asgiref.sync.sync_to_async` yourself.
    """

    async def afire(
        self,
        trigger_name: str,
        trigger_kwargs: Mapping[str, Any] | None = None,
        *,
        source: str = FiredTrigger.APPLICATION,
        event_id: str | None = None,
    ) -> list[TaskInstance]:
        """Async :meth:`~django_triggers.manager.TriggerManager.fire`: fire a trigger in the
        session; return the instances it scheduled."""
        return await sync_to_async(_sync(self).fire, thread_sensitive=True)(
            trigger_name, trigger_kwargs, source=source, event_id=event_id
        )

    async def aupdate_configuration(self, configuration: Mapping[str, Mapping[str, Any]]) -> None:
        """Async :meth:`~django_triggers.manager.TriggerManager.update_configuration`: add or
        replace the given tasks; tasks not named are kept."""
        await sync_to_async(_sync(self).update_configuration, thread_sensitive=True)(configuration)

    async def aget_instance(self, instance: InstanceRef) -> TaskInstance:
        """Async :meth:`~django_triggers.manager.TriggerManager.get_instance`: the instance of
        that name (or a fresh copy of the given instance)."""
        return await sync_to_async(_sync(self).get_instance, thread_sensitive=True)(instance)

    async def areplay_failed_instance(
        self,
        instance: InstanceRef,
        replacement_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> TaskInstance:
        """Async :meth:`~django_triggers.manager.TriggerManager.replay_failed_instance`: mark a
        failed instance ``replayed`` and schedule a clone of it."""
        return await sync_to_async(_sync(self).replay_failed_instance, thread_sensitive=True)(
            instance, replacement_kwargs
        )

    async def askip_failed_instance(
        self,
        instance: InstanceRef,
        cascade: bool = False,
        result: Mapping[str, Any] | None = None,
    ) -> TaskInstance:
        """Async :meth:`~django_triggers.manager.TriggerManager.skip_failed_instance`: mark a
        failed instance ``skipped``; with ``cascade``, fire its name with ``result``."""
        return await sync_to_async(_sync(self).skip_failed_instance, thread_sensitive=True)(
            instance, cascade, result
        )
