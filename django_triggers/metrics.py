"""Prometheus metrics (the ``prometheus`` extra), in prometheus_client's default registry.

With ``prometheus_client`` installed, importing this module (the manager
does) registers the metrics below in ``prometheus_client.REGISTRY``, so any
exporter of that registry serves them: django-prometheus's ``/metrics``,
``prometheus_client.start_http_server``, or the multiprocess collector when
``PROMETHEUS_MULTIPROC_DIR`` is set (see the Metrics page of the
documentation). Fires and status changes are counted by receivers of the
signals (:mod:`django_triggers.signals`), connected by ``AppConfig.ready``;
the manager times fires and counts dispatch errors, and
:func:`~django_triggers.recovery.recover` counts what its sweeps did.

Without prometheus_client, every function here does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django_triggers import signals

try:
    from prometheus_client import Counter, Histogram
except ImportError:  # pragma: no cover - the prometheus extra is not installed
    PROMETHEUS_INSTALLED = False
else:
    PROMETHEUS_INSTALLED = True

    #: ``triggers_fires_total{source}``: fires committed, by source.
    FIRES = Counter("triggers_fires", "Trigger fires committed, by source.", ["source"])
    #: ``triggers_instance_transitions_total{task, status}``: instances created
    #: in, or moved to, ``status``.
    TRANSITIONS = Counter(
        "triggers_instance_transitions",
        "Task instances created in, or moved to, a status, by task and status.",
        ["task", "status"],
    )
    #: ``triggers_fire_duration_seconds{source}``: how long a fire took, from
    #: the call to its return (its dispatch included, outside a transaction).
    FIRE_DURATION = Histogram(
        "triggers_fire_duration_seconds",
        "Time taken by a fire, its dispatch included when it commits at once, by source.",
        ["source"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    )
    #: ``triggers_dispatch_errors_total{runner}``: instances a runner refused
    #: (they stay scheduled until ``triggers_recover`` hands them over again).
    DISPATCH_ERRORS = Counter(
        "triggers_dispatch_errors",
        "Scheduled task instances their runner refused, by runner.",
        ["runner"],
    )
    #: ``triggers_recovery_instances_total{outcome}``: what recovery sweeps
    #: did, instance by instance (the fields of ``RecoveryReport``).
    RECOVERY_INSTANCES = Counter(
        "triggers_recovery_instances",
        "Task instances acted on or reported by recovery sweeps, by outcome.",
        ["outcome"],
    )
    #: ``triggers_recovery_sweeps_total``: runs of ``recover()``.
    RECOVERY_SWEEPS = Counter("triggers_recovery_sweeps", "Runs of the recovery sweeps.")


def observe_fire(source: str, seconds: float) -> None:
    if PROMETHEUS_INSTALLED:
        FIRE_DURATION.labels(source).observe(seconds)


def count_dispatch_error(runner: str) -> None:
    if PROMETHEUS_INSTALLED:
        DISPATCH_ERRORS.labels(runner).inc()


def count_recovery(outcomes: Mapping[str, int]) -> None:
    """Count one run of the sweeps, and ``{outcome: instances}``."""
    if PROMETHEUS_INSTALLED:
        RECOVERY_SWEEPS.inc()
        for outcome, count in outcomes.items():
            RECOVERY_INSTANCES.labels(outcome).inc(count)


def _count_fire(sender: Any, source: str, **kwargs: Any) -> None:
    FIRES.labels(source).inc()


def _count_transition(sender: Any, task_name: str, new_status: str, **kwargs: Any) -> None:
    TRANSITIONS.labels(task_name, new_status).inc()


def connect() -> None:
    """Connect the counting receivers to the signals (``AppConfig.ready`` does)."""
    if PROMETHEUS_INSTALLED:
        signals.trigger_fired.connect(_count_fire, dispatch_uid="django_triggers.metrics")
        signals.instance_status_changed.connect(
            _count_transition, dispatch_uid="django_triggers.metrics"
        )
