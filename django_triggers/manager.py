"""The rules: configuration, firing, scheduling, recovery.

Every change of state goes through :class:`TriggerManager`. Each one runs in
a database transaction that first locks the session row, so changes to one
session serialize across threads, processes and servers, and instances are
handed to their runners only once that transaction has committed. A fire on
PostgreSQL first tries without the lock: it reads, then writes in one
statement only if none of the session's tasks it read changed meanwhile, so
fires that share no task never wait for each other; if one did change, the
fire runs again under the lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Subquery
from django.utils import timezone
from django.utils.module_loading import import_string

from django_triggers import encoding, instrumentation, rules, signals
from django_triggers.aio import AsyncManagerMixin
from django_triggers.conf import get_setting
from django_triggers.configuration import (
    MAX_NAME_LENGTH,
    check_cooldown,
    parse_configuration,
    timeout_trigger,
)
from django_triggers.exceptions import (
    InstanceNotFound,
    ManagerClassError,
    SessionNotFound,
    StuckInstance,
)
from django_triggers.models import (
    FiredTrigger,
    TaskConfig,
    TaskInstance,
    TaskListener,
    TriggerSession,
)
from django_triggers.registry import get_runner_class
from django_triggers.routers import session_database
from django_triggers.statuses import (
    ABANDONED,
    FAILED,
    FINISHED,
    REPLAYED,
    RUNNING,
    SCHEDULED,
    SKIPPED,
    UNSTARTED,
)
from django_triggers.stores import (
    INSTANCE_UPDATE_FIELDS,
    Finishing,
    FireState,
    Store,
    Upsert,
    store_for,
)

logger = logging.getLogger(__name__)

InstanceRef = str | TaskInstance


class TriggerManager(AsyncManagerMixin):
    """Controller of one trigger session, found (or created) by its uid.

    Constructing it reads and writes nothing: the session's row is read, or
    created, when the manager is first used.

    Subclass it to react to events through the ``_post_*`` hooks, to read
    custom directives from ``TaskConfig.extras``, or to set
    ``default_task_runner_name``. A worker handling a task of the session
    rebuilds the same class from its dotted path, so a subclass used with the
    Celery runner must be importable.
    """

    #: Runner for tasks without ``using``; ``None`` means ``TRIGGERS_DEFAULT_RUNNER``.
    default_task_runner_name: str | None = None

    #: ``(instance pk, state)``: what the cascade of the instance a worker
    #: just started will read, read by the start's own statement.
    _cascade_read: tuple[int, FireState] | None = None

    def __init__(self, session_uid: str):
        encoding.check_name(session_uid, what="a session uid", max_length=MAX_NAME_LENGTH)
        self.session_uid = session_uid
        self._session: TriggerSession | None = None

    @property
    def session(self) -> TriggerSession:
        """The session's row, read (or created) when first needed, not by the constructor."""
        if self._session is None:
            using = session_database(self.session_uid)
            self._session = store_for(using).find_or_create_session(
                self.session_uid, self.class_path()
            )
        return self._session

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.session_uid!r}>"

    @property
    def database(self) -> str:
        """The alias of the database the session lives in."""
        return self.session._state.db or "default"

    @property
    def _store(self) -> Store:
        """What reads and writes the session's rows."""
        return store_for(self.database)

    @staticmethod
    def for_existing_session(session_uid: str) -> TriggerManager:
        """A manager of an existing session, of the class recorded on it.

        For tools acting on sessions by uid (the admin, management commands,
        recovery, workers): a mistyped uid raises ``SessionNotFound`` instead
        of creating an empty session, and the application's own manager class
        runs its hooks and stays recorded as the session's.
        """
        session = TriggerManager._existing_session(session_uid)
        manager_class = TriggerManager._class_from_path(session_uid, session.manager_class)
        return manager_class.of_session(session)

    @classmethod
    def of_session(cls, session: TriggerSession) -> TriggerManager:
        """A manager of this class for a session row already read.

        It neither reads the row again nor creates it: if the session is
        deleted meanwhile, its changes fail with ``SessionNotFound``.
        """
        manager = cls(session.uid)
        manager._session = session
        return manager

    @classmethod
    def class_path(cls) -> str:
        """The dotted path recorded on sessions this class manages."""
        return f"{cls.__module__}.{cls.__qualname__}"

    @staticmethod
    def class_for_session(session_uid: str) -> type[TriggerManager]:
        """The manager class recorded on a session, for workers in other processes."""
        session = TriggerManager._existing_session(session_uid)
        return TriggerManager._class_from_path(session_uid, session.manager_class)

    @staticmethod
    def _existing_session(session_uid: str) -> TriggerSession:
        encoding.check_name(session_uid, what="a session uid", max_length=MAX_NAME_LENGTH)
        using = session_database(session_uid)
        session = TriggerSession.objects.using(using).filter(uid=session_uid).first()
        if session is None:
            raise SessionNotFound(f"no trigger session has the uid {session_uid!r}")
        return session

    @staticmethod
    def start_for_worker(
        session_uid: str, instance_name: str
    ) -> tuple[TriggerManager, TaskInstance | None]:
        """The session's manager (of its recorded class) and the instance, now ``running``.

        ``None`` for the instance if it was not ``scheduled`` (a duplicate or
        late delivery). On PostgreSQL one statement both starts the instance
        and reads the session. Raises ``SessionNotFound``, or
        ``ManagerClassError`` once the instance has been failed with it.
        """
        using = session_database(session_uid)
        started = store_for(using).start_by_uid(session_uid, instance_name, timezone.now())
        instance: TaskInstance | None = None
        if started is None:
            session = TriggerManager._existing_session(session_uid)
        else:
            session, instance = started.session, started.instance
        try:
            manager_class = TriggerManager._class_from_path(session_uid, session.manager_class)
        except ManagerClassError as exc:
            fallback = TriggerManager.of_session(session)
            if instance is not None:
                fallback._on_status_changes([(instance, SCHEDULED, RUNNING)])
            if instance is not None or fallback._start_instance_locked(instance_name) is not None:
                fallback.fail_instance(instance_name, exc)
            raise
        manager = manager_class.of_session(session)
        if instance is None:
            # The one-statement start already found it not scheduled (or the
            # database has none): see why, under the row lock.
            return manager, manager._start_instance_locked(instance_name)
        manager._on_status_changes([(instance, SCHEDULED, RUNNING)])
        if started is not None:
            manager._cascade_read = (instance.pk, started.cascade_state)
        return manager, instance

    @staticmethod
    def _class_from_path(session_uid: str, path: str) -> type[TriggerManager]:
        if not path:
            return TriggerManager
        try:
            manager_class = import_string(path)
        except ImportError as exc:
            raise ManagerClassError(
                f"session {session_uid!r} is managed by {path!r}, which cannot be imported "
                f"here ({exc}); define manager classes at module level in an importable module"
            ) from exc
        if not (isinstance(manager_class, type) and issubclass(manager_class, TriggerManager)):
            raise ManagerClassError(
                f"session {session_uid!r} names {path!r} as its manager class, "
                f"which is not a TriggerManager subclass"
            )
        return manager_class

    # -- hooks -----------------------------------------------------------------

    def _post_fire(self, trigger_name: str, tasks_scheduled: list[TaskInstance]) -> None:
        """Called after a fire has committed, before its instances reach their runners."""

    def _post_replay(self, new_instance: TaskInstance) -> None:
        """Called after a replay (or a retry) has committed."""

    def _post_skip(self, instance: TaskInstance, cascade: bool) -> None:
        """Called after a skip, and its cascade if any, has committed."""

    # -- configuration ---------------------------------------------------------

    def update_configuration(self, configuration: Mapping[str, Mapping[str, Any]]) -> None:
        """Add or replace the given tasks; tasks not named are kept.

        Raises :class:`~django_triggers.exceptions.ConfigurationError`, storing
        nothing, if any task is invalid.
        """
        with self._locked():
            configs = {config.name: config for config in self.session.configs.all()}
            specs = parse_configuration(
                configuration, {name: config.after for name, config in configs.items()}
            )
            new: list[TaskConfig] = []
            replaced: list[TaskConfig] = []
            now = timezone.now()
            for spec in specs:
                config = configs.get(spec.name) or TaskConfig(session=self.session, name=spec.name)
                for attribute in _CONFIG_ATTRIBUTES:
                    setattr(config, attribute, getattr(spec, attribute))
                config.updated = now  # bulk_update leaves auto_now fields alone
                (replaced if config.pk else new).append(config)
            by_name = {config.name: config for config in (*new, *replaced)}

            def listeners() -> Iterator[TaskListener]:
                for spec in specs:
                    for role, names in (
                        (TaskListener.AFTER, spec.after),
                        (TaskListener.UNLESS, spec.unless),
                    ):
                        for name in names:
                            yield TaskListener(
                                session=self.session,
                                config=by_name[spec.name],
                                trigger_name=name,
                                role=role,
                            )

            self._store.write_configuration(
                new, replaced, listeners, [*_CONFIG_ATTRIBUTES, "updated"]
            )

    def get_configuration(self) -> dict[str, dict[str, Any]]:
        """The session's configuration, as the directives were written."""
        return {
            config.name: config.as_directives()
            for config in TaskConfig.objects.using(self.database).filter(session=self.session)
        }

    # -- firing ----------------------------------------------------------------

    def fire(
        self,
        trigger_name: str,
        trigger_kwargs: Mapping[str, Any] | None = None,
        *,
        source: str = FiredTrigger.APPLICATION,
        event_id: str | None = None,
    ) -> list[TaskInstance]:
        """Fire a trigger in the session; return the instances it scheduled.

        The scheduled instances reach their runners once the transaction
        commits (the caller's, when called inside one). With ``event_id``, a
        fire repeating an earlier one with the same id (a web retry, an
        upstream event delivered twice) changes nothing and returns the
        instances the first one scheduled.
        """
        kwargs = self._encode_kwargs(trigger_name, trigger_kwargs)
        if source not in dict(FiredTrigger.SOURCE_CHOICES):
            raise ValueError(f"unknown fire source {source!r}")
        if event_id is not None:
            encoding.check_name(event_id, what="an event id", max_length=MAX_NAME_LENGTH)
        with instrumentation.firing(self.session_uid, trigger_name, source):
            if self._may_fire_without_lock():
                # Read without the lock, write only if nothing read has changed
                # since: two statements instead of five, unless another fire
                # into a task of this one commits in between.
                scheduled = self._apply_fire(
                    trigger_name, kwargs, source, event_id, optimistic=True
                )
                if scheduled is not None:
                    return scheduled
                self._note_contention()
            with self._locked(bump=False):  # the fire's write moves the version on
                return self._fire_locked(trigger_name, kwargs, source, event_id)

    def _may_fire_without_lock(self) -> bool:
        """Whether the next fire may try without the session's lock (see ``stores``)."""
        if not self._store.fires_without_lock:
            return False
        noted = _contended.get((self.database, self.session.pk))
        return noted is None or time.monotonic() - noted >= CONTENTION_MEMORY

    def _note_contention(self) -> None:
        """Remember that a fire without the lock lost a race in this session."""
        if len(_contended) >= 1000:
            _contended.clear()
        _contended[(self.database, self.session.pk)] = time.monotonic()

    def _fire_locked(
        self,
        trigger_name: str,
        kwargs: dict[str, Any],
        source: str,
        event_id: str | None = None,
    ) -> list[TaskInstance]:
        """Apply a fire while holding the session's lock."""
        with instrumentation.firing(self.session_uid, trigger_name, source):
            scheduled = self._apply_fire(trigger_name, kwargs, source, event_id)
        if scheduled is None:  # pragma: no cover - the lock keeps the version still
            raise RuntimeError(f"session {self.session_uid!r} changed under its lock")
        return scheduled

    def _repeated_fire(
        self, earlier: FiredTrigger, trigger_name: str, kwargs: dict[str, Any]
    ) -> list[TaskInstance]:
        if earlier.trigger_name != trigger_name or earlier.kwargs != kwargs:
            raise ValueError(
                f"event id {earlier.event_id!r} was already used in session "
                f"{self.session_uid!r} for a fire of {earlier.trigger_name!r} with other "
                f"kwargs; an event id may only repeat the same fire"
            )
        instances = {
            instance.name: instance
            for instance in TaskInstance.objects.using(self.database)
            .filter(session=self.session, name__in=earlier.scheduled_instances)
            .select_related("config")
        }
        return [instances[name] for name in earlier.scheduled_instances if name in instances]

    def _encode_kwargs(self, trigger_name: Any, trigger_kwargs: Any) -> dict[str, Any]:
        encoding.check_name(trigger_name, what="a trigger name", max_length=MAX_NAME_LENGTH)
        return encoding.normalize_mapping(
            trigger_kwargs, what=f"the kwargs of trigger {trigger_name!r}"
        )

    def _apply_fire(
        self,
        trigger_name: str,
        kwargs: dict[str, Any],
        source: str,
        event_id: str | None = None,
        *,
        optimistic: bool = False,
        finishing: TaskInstance | None = None,
        celery_result: Upsert | None = None,
        state: FireState | None = None,
    ) -> list[TaskInstance] | None:
        """Apply a fire; return the instances it scheduled.

        Called under the session's lock, or, ``optimistic`` (or
        ``finishing``), without it: then ``None`` means that something the
        fire read changed before its write, and nothing was written. With
        ``finishing``, the fire is that running instance's cascade, and the
        same write finishes it (``None`` too if it is no longer running), and
        writes ``celery_result``, the row of its Celery task's result.
        ``state`` is what the fire reads, when that was read already.
        """
        optimistic = optimistic or finishing is not None
        if state is None:
            state = self._store.read_for_fire(self.session.pk, trigger_name)
        if optimistic and state.manager_class != self.class_path():
            return None  # recording the manager class takes the lock
        self._record_manager_class(state.manager_class)
        if event_id is not None:
            earlier = (
                FiredTrigger.objects.using(self.database)
                .filter(session=self.session, event_id=event_id)
                .first()
            )
            if earlier is not None:
                return self._repeated_fire(earlier, trigger_name, kwargs)

        now = timezone.now()
        plan = rules.plan_fire(self.session, state, trigger_name, kwargs, now)
        created, touched, scheduled = plan.created, plan.touched, plan.scheduled
        status_changes = plan.status_changes
        if finishing is not None:
            status_changes.insert(0, (finishing, RUNNING, FINISHED))

        fired = FiredTrigger(
            session=self.session,
            trigger_name=trigger_name,
            kwargs=kwargs,
            source=source,
            event_id=event_id or "",
            scheduled_instances=[instance.name for instance in scheduled],
            fired_at=now,
            trace_context=instrumentation.trace_context(),
        )
        finished = None
        if finishing is not None:
            finished = Finishing(finishing.pk, kwargs, now, celery_result)
        if not self._store.write_fire(created, touched, fired, state, finished):
            return None
        # Outside a transaction (a fire without the lock, in autocommit mode)
        # the write has committed, and on_commit runs this at once.
        transaction.on_commit(
            partial(self._after_fire_commit, fired, scheduled, status_changes), using=self.database
        )
        return scheduled

    def _after_fire_commit(
        self,
        fired: FiredTrigger,
        scheduled: list[TaskInstance],
        status_changes: list[rules.StatusChange],
    ) -> None:
        self._signal_status_changes(status_changes)
        self._call_hook(self._post_fire, fired.trigger_name, scheduled)
        self._send(
            signals.trigger_fired,
            trigger_name=fired.trigger_name,
            trigger_kwargs=fired.kwargs,
            source=fired.source,
            event_id=fired.event_id or None,
            scheduled=list(fired.scheduled_instances),
        )
        self._dispatch(scheduled)

    @property
    def latest_kwargs(self) -> dict[str, Any]:
        """``{trigger: kwargs}`` of the most recent fire of every trigger in the session."""
        fires = FiredTrigger.objects.using(self.database)
        latest_ids = (
            fires.filter(session=self.session)
            .values("trigger_name")
            .annotate(latest=Max("id"))
            .values("latest")
        )
        return dict(fires.filter(id__in=Subquery(latest_ids)).values_list("trigger_name", "kwargs"))

    # -- dispatch ---------------------------------------------------------------

    @property
    def default_runner_name(self) -> str:
        """The runner of tasks without ``using``."""
        name: str = self.default_task_runner_name or get_setting("TRIGGERS_DEFAULT_RUNNER")
        return name

    def runner_name_for(self, config: TaskConfig) -> str:
        """The runner of a task: its ``using``, else this manager's default."""
        return config.using or self.default_runner_name

    def _dispatch(self, instances: list[TaskInstance]) -> None:
        """Hand committed, scheduled instances to their runners.

        They were written with ``dispatched_at`` set, in the transaction that
        scheduled them, so that a fire needs no write after its commit. An
        instance whose runner raises (the broker is down, say) loses it again
        and stays ``scheduled``; ``triggers_recover`` hands it over later.
        """
        for instance in instances:
            try:
                runner = get_runner_class(self.runner_name_for(instance.config))()
                runner.run(self, instance)
            except Exception as exc:
                logger.exception(
                    "Could not hand task instance %s of session %s to its runner; it stays "
                    "scheduled until triggers_recover hands it over again",
                    instance.name,
                    self.session_uid,
                )
                self._note_dispatch_error(instance, exc)
                instrumentation.dispatch_failed(self.runner_name_for(instance.config))

    def _note_dispatch_error(self, instance: TaskInstance, exc: Exception) -> None:
        """Record why the runner refused the instance, and that it was not dispatched."""
        error = {
            "error": f"{type(exc).__name__}: {encoding.safe_str(exc)}",
            "at": timezone.now().isoformat(),
        }
        try:
            with self._locked(bump=False):
                target = self._lock_instance(instance)
                target.metadata["dispatch_error"] = error
                rules.stamp(target, timezone.now())
                fields = ["metadata", "modified"]
                if target.status == SCHEDULED:
                    target.dispatched_at = None
                    fields.append("dispatched_at")
                self._store.update_instance(target, fields)
            instance.dispatched_at = target.dispatched_at
        except Exception:
            logger.exception("Could not record the dispatch error of %s", instance.name)

    def _send(self, signal: Any, **kwargs: Any) -> None:
        # send_robust logs a receiver's exception (logger "django.dispatch").
        signal.send_robust(sender=type(self), session_uid=self.session_uid, **kwargs)

    def _on_status_changes(self, changes: list[rules.StatusChange]) -> None:
        """Signal the changes once the transaction commits, in order."""
        transaction.on_commit(partial(self._signal_status_changes, changes), using=self.database)

    def _signal_status_changes(self, changes: list[rules.StatusChange]) -> None:
        for change in changes:
            self._signal_status_change(*change)

    def _signal_status_change(self, instance: TaskInstance, old: str | None, new: str) -> None:
        self._send(
            signals.instance_status_changed,
            instance_name=instance.name,
            task_name=instance.task_name,
            old_status=old,
            new_status=new,
        )

    def _set_status(
        self,
        instance: TaskInstance,
        status: str,
        now: datetime,
    ) -> None:
        """Change the status (unsaved), if the status machine allows it; signal it on commit."""
        changes: list[rules.StatusChange] = []
        rules.change_status(instance, status, now, changes)
        self._on_status_changes(changes)

    def _move(
        self, instance: TaskInstance, status: str, now: datetime, *, also: Sequence[str] = ()
    ) -> None:
        """Change the status of an instance read under its lock, and write it.

        The one way a status is written outside a fire: the write is guarded
        by the status the change starts from, and the fields ``also`` are
        written with it.
        """
        old = instance.status
        self._set_status(instance, status, now)
        self._store.update_instance(instance, [*_STATUS_FIELDS, *also], expected_status=old)

    def _call_hook(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            logger.exception("%s hook of %r raised; carrying on", hook.__name__, self)

    # -- recovery -----------------------------------------------------------------

    def replay_failed_instance(
        self,
        instance: InstanceRef,
        replacement_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> TaskInstance:
        """Mark a failed instance ``replayed`` and schedule a clone of it.

        Each key of ``replacement_kwargs`` replaces the kwargs of that trigger,
        whether or not the task waits for it: the clone's ``trigger_kwargs``
        hold them all.
        """
        with self._locked(record_manager=True):
            failed = self._lock_instance(instance)
            _require_status(failed, FAILED, "replay")
            return self._replay(failed, replacement_kwargs, timezone.now(), cooldown=None)

    def _replay(
        self,
        failed: TaskInstance,
        replacement_kwargs: Mapping[str, Mapping[str, Any]] | None,
        now: datetime,
        *,
        cooldown: float | None,
    ) -> TaskInstance:
        kwargs = dict(failed.kwargs)
        kwargs.update(self._check_replacement_kwargs(failed, replacement_kwargs))
        self._move(failed, REPLAYED, now)
        config = failed.config
        changes: list[rules.StatusChange] = []
        clone = rules.new_instance(
            self.session,
            config,
            number=self._store.next_instance_number(config),
            status=SCHEDULED,
            kwargs=kwargs,
            unless_fired=list(failed.unless_fired),
            now=now,
            changes=changes,
            parent=failed,
            eta=now + timedelta(seconds=cooldown) if cooldown else None,
        )
        self._on_status_changes(changes)
        self._store.create_instance(clone)
        transaction.on_commit(partial(self._after_replay_commit, clone), using=self.database)
        return clone

    def _after_replay_commit(self, clone: TaskInstance) -> None:
        self._call_hook(self._post_replay, clone)
        self._dispatch([clone])

    def _check_replacement_kwargs(
        self, instance: TaskInstance, replacement_kwargs: Any
    ) -> dict[str, Any]:
        if replacement_kwargs is None:
            return {}
        if not isinstance(replacement_kwargs, Mapping):
            raise TypeError(
                f"replacement kwargs for {instance.name!r} must map trigger names to kwargs, "
                f"not {type(replacement_kwargs).__name__}"
            )
        for trigger, kwargs in replacement_kwargs.items():
            encoding.check_name(
                trigger,
                what=f"a trigger named in the replacement kwargs for {instance.name!r}",
                max_length=MAX_NAME_LENGTH,
            )
            if not isinstance(kwargs, Mapping):
                raise TypeError(
                    f"replacement kwargs for trigger {trigger!r} of {instance.name!r} "
                    f"must be a mapping, not {type(kwargs).__name__}"
                )
        result: dict[str, Any] = encoding.normalize(
            replacement_kwargs, what=f"the replacement kwargs for {instance.name!r}"
        )
        return result

    def skip_failed_instance(
        self,
        instance: InstanceRef,
        cascade: bool = False,
        result: Mapping[str, Any] | None = None,
    ) -> TaskInstance:
        """Mark a failed instance ``skipped``; with ``cascade``, fire its name with ``result``."""
        with self._locked():
            failed = self._lock_instance(instance)
            _require_status(failed, FAILED, "skip")
            cascade_kwargs = self._encode_kwargs(failed.task_name, result)
            if result is not None:
                failed.result = cascade_kwargs
            self._move(failed, SKIPPED, timezone.now(), also=("result",))
            if cascade:
                self._fire_locked(failed.task_name, cascade_kwargs, FiredTrigger.SKIP)
            transaction.on_commit(
                partial(self._call_hook, self._post_skip, failed, cascade), using=self.database
            )
            return failed

    # -- status and metadata ---------------------------------------------------

    def update_instance_status(
        self,
        instance: InstanceRef,
        status: str,
        metadata: Mapping[str, Any] | None = None,
        cascade: bool = False,
        cascade_kwargs: Mapping[str, Any] | None = None,
    ) -> TaskInstance:
        """Move an instance to ``status``, merge ``metadata``; with ``cascade``, fire its task name.

        Only along the status machine's transitions
        (:data:`~django_triggers.statuses.TRANSITIONS`): anything else raises
        :class:`~django_triggers.statuses.InvalidTransition` and changes nothing.
        """
        if status not in TaskInstance.STATUSES:
            known = ", ".join(sorted(TaskInstance.STATUSES))
            raise ValueError(f"unknown status {status!r}; expected one of {known}")
        extra = self._encode_metadata(metadata)
        with self._locked():
            target = self._lock_instance(instance)
            kwargs = self._encode_kwargs(target.task_name, cascade_kwargs) if cascade else {}
            target.metadata.update(extra)
            self._move(target, status, timezone.now())
            if cascade:
                self._fire_locked(target.task_name, kwargs, FiredTrigger.CASCADE)
            return target

    def update_instance_metadata(
        self, instance: InstanceRef, metadata: Mapping[str, Any]
    ) -> TaskInstance:
        """Merge ``metadata`` into the instance's, at the top level."""
        extra = self._encode_metadata(metadata)
        with self._locked():
            target = self._lock_instance(instance)
            target.metadata.update(extra)
            rules.stamp(target, timezone.now())
            self._store.update_instance(target, ["metadata", "modified"])
            return target

    def mark_instance_logs_resolved(self, instance: InstanceRef) -> TaskInstance:
        """Note that the errors an instance logged have been dealt with."""
        with self._locked():
            target = self._lock_instance(instance)
            target.logs_marked_resolved = True
            rules.stamp(target, timezone.now())
            self._store.update_instance(target, ["logs_marked_resolved", "metadata", "modified"])
            return target

    def _encode_metadata(self, metadata: Any) -> dict[str, Any]:
        return encoding.normalize_mapping(metadata, what="the metadata")

    # -- inspection ----------------------------------------------------------------

    def get_instance(self, instance: InstanceRef) -> TaskInstance:
        """The instance of that name (or a fresh copy of the given instance)."""
        name = self._instance_name(instance)
        try:
            return (
                TaskInstance.objects.using(self.database)
                .select_related("config")
                .get(session=self.session, name=name)
            )
        except TaskInstance.DoesNotExist:
            raise InstanceNotFound(
                f"no task instance named {name!r} in session {self.session_uid!r}"
            ) from None

    def instances_of_task(self, task_name: str) -> list[TaskInstance]:
        """Every instance of a task, by number."""
        return list(
            TaskInstance.objects.using(self.database)
            .filter(session=self.session, task_name=task_name)
            .order_by("number")
        )

    def get_unresolved_tasks(self) -> list[TaskConfig]:
        """Configured tasks with no instance yet, or with an unresolved one."""
        unresolved = TaskInstance.objects.filter(config=OuterRef("pk")).exclude(
            status__in=TaskInstance.RESOLVED_STATUSES
        )
        return list(
            TaskConfig.objects.using(self.database)
            .filter(session=self.session)
            .filter(~TaskConfig.has_instance() | Exists(unresolved))
        )

    def get_unresolved_instances(self) -> list[TaskInstance]:
        """Instances that are not finished, skipped, replayed or abandoned."""
        return list(
            TaskInstance.objects.using(self.database)
            .filter(session=self.session)
            .exclude(status__in=TaskInstance.RESOLVED_STATUSES)
        )

    def get_instances_with_unresolved_logs(self) -> list[TaskInstance]:
        """Instances whose ``logs_resolved`` is false."""
        return list(
            TaskInstance.objects.using(self.database)
            .filter(session=self.session)
            .filter(TaskInstance.unresolved_logs_q())
        )

    def waiting_for(self, instance: InstanceRef) -> dict[str, list[str]]:
        """Which of the instance's ``after`` and ``unless`` triggers it has seen fire."""
        return self.get_instance(instance).waiting_for()

    def refire_from(
        self, source_session_uid: str, *, batch_size: int = 500
    ) -> Iterator[tuple[FiredTrigger, list[TaskInstance]]]:
        """Fire into this session, in order, the application fires recorded in another.

        Yields each recorded fire with the instances its replay scheduled, as it
        goes; the source's history is read ``batch_size`` rows at a time. Run it
        inside a transaction that is rolled back for a dry run: nothing is kept,
        and nothing reaches a runner.
        """
        encoding.check_name(source_session_uid, what="a session uid", max_length=MAX_NAME_LENGTH)
        if source_session_uid == self.session_uid:
            raise ValueError("a session cannot be replayed into itself")
        source_database = session_database(source_session_uid)
        source = (
            TriggerSession.objects.using(source_database).filter(uid=source_session_uid).first()
        )
        if source is None:
            raise SessionNotFound(f"no trigger session has the uid {source_session_uid!r}")
        recorded = (
            FiredTrigger.objects.using(source_database)
            .filter(session=source, source=FiredTrigger.APPLICATION)
            .order_by("id")
        )
        last_id = 0
        while batch := list(recorded.filter(id__gt=last_id)[:batch_size]):
            for fired in batch:
                last_id = fired.id
                yield fired, self.fire(fired.trigger_name, fired.kwargs, source=FiredTrigger.REPLAY)

    def debug_repr(self) -> dict[str, Any]:
        """A JSON-able snapshot of the session: configuration, instances, fires."""
        return {
            "session": self.session_uid,
            "configuration": self.get_configuration(),
            "instances": {
                instance.name: {
                    "status": instance.status,
                    "kwargs": instance.kwargs,
                    "unless_fired": instance.unless_fired,
                    "result": instance.result,
                    "metadata": instance.metadata,
                    "log_level": instance.log_level_name,
                    "logs_resolved": instance.logs_resolved,
                    "parent": instance.parent.name if instance.parent else None,
                    "retries": instance.retries,
                }
                for instance in TaskInstance.objects.using(self.database)
                .filter(session=self.session)
                .select_related("parent")
                .order_by("task_name", "number")
            },
            "fired_triggers": [
                fired.as_dict()
                for fired in FiredTrigger.objects.using(self.database)
                .filter(session=self.session)
                .order_by("id")
            ],
        }

    # -- worker protocol -------------------------------------------------------------
    # What TriggerTask, the runners and the recovery sweep ask of a session: start
    # an instance, record how it ended, move it on when it is stuck or late. Each
    # checks the instance's status under its lock, so a late or repeated call
    # changes nothing. Application code fires, replays and skips instead.

    def start_instance(self, instance_name: str) -> TaskInstance | None:
        """Move ``scheduled -> running``; ``None`` if the instance is not scheduled.

        The instance's row lock is enough: fires only change unstarted instances.
        """
        started = self._transition(instance_name, SCHEDULED, RUNNING)
        if started is not None:
            return started
        return self._start_instance_locked(instance_name)

    def _start_instance_locked(self, instance_name: str) -> TaskInstance | None:
        """``start_instance`` under the instance's row lock, logging why it does not start."""
        with transaction.atomic(using=self.database):
            instance = self._lock_instance(instance_name)
            if instance.status != SCHEDULED:
                logger.warning(
                    "Task instance %s of session %s is %s, not scheduled: not starting it "
                    "(a duplicate or late delivery)",
                    instance_name,
                    self.session_uid,
                    instance.status,
                )
                return None
            self._move(instance, RUNNING, timezone.now())
            return instance

    def _lock_running(self, instance: InstanceRef, outcome: str) -> TaskInstance | None:
        """The instance, locked, if still ``running``; else ``None`` (the outcome is dropped).

        An instance stops being ``running`` under its worker when recovery
        failed it as stuck (and it may have been replayed since): the late
        worker's outcome must not overwrite that, nor cascade.
        """
        target = self._lock_instance(instance)
        if target.status != RUNNING:
            logger.warning(
                "Task instance %s of session %s ended (%s) while %s, not running: "
                "its outcome is not recorded",
                target.name,
                self.session_uid,
                outcome,
                target.status,
            )
            return None
        return target

    def finish_instance(
        self,
        instance: TaskInstance,
        result: dict[str, Any],
        celery_result: Upsert | None = None,
    ) -> bool:
        """Finish a running instance and fire its cascade; ``False`` if it was no longer running.

        ``celery_result``, the row of its Celery task's result, is written in
        the same transaction, so exactly when the instance is finished.
        """
        cascade = FiredTrigger.CASCADE
        with instrumentation.firing(self.session_uid, instance.task_name, cascade):
            return self._finish_instance(instance, result, celery_result)

    def _finish_instance(
        self, instance: TaskInstance, result: dict[str, Any], celery_result: Upsert | None
    ) -> bool:
        prefetched, self._cascade_read = self._cascade_read, None
        if self._may_fire_without_lock():
            # The cascade's write finishes the instance too: one statement,
            # after the read the start made, or a read of its own if the
            # session changed since.
            cascade = FiredTrigger.CASCADE
            states: list[FireState | None] = [None]
            if prefetched is not None and prefetched[0] == instance.pk:
                states.insert(0, prefetched[1])
            for state in states:
                written = self._apply_fire(
                    instance.task_name,
                    result,
                    cascade,
                    finishing=instance,
                    celery_result=celery_result,
                    state=state,
                )
                if written is not None:
                    return True
            self._note_contention()
        with self._locked(bump=False):
            running = self._lock_running(instance, "finished")
            if running is None:
                return False
            running.result = result
            self._move(running, FINISHED, timezone.now(), also=("result",))
            if celery_result is not None:
                self._store.upsert(celery_result)
            self._fire_locked(running.task_name, result, FiredTrigger.CASCADE)
            return True

    def fail_instance(
        self,
        instance: InstanceRef,
        exc: BaseException,
        metadata: Mapping[str, Any] | None = None,
    ) -> TaskInstance | None:
        extra = self._encode_metadata(metadata)
        with self._locked(bump=False):
            target = self._lock_running(instance, "failed")
            if target is None:
                return None
            target.metadata.update(encoding.describe_exception(exc))
            target.metadata.update(extra)
            self._move(target, FAILED, timezone.now())
            return target

    def retry_instance(
        self,
        instance: TaskInstance,
        exc: BaseException | None,
        cooldown: float | None,
        replacement_kwargs: Mapping[str, Mapping[str, Any]] | None,
        metadata: Mapping[str, Any] | None,
    ) -> TaskInstance | None:
        """Fail the instance (recording ``exc``) and replay it after ``cooldown`` seconds."""
        cooldown = check_cooldown(cooldown)
        extra = self._encode_metadata(metadata)
        with self._locked(record_manager=True):
            target = self._lock_running(instance, "retried")
            if target is None:
                return None
            if exc is not None:
                target.metadata.update(encoding.describe_exception(exc))
            target.metadata.update(extra)
            now = timezone.now()
            self._move(target, FAILED, now)
            return self._replay(target, replacement_kwargs, now, cooldown=cooldown)

    # -- recovery (worker protocol) ---------------------------------------------------
    # Called by django_triggers.recovery, one instance per transaction. Each
    # re-checks the instance under the session lock, so sweeps running on
    # several machines at once act on an instance at most once.

    def redispatch_instance(self, instance_name: str, due: Callable[[TaskInstance], bool]) -> bool:
        """Hand a scheduled instance over to its runner again, if ``due`` says so.

        ``due`` sees the instance as it is under the lock. The new
        ``dispatched_at`` makes other sweeps, and this one next time, leave
        it alone until it is due again; the runner gets the same Celery task
        id, and a worker runs an instance once however often it is delivered.
        """
        with self._locked(bump=False):
            instance = self._lock_instance(instance_name)
            if instance.status != SCHEDULED or not due(instance):
                return False
            now = timezone.now()
            instance.dispatched_at = now
            rules.stamp(instance, now)
            self._store.update_instance(instance, ["dispatched_at", "metadata", "modified"])
            transaction.on_commit(partial(self._dispatch, [instance]), using=self.database)
            return True

    def expire_instance(self, instance_name: str, now: datetime) -> bool:
        """Abandon an instance whose deadline passed, and fire ``<task>.timeout``."""
        with self._locked():
            instance = self._lock_instance(instance_name)
            if instance.status != UNSTARTED or not instance.deadline or instance.deadline > now:
                return False
            missing = [name for name in instance.config.after if name not in instance.kwargs]
            instance.metadata["abandoned_reason"] = {
                "reason": "deadline",
                "deadline": instance.deadline.isoformat(),
                "within": instance.config.within,
                "missing_triggers": missing,
            }
            self._move(instance, ABANDONED, now)
            self._fire_locked(
                timeout_trigger(instance.task_name),
                {"instance": instance.name, "missing_triggers": missing},
                FiredTrigger.DEADLINE,
            )
            return True

    def fail_stuck_instance(self, instance_name: str, stuck_since: datetime) -> bool:
        """Fail an instance ``running`` since before ``stuck_since``, so it can be replayed."""
        with self._locked(bump=False):
            instance = self._lock_instance(instance_name)
            if instance.status != RUNNING or instance.status_changed_at > stuck_since:
                return False
            exc = StuckInstance(
                f"{instance.name!r} has been running since "
                f"{instance.status_changed_at.isoformat()}; its worker is presumed lost"
            )
            instance.metadata.update(encoding.describe_exception(exc))
            self._move(instance, FAILED, timezone.now())
            return True

    def skip_running_instance(
        self, instance: TaskInstance, metadata: Mapping[str, Any] | None
    ) -> None:
        extra = self._encode_metadata(metadata)
        with self._locked(bump=False):
            target = self._lock_running(instance, "skipped")
            if target is None:
                return
            target.metadata.update(extra)
            self._move(target, SKIPPED, timezone.now())

    def record_log_level(self, instance: TaskInstance, level: int) -> None:
        """Raise the instance's stored log level to ``level`` if that is higher."""
        if level > instance.log_level:
            self._store.raise_log_level(instance, level)
            instance.log_level = level

    # -- internals -----------------------------------------------------------------

    @contextmanager
    def _locked(self, *, record_manager: bool = False, bump: bool = True) -> Iterator[None]:
        """A transaction holding the session row's lock (SQLite: the database's write lock).

        Taking the lock moves the session's version on, so that fires that
        read without the lock see their read is stale. Pass ``bump=False``
        for a fire (its write moves its tasks' versions on) and for changes
        no fire reads: those of instances that are not ``unstarted``. With
        ``record_manager``, this manager's class becomes the session's: the
        one workers rebuild to run what it schedules.
        """
        with transaction.atomic(using=self.database):
            if not self._store.lock_session(self.session.pk, bump=bump):
                raise SessionNotFound(f"trigger session {self.session_uid!r} has been deleted")
            if record_manager:
                self._record_manager_class(None)
            yield

    def _record_manager_class(self, recorded: str | None) -> None:
        """Make this manager's class the session's (``recorded``: the current one, if read)."""
        path = self.class_path()
        if recorded != path:
            self._store.record_manager_class(self.session.pk, path)
            self.session.manager_class = path

    def _transition(self, instance: InstanceRef, old: str, new: str) -> TaskInstance | None:
        """Move the instance from ``old`` to ``new`` in one statement, where the database can.

        ``None`` if it did not (not ``old``, absent, or not PostgreSQL): the
        caller then takes the instance's lock and checks why.
        """
        name = self._instance_name(instance)
        moved = self._store.transition(self.session.pk, name, old, new, timezone.now())
        if moved is not None:
            self._on_status_changes([(moved, old, new)])
        return moved

    def _lock_instance(self, instance: InstanceRef) -> TaskInstance:
        name = self._instance_name(instance)
        locked = self._store.lock_instance(self.session.pk, name)
        if locked is None:
            raise InstanceNotFound(
                f"no task instance named {name!r} in session {self.session_uid!r}"
            )
        return locked

    def _instance_name(self, instance: InstanceRef) -> str:
        if isinstance(instance, TaskInstance):
            if instance.session_id != self.session.pk:
                raise ValueError(
                    f"task instance {instance.name!r} belongs to another session than "
                    f"{self.session_uid!r}"
                )
            return instance.name
        if not isinstance(instance, str):
            raise TypeError(f"expected a task instance or its name, not {type(instance).__name__}")
        return encoding.check_name(instance, what="an instance name", max_length=MAX_NAME_LENGTH)


#: How long, in seconds, fires of this process take a session's lock at once
#: after a fire without it lost the race to another change of that session.
CONTENTION_MEMORY = 1.0
_contended: dict[tuple[str, int], float] = {}


#: What a task's configuration sets on its TaskConfig.
_CONFIG_ATTRIBUTES = [
    "after",
    "and_every",
    "unless",
    "run",
    "using",
    "within",
    "with_params",
    "extras",
]

#: What a change of status writes.
_STATUS_FIELDS = list(INSTANCE_UPDATE_FIELDS)

_PAST = {"replay": "replayed", "skip": "skipped"}


def _require_status(instance: TaskInstance, required: str, action: str) -> None:
    if instance.status != required:
        raise ValueError(
            f"cannot {action} task instance {instance.name!r}: its status is "
            f"{instance.status!r} (only {required} instances can be {_PAST[action]})"
        )
