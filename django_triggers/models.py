"""Persistent state of trigger sessions.

All rules live in :mod:`django_triggers.manager`; these models only hold the
state the rules read and write, and the indexes their hot paths need.
"""

import logging
from typing import Any

from django.apps import apps
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone


class TriggerSession(models.Model):
    """One questionnaire, order, user journey: the scope triggers fire in."""

    uid = models.CharField(max_length=255, unique=True)
    #: Dotted path of the manager class that last acted on the session; a
    #: worker in another process rebuilds that class to run cascades.
    manager_class = models.CharField(max_length=255, blank=True, default="")
    #: Incremented by every change to the session other than a fire and the
    #: end of a running task (configuration, replays, status and metadata
    #: changes): a fire that read the session without its lock writes only
    #: if this has not moved since.
    version = models.PositiveBigIntegerField(default=0, editable=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]
        permissions = [("fire_trigger", "Can fire triggers into sessions")]

    def __str__(self) -> str:
        return self.uid


class TaskConfig(models.Model):
    """A trigger task as configured in one session."""

    # Indexed by the unique (session, name) constraint; as for every foreign key
    # below with db_index=False, an index of its own would only slow writes.
    session = models.ForeignKey(
        TriggerSession, on_delete=models.CASCADE, related_name="configs", db_index=False
    )
    name = models.CharField(max_length=255)
    #: Every trigger that must fire before an instance runs, ``andEvery`` included.
    after = models.JSONField(default=list)
    and_every = models.CharField(max_length=255, blank=True, default="")
    unless = models.JSONField(default=list)
    run = models.CharField(max_length=255)
    using = models.CharField(max_length=255, blank=True, default="")
    with_params = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    #: Seconds an instance may wait for its ``after`` triggers before it is abandoned.
    within = models.FloatField(null=True, blank=True)
    #: Directives this app does not know, kept for custom managers.
    extras = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    #: Incremented by every fire the task listens to (PostgreSQL): fires that
    #: read without the session's lock conflict only when they share a task.
    version = models.PositiveBigIntegerField(default=0, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["session", "id"]
        constraints = [
            models.UniqueConstraint(fields=["session", "name"], name="triggers_config_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name

    def as_directives(self) -> dict[str, Any]:
        """The configuration as it would be written for ``update_configuration``."""
        directives: dict[str, Any] = {
            "after": [name for name in self.after if name != self.and_every],
            "run": self.run,
        }
        if self.and_every:
            directives["andEvery"] = self.and_every
        if self.unless:
            directives["unless"] = list(self.unless)
        if self.with_params:
            directives["withParams"] = self.with_params
        if self.using:
            directives["using"] = self.using
        if self.within is not None:
            directives["within"] = int(self.within) if self.within.is_integer() else self.within
        directives.update(self.extras)
        return directives

    @staticmethod
    def has_instance() -> models.Exists:
        """Whether the task of each row has an instance yet: an expression to filter or count by."""
        return models.Exists(TaskInstance.objects.filter(config=models.OuterRef("pk")))


class TaskListener(models.Model):
    """Index row: trigger ``trigger_name`` matters to task ``config``.

    Lets a fire find the tasks that listen to its trigger through an index
    instead of reading every configuration of the session.
    """

    AFTER = "after"
    UNLESS = "unless"
    ROLE_CHOICES = [(AFTER, "after"), (UNLESS, "unless")]

    session = models.ForeignKey(
        TriggerSession, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    config = models.ForeignKey(
        TaskConfig, on_delete=models.CASCADE, related_name="listeners", db_index=False
    )
    trigger_name = models.CharField(max_length=255)
    role = models.CharField(max_length=6, choices=ROLE_CHOICES)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["config", "trigger_name", "role"], name="triggers_listener_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["session", "trigger_name"], name="triggers_listener_lookup"),
        ]

    def __str__(self) -> str:
        return f"{self.config_id} {self.role} {self.trigger_name}"


class FiredTrigger(models.Model):
    """Append-only log of every fire in a session, in order."""

    APPLICATION = "application"
    CASCADE = "cascade"
    SKIP = "skip"
    ADMIN = "admin"
    COMMAND = "command"
    REPLAY = "replay"
    DEADLINE = "deadline"
    SOURCE_CHOICES = [
        (APPLICATION, "application"),
        (CASCADE, "cascade of a finished task"),
        (SKIP, "cascade of a skipped task"),
        (ADMIN, "admin"),
        (COMMAND, "management command"),
        (REPLAY, "replay of a session"),
        (DEADLINE, "deadline of a waiting task"),
    ]

    session = models.ForeignKey(
        TriggerSession, on_delete=models.CASCADE, related_name="fired", db_index=False
    )
    trigger_name = models.CharField(max_length=255)
    kwargs = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    source = models.CharField(max_length=16, choices=SOURCE_CHOICES, default=APPLICATION)
    #: The caller's id of the event behind this fire: firing it again is a no-op.
    event_id = models.CharField(max_length=255, blank=True, default="")
    #: Names of the instances this fire scheduled.
    scheduled_instances = models.JSONField(default=list)
    fired_at = models.DateTimeField(auto_now_add=True)
    #: The W3C trace context (``traceparent``, ``tracestate``) of the fire's
    #: span, when OpenTelemetry traces it; the runs it feeds link to it.
    trace_context = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["session", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "event_id"],
                condition=~Q(event_id=""),
                name="triggers_fired_unique_event",
            ),
        ]
        indexes = [
            # Latest kwargs of a trigger: the highest id for (session, name).
            models.Index(fields=["session", "trigger_name", "id"], name="triggers_fired_latest"),
        ]

    def __str__(self) -> str:
        return self.trigger_name

    def as_dict(self) -> dict[str, Any]:
        """The fire as JSON-able values, as the session's snapshots show it."""
        return {
            "trigger_name": self.trigger_name,
            "kwargs": self.kwargs,
            "source": self.source,
            "fired_at": self.fired_at.isoformat(),
        }


class TaskInstance(models.Model):
    """One run (pending, running or done) of a configured task."""

    UNSTARTED = "unstarted"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    REPLAYED = "replayed"
    SKIPPED = "skipped"
    ABANDONED = "abandoned"
    STATUS_CHOICES = [
        (UNSTARTED, "unstarted"),
        (SCHEDULED, "scheduled"),
        (RUNNING, "running"),
        (FINISHED, "finished"),
        (FAILED, "failed"),
        (REPLAYED, "replayed"),
        (SKIPPED, "skipped"),
        (ABANDONED, "abandoned"),
    ]
    STATUSES = frozenset(value for value, _ in STATUS_CHOICES)
    RESOLVED_STATUSES = frozenset({FINISHED, SKIPPED, REPLAYED, ABANDONED})
    #: Statuses in which the logs of an instance no longer need attention.
    LOGS_IRRELEVANT_STATUSES = frozenset({ABANDONED, REPLAYED, SKIPPED})

    session = models.ForeignKey(
        TriggerSession, on_delete=models.CASCADE, related_name="instances", db_index=False
    )
    config = models.ForeignKey(
        TaskConfig, on_delete=models.CASCADE, related_name="instances", db_index=False
    )
    #: ``"<task>#<number>"``, unique in the session.
    name = models.CharField(max_length=255)
    task_name = models.CharField(max_length=255)
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=STATUS_CHOICES, default=UNSTARTED)
    #: ``{trigger_name: kwargs}`` of the first fire of each ``after`` trigger it saw.
    kwargs = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    #: Names of the ``unless`` triggers it has seen fire.
    unless_fired = models.JSONField(default=list)
    result = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    metadata = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    log_level = models.PositiveSmallIntegerField(default=logging.NOTSET)
    logs_marked_resolved = models.BooleanField(default=False)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="replays",
        db_index=False,  # a partial index: most instances have no parent
    )
    retries = models.PositiveIntegerField(default=0)
    #: Not to be started before this time (a retry's cooldown).
    eta = models.DateTimeField(null=True, blank=True)
    #: Abandoned if still unstarted at this time (the task's ``within``).
    deadline = models.DateTimeField(null=True, blank=True)
    #: Id of the Celery task that runs it, chosen when it is scheduled.
    celery_task_id = models.CharField(max_length=255, blank=True, default="")
    #: When it was handed to its runner: set in the transaction that schedules it,
    #: cleared if the runner refuses it (the broker is down, say).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    created = models.DateTimeField(default=timezone.now)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["session", "task_name", "number"]
        permissions = [
            ("replay_taskinstance", "Can replay failed task instances"),
            ("skip_taskinstance", "Can skip failed task instances"),
            ("resolve_logs_taskinstance", "Can mark the logs of task instances resolved"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "name"], name="triggers_instance_unique_name"
            ),
            models.UniqueConstraint(
                fields=["config", "number"], name="triggers_instance_unique_number"
            ),
        ]
        indexes = [
            # Open instances of the tasks a fire touches.
            models.Index(
                fields=["config", "status"],
                name="triggers_instance_open",
                condition=Q(status="unstarted"),
            ),
            models.Index(fields=["session", "status"], name="triggers_instance_status"),
            # Recovery sweeps: instances in flight, by how long they have been so.
            models.Index(
                fields=["status", "status_changed_at"],
                name="triggers_instance_in_flight",
                condition=Q(status__in=["scheduled", "running"]),
            ),
            models.Index(
                fields=["deadline"],
                name="triggers_instance_deadline",
                condition=Q(status="unstarted", deadline__isnull=False),
            ),
            models.Index(
                fields=["parent"],
                name="triggers_instance_parent",
                condition=Q(parent__isnull=False),
            ),
            models.Index(fields=["celery_task_id"], name="triggers_instance_celery_task"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_resolved(self) -> bool:
        """Whether the instance needs nothing more: finished, skipped, replayed or abandoned."""
        return self.status in self.RESOLVED_STATUSES

    @property
    def can_run(self) -> bool:
        """Whether the instance is ready to run.

        Scheduled, or unstarted with every one of its ``after`` triggers
        fired into it; not while it still waits for one, nor once started
        or abandoned.
        """
        if self.status == self.SCHEDULED:
            return True
        return self.status == self.UNSTARTED and all(
            name in self.kwargs for name in self.config.after
        )

    def waiting_for(self) -> dict[str, list[str]]:
        """Which of its ``after`` and ``unless`` triggers it has seen fire, and which not."""
        after, unless = self.config.after, self.config.unless
        return {
            "after_fired": [name for name in after if name in self.kwargs],
            "after_missing": [name for name in after if name not in self.kwargs],
            "unless_fired": [name for name in unless if name in self.unless_fired],
            "unless_missing": [name for name in unless if name not in self.unless_fired],
        }

    @property
    def can_abandon(self) -> bool:
        """Whether its ``unless`` triggers can still abandon it (it is unstarted)."""
        return self.status == self.UNSTARTED

    @property
    def can_replay(self) -> bool:
        """Whether it can be replayed (it failed)."""
        return self.status == self.FAILED

    @property
    def can_skip(self) -> bool:
        """Whether it can be skipped (it failed)."""
        return self.status == self.FAILED

    @property
    def log_level_name(self) -> str:
        """The name of the highest level its task logged (``NOTSET`` if none)."""
        return logging.getLevelName(self.log_level)

    @property
    def logs_resolved(self) -> bool:
        """Whether its logs need no attention.

        True when its status makes them irrelevant (abandoned, replayed,
        skipped), when nothing was logged at ``ERROR`` or above, or when they
        were marked resolved.
        """
        return (
            self.status in self.LOGS_IRRELEVANT_STATUSES
            or self.log_level < logging.ERROR
            or self.logs_marked_resolved
        )

    @property
    def task_result(self) -> Any:
        """The ``django_celery_results`` ``TaskResult`` of its Celery task, if stored."""
        if not self.celery_task_id or not apps.is_installed("django_celery_results"):
            return None
        from django_celery_results.models import TaskResult

        return TaskResult.objects.filter(task_id=self.celery_task_id).first()

    @classmethod
    def unresolved_logs_q(cls) -> Q:
        """Query form of ``not logs_resolved``."""
        return Q(log_level__gte=logging.ERROR, logs_marked_resolved=False) & ~Q(
            status__in=cls.LOGS_IRRELEVANT_STATUSES
        )
