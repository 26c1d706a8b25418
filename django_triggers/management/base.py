"""What the ``triggers_*`` management commands share, and the admin reuses.

Finding a session's manager without creating a session by mistake, reading
JSON from options, files and admin forms, and reporting the manager's
refusals as :class:`~django.core.management.base.CommandError` (a message and
a non-zero exit status) rather than as tracebacks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser, OutputWrapper
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DataError
from django.utils.translation import gettext

from django_triggers import encoding
from django_triggers.exceptions import ManagerClassError, SessionNotFound
from django_triggers.manager import TriggerManager
from django_triggers.routers import databases_to_sweep
from django_triggers.runners import ThreadingTaskRunner

#: What a change refused before anything was kept raises: the manager's own
#: refusals (``LookupError`` for what does not exist, ``ValueError`` and
#: ``TypeError`` for values it cannot store), and, as a last line of defence,
#: the database's refusal of a value and Python's of one nested too deeply
#: to encode. See :func:`manager_errors` and :func:`describe_refusal`.
MANAGER_ERRORS = (LookupError, ValueError, TypeError, DataError, RecursionError)

#: A JSON string, or a bracket outside of one (to measure how deep a text nests).
_JSON_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class InvalidJSON(ValueError):
    """JSON text given by a user that cannot be used; the message says why and where."""


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
    check_name_argument(session_uid, "the session uid")
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


def add_database_argument(parser: CommandParser) -> None:
    """The ``--database`` option of the commands that sweep sessions."""
    parser.add_argument(
        "--database",
        metavar="ALIAS",
        help="Only the sessions in this database (default: every database holding sessions).",
    )


def selected_databases(alias: str | None) -> list[str] | None:
    """The databases ``--database`` limits a sweep to (``None``: all of them).

    An alias that does not exist, or holds no sessions, is an error naming it.
    """
    if alias is None:
        return None
    try:
        return databases_to_sweep([alias])
    except ValueError as exc:
        raise CommandError(f"--database: {exc}") from None


def check_name_argument(value: str, what: str) -> str:
    """``value``, a name given on the command line, if a database can look it up.

    A lone surrogate is what bytes that are not UTF-8 in an argument decode to.
    """
    problem = encoding.text_problem(value)
    if problem is not None:
        raise CommandError(f"{what} {value[:80]!r} {problem}")
    return value


@contextmanager
def manager_errors(prefix: str = "") -> Iterator[None]:
    """Report what the manager refuses as a ``CommandError``.

    The manager raises ``LookupError`` for unknown instances, ``ValueError``
    for a wrong status, an invalid configuration or a value it cannot store,
    and ``TypeError`` for arguments of the wrong shape; each names what is
    wrong, and each leaves the database as it was (see :data:`MANAGER_ERRORS`).
    """
    try:
        yield
    except MANAGER_ERRORS as exc:
        raise CommandError(f"{prefix}{describe_refusal(exc)}") from exc


def describe_refusal(exc: BaseException) -> str:
    """What to tell a user about a refused change (one of :data:`MANAGER_ERRORS`)."""
    if isinstance(exc, DataError):
        return gettext("the database refused a value: %(error)s") % {"error": exc}
    if isinstance(exc, RecursionError):
        return gettext("a value is nested too deeply to be stored")
    return str(exc)


def load_json(text: str, what: str) -> Any:
    """The value of ``text``, JSON given by a user: an option, a file, a form field.

    Unlike :func:`json.loads`, refuses an object naming a key twice, where
    JSON would silently keep the last one (a configuration naming a task
    twice would lose the first), and reports text nested too deeply to parse
    instead of raising ``RecursionError``. Raises :class:`InvalidJSON` with a
    message starting with ``what``. NaN and infinities are let through: the
    manager refuses them, naming where they are.
    """
    repeated = False

    def object_from_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        obj = dict(pairs)
        if len(obj) < len(pairs):
            repeated = True
            obj = _ObjectWithRepeatedKey(obj, _first_repeated_key(pairs))
        return obj

    try:
        value = json.loads(text, object_pairs_hook=object_from_pairs)
    except RecursionError:
        raise InvalidJSON(
            gettext(
                "%(what)s is nested deeper than can be read: %(depth)d levels of arrays and objects"
            )
            % {"what": what, "depth": _nesting_depth(text)}
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidJSON(
            gettext("%(what)s is not valid JSON: %(error)s") % {"what": what, "error": exc}
        ) from None
    if repeated:
        path, key = _find_repeated_key(value)
        where = (
            gettext("in the object at %(path)s") % {"path": _shortened_path(path)}
            if path
            else gettext("in the top-level object")
        )
        raise InvalidJSON(
            gettext("%(what)s names the key %(key)s twice %(where)s; keys must be unique")
            % {"what": what, "key": _shortened_repr(key), "where": where}
        )
    return value


class _ObjectWithRepeatedKey(dict[str, Any]):
    """A parsed JSON object that named ``repeated_key`` more than once."""

    def __init__(self, items: dict[str, Any], repeated_key: str):
        super().__init__(items)
        self.repeated_key = repeated_key


def _first_repeated_key(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    raise AssertionError("no repeated key")  # pragma: no cover - only called with one


def _find_repeated_key(value: Any) -> tuple[str, str]:
    """The path of the first object, in document order, naming a key twice, and the key.

    Walks with its own stack: the value may be nested as deep as the parser goes.
    """
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, _ObjectWithRepeatedKey):
            return path, node.repeated_key
        if isinstance(node, dict):
            children = [(f"{path}.{key}" if path else key, item) for key, item in node.items()]
        elif isinstance(node, list):
            children = [(f"{path}[{index}]", item) for index, item in enumerate(node)]
        else:
            continue
        stack.extend(reversed(children))
    raise AssertionError("no object with a repeated key")  # pragma: no cover


def _nesting_depth(text: str) -> int:
    """How deep the arrays and objects of JSON ``text`` nest, without parsing it."""
    depth = deepest = 0
    for token in _JSON_STRING_OR_BRACKET.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _shortened_repr(text: str, limit: int = 80) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}..."


def _shortened_path(path: str, limit: int = 120) -> str:
    """A key path, cut at its start when long: its end says where the key is."""
    return path if len(path) <= limit else f"...{path[-limit:]}"


def parse_json(text: str, what: str) -> Any:
    """The value of JSON ``text`` given in an option or a file (see :func:`load_json`)."""
    try:
        return load_json(text, what)
    except InvalidJSON as exc:
        raise CommandError(str(exc)) from None


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    """Parse ``text`` as a JSON object (kwargs, results, configurations are objects)."""
    return require_object(parse_json(text, what), what)


def read_json_file(path: str, what: str) -> dict[str, Any]:
    """The JSON object in the file at ``path`` (UTF-8, with or without a byte order mark)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CommandError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"{what} {path!r} is not UTF-8 text: {exc}") from None
    return parse_json_object(text, f"{what} {path!r}")


def require_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CommandError(f"{what} must be a JSON object, not {json_type(value)}")
    return value


def json_type(value: Any) -> str:
    """What kind of JSON value ``value`` is, for messages: "an array", "null"..."""
    if value is None:
        return gettext("null")
    if isinstance(value, bool):
        return gettext("a boolean")
    if isinstance(value, int | float):
        return gettext("a number")
    if isinstance(value, str):
        return gettext("a string")
    if isinstance(value, dict):
        return gettext("an object")
    return gettext("an array")


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
