"""The examples of the Signals page."""

import logging
import threading
from collections import Counter
from typing import Any

from django.dispatch import receiver

from django_triggers.signals import instance_status_changed, trigger_fired

log = logging.getLogger("questionnaire.workflow")


class Metrics:
    """A stand-in for a metrics client (statsd, Prometheus...)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def increment(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1


metrics = Metrics()


@receiver(instance_status_changed, dispatch_uid="questionnaire-count-statuses")
def count_statuses(
    sender: type, task_name: str, old_status: str | None, new_status: str, **kwargs: Any
) -> None:
    metrics.increment(f"triggers.{task_name}.{new_status}")


@receiver(trigger_fired, dispatch_uid="questionnaire-log-fires")
def log_fires(
    sender: type,
    session_uid: str,
    trigger_name: str,
    source: str,
    scheduled: list[str],
    **kwargs: Any,
) -> None:
    log.info(
        "%s fired in %s (%s), scheduling %s",
        trigger_name,
        session_uid,
        source,
        ", ".join(scheduled) or "nothing",
    )
