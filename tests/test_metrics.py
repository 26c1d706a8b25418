"""Prometheus metrics, read as an exporter reads them: ``prometheus_client.generate_latest()``."""

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskInstance
from django_triggers.recovery import recover
from django_triggers.runners import BaseTaskRunner, ThreadingTaskRunner
from tests.helpers import ROOT, database_env

pytestmark = pytest.mark.django_db(transaction=True)


def exported() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the default registry, by name and labels."""
    text = prometheus_client.generate_latest().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def changes(action: Callable[[], Any]) -> Callable[..., float]:
    """Run ``action``; return how much a sample (name, labels) grew meanwhile."""
    before = exported()
    action()
    after = exported()

    def grew(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    return grew


class RefusingRunner(BaseTaskRunner):
    """Refuses every instance, as a runner does when the broker is down."""

    name = "test_metrics.refusing"

    def run(self, manager: TriggerManager, task_instance: TaskInstance) -> None:
        raise ConnectionError("the broker is down")


def test_fires_transitions_and_fire_latency_are_counted(settings: Any) -> None:
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"
    manager = TriggerManager("metrics-runs")
    manager.update_configuration(
        {
            "t_metricsA": {"after": ["start"], "run": "tests.Echo"},
            "t_metricsB": {"after": ["t_metricsA"], "run": "tests.Fail"},
        }
    )

    def fire() -> None:
        manager.fire("start")
        manager.fire("noise", source=FiredTrigger.COMMAND)
        ThreadingTaskRunner.join_all(timeout=30)

    grew = changes(fire)

    assert grew("triggers_fires_total", source="application") == 1
    assert grew("triggers_fires_total", source="command") == 1
    assert grew("triggers_fires_total", source="cascade") == 1
    for status in ("scheduled", "running", "finished"):
        assert grew("triggers_instance_transitions_total", task="t_metricsA", status=status) == 1
    assert grew("triggers_instance_transitions_total", task="t_metricsB", status="failed") == 1
    assert grew("triggers_instance_transitions_total", task="t_metricsB", status="finished") == 0
    assert grew("triggers_fire_duration_seconds_count", source="application") == 1
    assert grew("triggers_fire_duration_seconds_count", source="cascade") == 1
    assert grew("triggers_fire_duration_seconds_sum", source="application") > 0
    assert grew("triggers_fire_duration_seconds_bucket", source="application", le="+Inf") == 1


def test_dispatch_errors_and_recovery_sweeps_are_counted(settings: Any) -> None:
    settings.TRIGGERS_DEFAULT_RUNNER = "threading"
    manager = TriggerManager("metrics-recovery")
    manager.update_configuration(
        {"t_refused": {"after": ["start"], "run": "tests.Echo", "using": RefusingRunner.name}}
    )

    grew = changes(lambda: manager.fire("start"))

    assert grew("triggers_dispatch_errors_total", runner=RefusingRunner.name) == 1
    assert grew("triggers_instance_transitions_total", task="t_refused", status="scheduled") == 1

    grew = changes(lambda: recover(redispatch_after=timedelta(0)))

    assert grew("triggers_recovery_sweeps_total") == 1
    assert grew("triggers_recovery_instances_total", outcome="never_dispatched") == 1
    assert grew("triggers_recovery_instances_total", outcome="expired") == 0
    assert grew("triggers_dispatch_errors_total", runner=RefusingRunner.name) == 1  # again
    assert manager.get_instance("t_refused#0").status == TaskInstance.SCHEDULED


ABSENT = """
import sys
sys.modules["opentelemetry"] = None  # as if neither extra were installed
sys.modules["prometheus_client"] = None
import django
django.setup()
import tests.tasks
from django_triggers import instrumentation, metrics, tracing
from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger
from django_triggers.runners import ThreadingTaskRunner

assert not tracing.OTEL_INSTALLED and not metrics.PROMETHEUS_INSTALLED
assert not tracing.enabled() and instrumentation.trace_context() == {}
manager = TriggerManager("metrics-absent")
manager.update_configuration({"t_absent": {"after": ["start"], "run": "tests.Echo"}})
manager.fire("start")
ThreadingTaskRunner.join_all(timeout=30)
assert manager.get_instance("t_absent#0").status == "finished"
assert [fire.trace_context for fire in FiredTrigger.objects.all()] == [{}, {}]
"""


def test_without_the_optional_packages_the_app_works_and_imports_neither() -> None:
    environment = {
        **os.environ,
        **database_env(),
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "TRIGGERS_DEFAULT_RUNNER": "threading",
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run(
        [sys.executable, "-c", ABSENT],
        cwd=ROOT,
        env=environment,
        check=True,
    )
