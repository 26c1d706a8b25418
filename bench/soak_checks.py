"""What the soak checks once its work has settled, from the database and the firing logs.

:func:`check` reads every fire, instance and body start of the run's sessions
and counts, by kind, the violations of what the library promises:

``fire_lost`` / ``fire_duplicated``
    A fire its caller saw succeed is not recorded, or recorded twice (matched
    by the unique marker in its kwargs); a fire whose caller saw an error is
    recorded at most once.
``unknown_fire``
    A recorded fire that no caller sent.
``fire_error``
    A fire raised something other than a database error.
``event_applied_twice``
    Two fires recorded with one ``event_id`` in a session.
``and_every_mismatch``
    A page fire that created other than exactly one instance of its
    ``andEvery`` task (none if the fire is not recorded).
``one_shot_duplicated``
    More than one instance of a task without ``andEvery`` in a session,
    replays and retries (instances with a parent) aside.
``body_ran_twice``
    One instance's body started more than once.
``body_of_other_task_id``
    A body ran under a Celery task id other than its instance's.
``finished_without_body``
    An instance finished without its body having started.
``cascade_mismatch`` / ``deadline_mismatch``
    A task's name fired other than once per finished instance; a
    ``.timeout`` fired other than once per instance abandoned at its deadline.
``unresolved``
    An instance still ``unstarted``, ``scheduled`` or ``running``.
``failed_without_reason``
    A ``failed`` instance whose metadata does not say why.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from bench.soak_tasks import BODY_STARTS, ONE_SHOT_TASKS

VIOLATION_KINDS = (
    "fire_lost",
    "fire_duplicated",
    "unknown_fire",
    "fire_error",
    "event_applied_twice",
    "and_every_mismatch",
    "one_shot_duplicated",
    "body_ran_twice",
    "body_of_other_task_id",
    "finished_without_body",
    "cascade_mismatch",
    "deadline_mismatch",
    "unresolved",
    "failed_without_reason",
)

#: Examples kept per kind of violation, for the report.
EXAMPLES = 5

STUCK = "django_triggers.exceptions.StuckInstance"


class Findings:
    def __init__(self) -> None:
        self.violations: Counter[str] = Counter({kind: 0 for kind in VIOLATION_KINDS})
        self.examples: dict[str, list[Any]] = defaultdict(list)
        self.stats: dict[str, Any] = {}

    def violation(self, kind: str, example: Any) -> None:
        self.violations[kind] += 1
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(example)


def check(prefix: str, records: list[dict[str, Any]]) -> Findings:
    """Check the sessions whose uid starts with ``prefix`` against the callers' ``records``."""
    from django.db import connection

    from django_triggers.models import FiredTrigger, TaskInstance

    findings = Findings()
    ours = {"session__uid__startswith": prefix}

    # -- fires --------------------------------------------------------------------
    recorded: Counter[str] = Counter()
    by_event: Counter[tuple[str, str]] = Counter()
    for uid, event_id, kwargs in FiredTrigger.objects.filter(
        **ours, source=FiredTrigger.APPLICATION
    ).values_list("session__uid", "event_id", "kwargs"):
        recorded[kwargs.get("marker")] += 1
        if event_id:
            by_event[(uid, event_id)] += 1
    seen_ok = {record["marker"] for record in records if record["ok"]}
    sent = {record["marker"] for record in records}
    for record in records:
        if record.get("bug"):
            findings.violation("fire_error", record)
    for marker in sorted(sent):
        count = recorded[marker]
        if marker in seen_ok and count == 0:
            findings.violation("fire_lost", marker)
        elif count > 1:
            findings.violation("fire_duplicated", {"marker": marker, "recorded": count})
    uncertain = sent - seen_ok
    findings.stats["uncertain_fires_recorded"] = sum(1 for marker in uncertain if recorded[marker])
    for marker in sorted(set(recorded) - sent, key=str):
        findings.violation("unknown_fire", marker)
    for (uid, event_id), count in by_event.items():
        if count > 1:
            findings.violation("event_applied_twice", {"session": uid, "event_id": event_id})

    # -- instances ----------------------------------------------------------------
    instances = list(
        TaskInstance.objects.filter(**ours).values_list(
            "session__uid",
            "name",
            "task_name",
            "status",
            "parent_id",
            "celery_task_id",
            "kwargs",
            "metadata",
        )
    )
    starts: Counter[tuple[str, str]] = Counter()
    task_ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT session_uid, instance_name, celery_task_id FROM {BODY_STARTS} "
            f"WHERE session_uid LIKE %s",
            [prefix + "%"],
        )
        for uid, name, task_id in cursor.fetchall():
            starts[(uid, name)] += 1
            task_ids[(uid, name)].add(task_id)

    statuses: Counter[str] = Counter()
    originals: Counter[tuple[str, str]] = Counter()
    page_instances: Counter[str] = Counter()
    finished_by_task: Counter[tuple[str, str]] = Counter()
    abandoned_at_deadline: Counter[str] = Counter()
    failure_reasons: Counter[str] = Counter()
    killed_in_body = killed_before_body = rerun_by_replay = 0
    for uid, name, task, status, parent, task_id, kwargs, metadata in instances:
        key = (uid, name)
        statuses[status] += 1
        if parent is None:
            originals[(uid, task)] += 1
            if task == "t_page" and isinstance(kwargs.get("page"), dict):
                page_instances[kwargs["page"].get("marker")] += 1
        if starts[key] > 1:
            findings.violation("body_ran_twice", {"session": uid, "instance": name})
        if task_ids[key] - {task_id, ""}:
            findings.violation(
                "body_of_other_task_id",
                {"session": uid, "instance": name, "task_ids": sorted(task_ids[key])},
            )
        if status == TaskInstance.FINISHED:
            finished_by_task[(uid, task)] += 1
            if not starts[key]:
                findings.violation("finished_without_body", {"session": uid, "instance": name})
        if status in (TaskInstance.UNSTARTED, TaskInstance.SCHEDULED, TaskInstance.RUNNING):
            findings.violation("unresolved", {"session": uid, "instance": name, "status": status})
        reason = metadata.get("exception_type")
        if status == TaskInstance.FAILED and not reason:
            findings.violation("failed_without_reason", {"session": uid, "instance": name})
        if reason:
            failure_reasons[reason] += 1
        if reason == STUCK:
            if starts[key]:
                killed_in_body += 1
                rerun_by_replay += status == TaskInstance.REPLAYED
            else:
                killed_before_body += 1
        if (metadata.get("abandoned_reason") or {}).get("reason") == "deadline":
            abandoned_at_deadline[uid] += 1

    for (uid, task), count in originals.items():
        if task in ONE_SHOT_TASKS and count > 1:
            findings.violation(
                "one_shot_duplicated", {"session": uid, "task": task, "instances": count}
            )
    # Each page fire applied creates exactly one instance of t_page (andEvery).
    page_markers = {record["marker"] for record in records if record["trigger"] == "page"}
    for marker in sorted(page_markers | set(page_instances), key=str):
        if recorded[marker] != page_instances[marker]:
            findings.violation(
                "and_every_mismatch",
                {"marker": marker, "fires": recorded[marker], "instances": page_instances[marker]},
            )

    # -- cascades and deadlines -----------------------------------------------------
    cascades: Counter[tuple[str, str]] = Counter(
        FiredTrigger.objects.filter(**ours, source=FiredTrigger.CASCADE).values_list(
            "session__uid", "trigger_name"
        )
    )
    for key in set(cascades) | set(finished_by_task):
        if cascades[key] != finished_by_task[key]:
            findings.violation(
                "cascade_mismatch",
                {
                    "session": key[0],
                    "task": key[1],
                    "cascades": cascades[key],
                    "finished": finished_by_task[key],
                },
            )
    timeouts: Counter[str] = Counter(
        FiredTrigger.objects.filter(**ours, source=FiredTrigger.DEADLINE).values_list(
            "session__uid", flat=True
        )
    )
    for uid in set(timeouts) | set(abandoned_at_deadline):
        if timeouts[uid] != abandoned_at_deadline[uid]:
            findings.violation(
                "deadline_mismatch",
                {
                    "session": uid,
                    "timeouts": timeouts[uid],
                    "abandoned": abandoned_at_deadline[uid],
                },
            )

    sessions = {uid for uid, *_ in instances}
    done = {uid for (uid, task), count in finished_by_task.items() if task == "t_done"}
    findings.stats = {
        **findings.stats,
        "sessions": len(sessions),
        "sessions_done": len(done),
        "instances": len(instances),
        "instances_by_status": dict(sorted(statuses.items())),
        "body_starts": sum(starts.values()),
        "failure_reasons": dict(failure_reasons.most_common()),
        # A body killed midway is never run again by its redelivered message;
        # its work runs again only in a replay, a new instance.
        "killed_in_body": killed_in_body,
        "killed_in_body_then_replayed": rerun_by_replay,
        "killed_before_body": killed_before_body,
        "abandoned_at_deadline": sum(abandoned_at_deadline.values()),
        "cascades": sum(cascades.values()),
    }
    return findings
