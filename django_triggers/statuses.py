"""The status machine of a task instance: every change of status, declared once.

Each :class:`Transition` names a change the library makes, from which status
to which, and what makes it. :func:`check_transition` refuses any other
change, whoever asks for it (a fire, a worker, recovery, the admin or
``update_instance_status``), and every write of a status is guarded by the
status it starts from, so two changes racing for one instance cannot both
apply.
"""

from __future__ import annotations

from typing import NamedTuple

from django_triggers.models import TaskInstance

UNSTARTED = TaskInstance.UNSTARTED
SCHEDULED = TaskInstance.SCHEDULED
RUNNING = TaskInstance.RUNNING
FINISHED = TaskInstance.FINISHED
FAILED = TaskInstance.FAILED
REPLAYED = TaskInstance.REPLAYED
SKIPPED = TaskInstance.SKIPPED
ABANDONED = TaskInstance.ABANDONED


class Transition(NamedTuple):
    """A change of status, and what makes it."""

    source: str | None  # ``None``: the instance is created in ``target``
    target: str
    when: str


TRANSITIONS: tuple[Transition, ...] = (
    Transition(None, UNSTARTED, "a fire creates it and some after trigger is missing"),
    Transition(None, SCHEDULED, "a fire creates it with every after trigger, or a replay"),
    Transition(UNSTARTED, SCHEDULED, "its last after trigger fires"),
    Transition(UNSTARTED, ABANDONED, "its unless triggers all fire, its deadline passes, by hand"),
    Transition(SCHEDULED, RUNNING, "a worker starts it"),
    Transition(SCHEDULED, ABANDONED, "by hand, before a worker starts it"),
    Transition(RUNNING, FINISHED, "its task returns"),
    Transition(RUNNING, FAILED, "its task raises or retries, or recovery gives up on it"),
    Transition(RUNNING, SKIPPED, "its task skips itself"),
    Transition(FAILED, REPLAYED, "it is replayed (by hand or by a retry)"),
    Transition(FAILED, SKIPPED, "it is skipped"),
    Transition(FAILED, FINISHED, "by hand"),
    Transition(FAILED, ABANDONED, "by hand"),
)

#: ``{source: targets}`` of :data:`TRANSITIONS`; ``None`` is creation.
ALLOWED: dict[str | None, frozenset[str]] = {
    source: frozenset(t.target for t in TRANSITIONS if t.source == source)
    for source in (None, *TaskInstance.STATUSES)
}

#: Statuses nothing leaves.
FINAL = frozenset(status for status in TaskInstance.STATUSES if not ALLOWED[status])


class InvalidTransition(ValueError):
    """A change of status the status machine does not allow; nothing was changed."""


class StatusConflict(InvalidTransition):
    """The instance's status changed between the read and the guarded write; nothing was written."""


def check_transition(name: str, source: str | None, target: str) -> None:
    """Refuse (:class:`InvalidTransition`) a change the machine does not allow."""
    if target not in TaskInstance.STATUSES:
        known = ", ".join(sorted(TaskInstance.STATUSES))
        raise InvalidTransition(f"unknown status {target!r}; expected one of {known}")
    if target in ALLOWED[source]:
        return
    if source is None:
        raise InvalidTransition(f"task instance {name!r} cannot be created {target}")
    allowed = ALLOWED[source]
    then = f"only to {', '.join(sorted(allowed))}" if allowed else "nowhere: that status is final"
    raise InvalidTransition(
        f"task instance {name!r} cannot go from {source} to {target}: from {source} it goes {then}"
    )
