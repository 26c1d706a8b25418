"""Validation of task configurations, before anything is stored.

``update_configuration`` turns each ``{task_name: directives}`` entry into a
:class:`TaskSpec`, and refuses the whole mapping with a
:class:`~django_triggers.exceptions.ConfigurationError` naming the task and
the directive at the first problem found.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django_triggers import encoding
from django_triggers.exceptions import ConfigurationError, UnencodableValue
from django_triggers.registry import get_runner_class, get_trigger_task

AFTER = "after"
RUN = "run"
AND_EVERY = "andEvery"
UNLESS = "unless"
WITH_PARAMS = "withParams"
USING = "using"
WITHIN = "within"
KNOWN_DIRECTIVES = frozenset({AFTER, RUN, AND_EVERY, UNLESS, WITH_PARAMS, USING, WITHIN})

#: The longest name a column of the library holds (trigger, task, runner names).
MAX_NAME_LENGTH = 255
#: The highest number an instance can take (the ``number`` column's limit).
MAX_INSTANCE_NUMBER = 2_147_483_647
#: The longest task name: its instance names (``<task>#<number>``) and its
#: deadline trigger (``<task>.timeout``) must fit their columns too.
MAX_TASK_NAME_LENGTH = MAX_NAME_LENGTH - len(f"#{MAX_INSTANCE_NUMBER}")
#: The longest ``within``: 100 years, so that a deadline is always a date.
MAX_WITHIN = 100 * 365 * 24 * 3600


def check_cooldown(cooldown: Any) -> float | None:
    """``cooldown``, a retry's wait in seconds, if it is one: from 0 to 100 years, or ``None``."""
    if cooldown is None:
        return None
    if (
        isinstance(cooldown, bool)
        or not isinstance(cooldown, int | float)
        or not math.isfinite(cooldown)
        or not 0 <= cooldown <= MAX_WITHIN
    ):
        raise ValueError(
            f"cooldown must be a number of seconds from 0 to {MAX_WITHIN:,} (100 years), "
            f"not {cooldown!r}"
        )
    return float(cooldown)


def timeout_trigger(task_name: str) -> str:
    """The trigger a task's instance fires when its ``within`` deadline passes."""
    return f"{task_name}.timeout"


def instance_name_for(task_name: str, number: int) -> str:
    """The name of instance ``number`` of a task, unique in its session."""
    return f"{task_name}#{number}"


@dataclass(frozen=True)
class TaskSpec:
    """One validated task configuration, in the shape :class:`TaskConfig` stores."""

    name: str
    run: str
    after: list[str]
    and_every: str = ""
    unless: list[str] = field(default_factory=list)
    with_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    using: str = ""
    within: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def parse_configuration(
    configuration: Mapping[str, Any],
    existing_after: Mapping[str, Iterable[str]],
) -> list[TaskSpec]:
    """Validate ``configuration`` merged over the tasks already configured.

    ``existing_after`` maps the session's configured task names to their
    ``after`` sets, so that a cycle through tasks configured earlier is found too.
    """
    if not isinstance(configuration, Mapping):
        raise ConfigurationError(
            f"the configuration must be a mapping of task names to directives, "
            f"not {type(configuration).__name__}"
        )
    specs = [parse_task(name, directives) for name, directives in configuration.items()]
    after_by_task = {name: set(after) for name, after in existing_after.items()}
    after_by_task.update({spec.name: set(spec.after) for spec in specs})
    _check_no_cycle(after_by_task, [spec.name for spec in specs])
    return specs


def parse_task(name: Any, directives: Any) -> TaskSpec:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"task names must be non-empty strings, not {name!r}")
    try:
        encoding.check_name(name, what="the task name", max_length=MAX_TASK_NAME_LENGTH)
    except ValueError as exc:
        if len(name) > MAX_TASK_NAME_LENGTH:
            exc = ValueError(
                f"{exc}, so that its instance names ({instance_name_for('<task>', 0)} up to "
                f"#{MAX_INSTANCE_NUMBER}) and its deadline trigger "
                f"({timeout_trigger('<task>')}) fit in {MAX_NAME_LENGTH} characters"
            )
        raise ConfigurationError(str(exc), task=name[:80]) from None
    if not isinstance(directives, Mapping):
        raise ConfigurationError(
            f"the directives must be a mapping, not {type(directives).__name__}", task=name
        )
    for key in directives:
        if not isinstance(key, str):
            raise ConfigurationError(f"directive names must be strings, not {key!r}", task=name)
        problem = encoding.text_problem(key)
        if problem is not None:
            raise ConfigurationError(f"the directive name {key!r} {problem}", task=name)

    and_every = _optional_trigger_name(name, directives, AND_EVERY)
    after = _trigger_names(name, directives, AFTER, required=True, allow_empty=bool(and_every))
    if and_every and and_every not in after:
        after.append(and_every)
    if name in after:
        raise ConfigurationError(
            "a task cannot wait for its own trigger (it fires only when the task finishes)",
            task=name,
            directive=AND_EVERY if name == and_every else AFTER,
        )
    unless = _trigger_names(name, directives, UNLESS, required=False, allow_empty=False)

    return TaskSpec(
        name=name,
        run=_run(name, directives),
        after=after,
        and_every=and_every,
        unless=unless,
        with_params=_with_params(name, directives),
        using=_using(name, directives),
        within=_within(name, directives),
        extras=_extras(name, directives),
    )


def _trigger_names(
    task: str, directives: Mapping[str, Any], directive: str, *, required: bool, allow_empty: bool
) -> list[str]:
    if directive not in directives:
        if required:
            raise ConfigurationError("this directive is required", task=task, directive=directive)
        return []
    value = directives[directive]
    if not isinstance(value, list | tuple | set | frozenset):
        raise ConfigurationError(
            f"expected a list of trigger names, not {type(value).__name__} {value!r}",
            task=task,
            directive=directive,
        )
    names: list[str] = []
    for item in sorted(value) if isinstance(value, set | frozenset) else value:
        if not isinstance(item, str) or not item:
            raise ConfigurationError(
                f"trigger names must be non-empty strings, not {item!r}",
                task=task,
                directive=directive,
            )
        _check_name(task, directive, item, "the trigger name")
        if item not in names:
            names.append(item)
    if not names and not allow_empty:
        hint = " (or give andEvery)" if directive == AFTER else ""
        raise ConfigurationError(
            f"must name at least one trigger{hint}", task=task, directive=directive
        )
    return names


def _optional_trigger_name(task: str, directives: Mapping[str, Any], directive: str) -> str:
    value = directives.get(directive)
    if value is None:
        return ""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(
            f"expected one trigger name (a non-empty string), not {value!r}",
            task=task,
            directive=directive,
        )
    return _check_name(task, directive, value, "the trigger name")


def _check_name(task: str, directive: str, value: Any, what: str) -> str:
    """``value`` if it is a name the library can store, else a ``ConfigurationError``."""
    try:
        return encoding.check_name(value, what=what, max_length=MAX_NAME_LENGTH)
    except ValueError as exc:
        raise ConfigurationError(str(exc), task=task, directive=directive) from None


def _run(task: str, directives: Mapping[str, Any]) -> str:
    if RUN not in directives:
        raise ConfigurationError("this directive is required", task=task, directive=RUN)
    run = directives[RUN]
    if not isinstance(run, str) or not run:
        raise ConfigurationError(
            f"expected the name of a Celery task, not {run!r}", task=task, directive=RUN
        )
    _check_name(task, RUN, run, "the Celery task name")
    try:
        get_trigger_task(run)
    except LookupError as exc:
        raise ConfigurationError(str(exc), task=task, directive=RUN) from None
    return run


def _with_params(task: str, directives: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    params = directives.get(WITH_PARAMS)
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ConfigurationError(
            f"expected a dict of dicts, not {type(params).__name__}",
            task=task,
            directive=WITH_PARAMS,
        )
    for key, value in params.items():
        if not isinstance(key, str) or not isinstance(value, Mapping):
            raise ConfigurationError(
                f"expected a dict of dicts (like trigger kwargs); the value of {key!r} "
                f"is {type(value).__name__}, not a dict",
                task=task,
                directive=WITH_PARAMS,
            )
    return _encodable(task, WITH_PARAMS, params)


def _using(task: str, directives: Mapping[str, Any]) -> str:
    using = directives.get(USING)
    if using is None:
        return ""
    if not isinstance(using, str):
        raise ConfigurationError(
            f"expected a runner name, not {using!r}", task=task, directive=USING
        )
    _check_name(task, USING, using, "the runner name")
    try:
        get_runner_class(using)
    except LookupError as exc:
        raise ConfigurationError(str(exc), task=task, directive=USING) from None
    return using


def _within(task: str, directives: Mapping[str, Any]) -> float | None:
    within = directives.get(WITHIN)
    if within is None:
        return None
    if (
        isinstance(within, bool)
        or not isinstance(within, int | float)
        or not math.isfinite(within)
        or not 0 < within <= MAX_WITHIN
    ):
        raise ConfigurationError(
            f"expected a number of seconds greater than 0 and at most {MAX_WITHIN:,} "
            f"(100 years), not {within!r}",
            task=task,
            directive=WITHIN,
        )
    return float(within)


def _extras(task: str, directives: Mapping[str, Any]) -> dict[str, Any]:
    extras = {key: value for key, value in directives.items() if key not in KNOWN_DIRECTIVES}
    for key, value in extras.items():
        _encodable(task, key, value)
    return extras


def _encodable(task: str, directive: str, value: Any) -> Any:
    try:
        return encoding.normalize(value, what=f"the value of {directive!r}")
    except UnencodableValue as exc:
        raise ConfigurationError(str(exc), task=task, directive=directive) from None


def _check_no_cycle(after_by_task: Mapping[str, set[str]], new_tasks: list[str]) -> None:
    """Refuse tasks that wait, through cascades, for their own completion.

    A depth-first search with its own stack, so that chains of any length
    are checked without recursion.
    """
    done: set[str] = set()
    for start in new_tasks:
        if start in done:
            continue
        path = [start]
        on_path = {start}
        pending = [iter(_waited_tasks(after_by_task, start))]
        while pending:
            trigger = next(pending[-1], None)
            if trigger is None:
                pending.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if trigger in done:
                continue
            if trigger in on_path:
                cycle = [*path[path.index(trigger) :], trigger]
                task = path[-1]
                raise ConfigurationError(
                    f"tasks wait for each other's cascades in a cycle: {' -> '.join(cycle)}",
                    task=task if task in new_tasks else new_tasks[0],
                    directive=AFTER,
                )
            path.append(trigger)
            on_path.add(trigger)
            pending.append(iter(_waited_tasks(after_by_task, trigger)))


def _waited_tasks(after_by_task: Mapping[str, set[str]], task: str) -> list[str]:
    """The configured tasks whose cascade ``task`` waits for, in a stable order."""
    return [name for name in sorted(after_by_task.get(task, ())) if name in after_by_task]
