"""What the ``triggers_*`` management commands share.

Finding a session's manager without creating a session by mistake, reading
JSON from options and files, and reporting the manager's refusals as
:class:`~django.core.management.base.CommandError` (a message and a non-zero
exit status) rather than as tracebacks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, OutputWrapper
from django.core.serializers.json import DjangoJSONEncoder

from django_triggers.exceptions import ManagerClassError, SessionNotFound
from django_triggers.manager import TriggerManager
from django_triggers.runners import ThreadingTaskRunner

#: What the manager raises when it refuses a change; see :func:`manager_errors`.
MANAGER_ERRORS = (LookupError, ValueError, TypeError)


def get_manager(
    session_uid: str,
    *,
    create: bool = False,
    offer_create: bool = False,
    read_only: bool = False,
) -> TriggerManager:
    """The manager of a session, of the class recorded on the session.

    An unknown uid is an error unless ``create`` is true, so that a mistyped
    uid never creates an empty session; ``offer_create`` points the error at
    the command's ``--create`` option. Changes go through the session's own
    manager class, so that its hooks run and its workers keep rebuilding that
    class; a command that only reads falls back to :class:`TriggerManager`
    when that class cannot be imported here (``read_only``).
    """
    try:
        try:
            return TriggerManager.for_existing_session(session_uid)
        except ManagerClassError as exc:
            if not read_only:
                raise CommandError(str(exc)) from None
            return TriggerManager(session_uid)
        except SessionNotFound as exc:
            if create:
                return TriggerManager(session_uid)
            hint = " (use --create to create it)" if offer_create else ""
            raise CommandError(f"{exc}{hint}") from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None


@contextmanager
def manager_errors(prefix: str = "") -> Iterator[None]:
    """Report what the manager refuses as a ``CommandError``.

    The manager raises ``LookupError`` for unknown instances, ``ValueError``
    for a wrong status, an invalid configuration or an unencodable value, and
    ``TypeError`` for arguments of the wrong shape; each names what is wrong,
    and each leaves the database as it was.
    """
    try:
        yield
    except MANAGER_ERRORS as exc:
        raise CommandError(f"{prefix}{exc}") from exc


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{what} is not valid JSON: {exc}") from None


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    """Parse ``text`` as a JSON object (kwargs, results, configurations are objects)."""
    return require_object(parse_json(text, what), what)


def read_json_file(path: str, what: str) -> dict[str, Any]:
    """The JSON object in the file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"{what} {path!r} is not UTF-8 text: {exc}") from None
    return parse_json_object(text, f"{what} {path!r}")


def require_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CommandError(f"{what} must be a JSON object, not {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"


def check_batch_size(batch_size: int) -> int:
    if batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, not {batch_size}")
    return batch_size


def write_json(stream: OutputWrapper, data: Any) -> None:
    stream.write(json.dumps(data, indent=2, cls=DjangoJSONEncoder))


def wait_for_task_threads() -> None:
    """Let instances handed to the ``threading`` runner finish before the process exits.

    That runner runs them in daemon threads of this process, which would be
    cut off mid-task, leaving their instances ``running``. Other runners
    start no threads here, so this returns at once.
    """
    ThreadingTaskRunner.join_all()
