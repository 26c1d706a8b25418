"""The portable store: QuerySets only, for every database Django supports.

Used on SQLite, MariaDB and MySQL, and runnable on PostgreSQL. A fire here
always holds its session's lock (``SELECT ... FOR UPDATE`` of the session
row; on SQLite the write lock an ``IMMEDIATE`` transaction takes), so its
reads are several plain queries, and every write is guarded by the status
it expects: an instance's row changes only if it is still in the status the
change starts from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, ClassVar

from django.db import connections
from django.db.models import F, Max, OuterRef, QuerySet, Subquery

from django_triggers.models import (
    FiredTrigger,
    TaskConfig,
    TaskInstance,
    TaskListener,
    TriggerSession,
)
from django_triggers.statuses import StatusConflict
from django_triggers.stores.base import (
    INSTANCE_UPDATE_FIELDS,
    Finishing,
    FireState,
    Started,
    Upsert,
)


class OrmStore:
    """The database verbs of the rules, written with the ORM."""

    fires_without_lock: ClassVar[bool] = False

    def __init__(self, using: str):
        self.using = using

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.using!r}>"

    def _locked(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """``queryset`` locking the rows it reads (of its own model only, where it can)."""
        features = connections[self.using].features
        if features.has_select_for_update_of:
            return queryset.select_for_update(of=("self",))
        if features.has_select_for_update:
            return queryset.select_for_update()
        return queryset  # SQLite: the transaction holds the database's write lock

    def find_or_create_session(self, uid: str, manager_class: str) -> TriggerSession:
        session, _ = TriggerSession.objects.using(self.using).get_or_create(
            uid=uid, defaults={"manager_class": manager_class}
        )
        return session

    def record_manager_class(self, session_id: int, manager_class: str) -> None:
        TriggerSession.objects.using(self.using).filter(pk=session_id).exclude(
            manager_class=manager_class
        ).update(manager_class=manager_class)

    def write_configuration(
        self,
        new: Sequence[TaskConfig],
        replaced: Sequence[TaskConfig],
        listeners: Callable[[], Iterable[TaskListener]],
        replaced_fields: Sequence[str],
    ) -> None:
        using = self.using
        self._insert(TaskConfig, new)
        if replaced:
            TaskConfig.objects.using(using).bulk_update(replaced, list(replaced_fields))
            TaskListener.objects.using(using).filter(config__in=replaced).delete()
        TaskListener.objects.using(using).bulk_create(listeners())

    def raise_log_level(self, instance: TaskInstance, level: int) -> None:
        TaskInstance.objects.using(self.using).filter(pk=instance.pk, log_level__lt=level).update(
            log_level=level
        )

    def lock_session(self, session_id: int, *, bump: bool = True) -> bool:
        sessions = TriggerSession.objects.using(self.using).filter(pk=session_id)
        if bump:
            return sessions.update(version=F("version") + 1) == 1
        return self._locked(sessions).values_list("pk", flat=True).first() is not None

    def read_for_fire(self, session_id: int, trigger_name: str) -> FireState:
        using = self.using
        session = (
            TriggerSession.objects.using(using)
            .filter(pk=session_id)
            .values_list("manager_class", "version")
            .first()
        )
        if session is None:
            return FireState(manager_class="")
        state = FireState(manager_class=session[0], version=session[1])
        listening = TaskListener.objects.using(using).filter(
            session_id=session_id, trigger_name=trigger_name
        )
        state.configs = list(
            TaskConfig.objects.using(using)
            .filter(pk__in=listening.values("config_id"))
            .order_by("pk")
        )
        if not state.configs:
            return state
        by_id = {config.pk: config for config in state.configs}
        for instance in (
            TaskInstance.objects.using(using)
            .filter(config_id__in=by_id, status=TaskInstance.UNSTARTED)
            .order_by("config_id", "number")
        ):
            instance.config = by_id[instance.config_id]
            state.open_instances[instance.config_id].append(instance)
        creatable = [
            config.pk
            for config in state.configs
            if not state.open_instances[config.pk] or config.and_every == trigger_name
        ]
        numbers = self._next_numbers(creatable)
        for config in state.configs:
            state.next_numbers[config.pk] = numbers.get(config.pk)
        if creatable:
            state.latest_kwargs = self._latest_kwargs(session_id, creatable, trigger_name)
        return state

    def next_instance_number(self, config: TaskConfig) -> int:
        return self._next_numbers([config.pk])[config.pk]

    def _next_numbers(self, config_ids: list[int]) -> dict[int, int]:
        """The number the next instance of each config takes: one above its highest."""
        highest = dict(
            TaskInstance.objects.using(self.using)
            .filter(config_id__in=config_ids)
            .values("config_id")
            .annotate(highest=Max("number"))
            .values_list("config_id", "highest")
        )
        return {pk: 0 if highest.get(pk) is None else highest[pk] + 1 for pk in config_ids}

    def _latest_kwargs(
        self, session_id: int, config_ids: list[int], trigger_name: str
    ) -> dict[str, Any]:
        """The kwargs of the latest fire of each other trigger those configs name.

        One probe of the (session, trigger, id) index per trigger, however
        long the session's history.
        """
        latest = (
            FiredTrigger.objects.using(self.using)
            .filter(session_id=session_id, trigger_name=OuterRef("trigger_name"))
            .order_by("-pk")
            .values("kwargs")[:1]
        )
        names = (
            TaskListener.objects.using(self.using)
            .filter(config_id__in=config_ids)
            .exclude(trigger_name=trigger_name)
            .values("trigger_name")
            .distinct()
            .annotate(kwargs=Subquery(latest))
        )
        return {row["trigger_name"]: row["kwargs"] for row in names if row["kwargs"] is not None}

    def write_fire(
        self,
        created: Sequence[TaskInstance],
        touched: Sequence[TaskInstance],
        fired: FiredTrigger,
        state: FireState,
        finishing: Finishing | None = None,
    ) -> bool:
        if finishing is not None:
            raise ValueError("this store finishes an instance apart from its cascade's fire")
        if state.configs:
            # As the PostgreSQL store's write does: a fire made there without
            # the session's lock (by a process on the other store) then sees
            # that what it read has changed.
            TaskConfig.objects.using(self.using).filter(
                pk__in=[config.pk for config in state.configs]
            ).update(version=F("version") + 1)
        if created:
            self._insert(TaskInstance, created)
        for instance in touched:
            # Touched instances are the fire's open ones: unstarted when it read them.
            self.update_instance(
                instance, INSTANCE_UPDATE_FIELDS, expected_status=TaskInstance.UNSTARTED
            )
        fired.save(using=self.using, force_insert=True)
        return True

    def create_instance(self, instance: TaskInstance) -> None:
        self._insert(TaskInstance, [instance])

    def _insert(self, model: type[TaskConfig | TaskInstance], rows: Sequence[Any]) -> None:
        """Insert rows named uniquely in their session, setting their primary keys.

        MySQL returns no keys from a multi-row insert: they are read back by name.
        """
        if not rows:
            return
        using = self.using
        model._default_manager.using(using).bulk_create(rows)
        if not connections[using].features.can_return_rows_from_bulk_insert:
            keys = dict(
                model._default_manager.using(using)
                .filter(session_id=rows[0].session_id, name__in=[row.name for row in rows])
                .values_list("name", "pk")
            )
            for row in rows:
                row.pk = keys[row.name]

    def update_instance(
        self,
        instance: TaskInstance,
        names: Sequence[str],
        *,
        expected_status: str | None = None,
    ) -> None:
        instances = TaskInstance.objects.using(self.using).filter(pk=instance.pk)
        if expected_status is not None:
            instances = instances.filter(status=expected_status)
        changed = instances.update(**{name: getattr(instance, name) for name in names})
        if changed != 1 and expected_status is not None:
            raise StatusConflict(
                f"task instance {instance.name!r} is no longer {expected_status}: "
                f"another change got there first"
            )

    def lock_instance(self, session_id: int, name: str) -> TaskInstance | None:
        # The row is found first, then locked by its primary key: a locking
        # read that scanned the session's rows (to sort them, say) would lock
        # each row it passed, in its own order, and two such reads deadlock.
        # Its config is read apart: where a lock cannot name its table
        # (MariaDB, MySQL), a join would lock the config's row too.
        instances = TaskInstance.objects.using(self.using)
        pk = instances.filter(session_id=session_id, name=name).values_list("pk", flat=True).first()
        if pk is None:
            return None
        instance = self._locked(instances.filter(pk=pk).order_by()).first()
        if instance is not None:
            instance.config = TaskConfig.objects.using(self.using).get(pk=instance.config_id)
        return instance

    def transition(
        self, session_id: int, name: str, old: str, new: str, when: datetime
    ) -> TaskInstance | None:
        return None  # the caller locks the instance, checks and writes

    def start_by_uid(self, session_uid: str, name: str, when: datetime) -> Started | None:
        return None  # the caller reads the session, locks the instance and starts it

    def upsert(self, change: Upsert) -> None:
        model = type(change.row)
        features = connections[self.using].features
        model._default_manager.using(self.using).bulk_create(
            [change.row],
            update_conflicts=True,
            # MySQL and MariaDB take the conflict from any unique key.
            unique_fields=[change.key] if features.supports_update_conflicts_with_target else None,
            update_fields=list(change.updated_names()),
        )
