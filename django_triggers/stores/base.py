"""What the rules need from a database, and the values that pass between them.

A store is the only code that writes the library's rows. The manager asks it
to lock a session, read what a fire needs, write what a fire changed, lock,
start and move instances, and write a Celery result row; every store gives
the same answers, so the rules above it are the same on every database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from django.db.models import Model

from django_triggers.models import (
    FiredTrigger,
    TaskConfig,
    TaskInstance,
    TaskListener,
    TriggerSession,
)

#: What applying a fire changes on an existing instance, and a status change writes.
INSTANCE_UPDATE_FIELDS = (
    "kwargs",
    "unless_fired",
    "status",
    "status_changed_at",
    "celery_task_id",
    "dispatched_at",
    "metadata",
    "modified",
)


@dataclass
class FireState:
    """What a fire reads: under the session's lock, or guarded by its version."""

    manager_class: str
    #: ``TriggerSession.version`` as read; a write without the lock requires it unchanged.
    version: int = 0
    configs: list[TaskConfig] = field(default_factory=list)
    #: Unstarted instances of each config, by number.
    open_instances: dict[int, list[TaskInstance]] = field(default_factory=lambda: defaultdict(list))
    #: The number the next instance of each config takes; ``None`` (not
    #: read) where the fire cannot create one: the config has an open
    #: instance, and its ``andEvery`` is not the fired trigger.
    next_numbers: dict[int, int | None] = field(default_factory=dict)
    #: Latest kwargs of the triggers named by the configs the fire may create
    #: an instance of, among those fired, but the firing one: what a new
    #: instance starts with.
    latest_kwargs: dict[str, Any] = field(default_factory=dict)

    def next_number(self, config: TaskConfig) -> int:
        """The number of the instance of ``config`` that the fire creates."""
        number = self.next_numbers[config.id]
        if number is None:
            raise RuntimeError(
                f"the read of the fire left out task {config.name!r}, which has open "
                f"instances and no andEvery on this trigger, so no new instance"
            )
        return number


@dataclass
class Started:
    """What a worker's start returns, when a store starts an instance in one statement."""

    session: TriggerSession
    #: The instance, now ``running``, with its config.
    instance: TaskInstance
    #: What the instance's cascade reads (the tasks listening to its task's
    #: name...), as it was when the instance started. The cascade's write
    #: checks that it is still so, as any fire's does.
    cascade_state: FireState


@dataclass
class Upsert:
    """A row written with a fire; it replaces the row with the same ``key``, but for ``kept``."""

    row: Model
    key: str
    kept: tuple[str, ...] = ()

    def updated_names(self) -> tuple[str, ...]:
        """The attnames of the fields that replace those of an existing row."""
        skipped = {self.key, *self.kept}
        return tuple(
            f.attname
            for f in type(self.row)._meta.concrete_fields
            if not f.primary_key and f.attname not in skipped
        )


@dataclass
class Finishing:
    """A running instance whose cascade the fire is: finished by the fire's own write."""

    pk: int
    result: Any
    when: datetime
    #: The row of its Celery task's result, written only if it is finished.
    celery_result: Upsert | None = None


class Store(Protocol):
    """The database verbs of the rules, for one database alias."""

    #: Whether a fire may read without the session's lock and write only if
    #: nothing it read has changed (``write_fire`` then returns ``False``),
    #: and whether a worker's start and a cascade's finish each take one
    #: statement (``start_by_uid``, ``write_fire(finishing=...)``).
    fires_without_lock: ClassVar[bool]

    using: str

    def find_or_create_session(self, uid: str, manager_class: str) -> TriggerSession:
        """The session ``uid``, created with ``manager_class`` if there is none."""

    def record_manager_class(self, session_id: int, manager_class: str) -> None:
        """Make ``manager_class`` the class workers rebuild to run the session's work."""

    def write_configuration(
        self,
        new: Sequence[TaskConfig],
        replaced: Sequence[TaskConfig],
        listeners: Callable[[], Iterable[TaskListener]],
        replaced_fields: Sequence[str],
    ) -> None:
        """Insert ``new`` configs, update ``replaced`` ones, and index what they listen to.

        ``listeners`` builds the index rows once the new configs have their
        keys; the replaced configs' old rows are deleted first.
        """

    def raise_log_level(self, instance: TaskInstance, level: int) -> None:
        """Raise the instance's stored log level to ``level``, if that is higher."""

    def lock_session(self, session_id: int, *, bump: bool = True) -> bool:
        """Lock the session row until the transaction ends; ``False`` if it is gone.

        With ``bump``, also move its version on, so that fires that read
        without the lock see that their read is stale.
        """

    def read_for_fire(self, session_id: int, trigger_name: str) -> FireState:
        """The configs listening to the trigger, their open instances and the latest kwargs."""

    def write_fire(
        self,
        created: Sequence[TaskInstance],
        touched: Sequence[TaskInstance],
        fired: FiredTrigger,
        state: FireState,
        finishing: Finishing | None = None,
    ) -> bool:
        """Store what a fire changed; ``False`` (nothing written) if what it read changed."""

    def lock_instance(self, session_id: int, name: str) -> TaskInstance | None:
        """The session's instance ``name`` with its config, its row locked; ``None`` if absent."""

    def transition(
        self, session_id: int, name: str, old: str, new: str, when: datetime
    ) -> TaskInstance | None:
        """Move instance ``name`` from ``old`` to ``new`` in one statement, if this store can.

        ``None`` if it is not ``old`` (or absent), or if the store cannot:
        the caller then locks the instance and checks.
        """

    def start_by_uid(self, session_uid: str, name: str, when: datetime) -> Started | None:
        """Start a scheduled instance and read its session in one statement, if this store can."""

    def next_instance_number(self, config: TaskConfig) -> int:
        """The number the next instance of ``config`` takes (read under the session's lock)."""

    def create_instance(self, instance: TaskInstance) -> None:
        """Insert a new instance (a replay's clone), setting its primary key."""

    def update_instance(
        self,
        instance: TaskInstance,
        names: Sequence[str],
        *,
        expected_status: str | None = None,
    ) -> None:
        """Write the fields ``names`` of an existing instance.

        With ``expected_status``, only if its row is still in that status:
        else :class:`~django_triggers.statuses.StatusConflict`, nothing
        written. Every change of status is written so.
        """

    def upsert(self, change: Upsert) -> None:
        """Write the row of ``change``, replacing the one with the same key."""
