"""What can be stored: names, JSON values and diagnostics, checked before any write.

Every value the library writes passes through here first, so a value that a
database would refuse, or store differently from another database, is refused
with an error naming where it is, before anything is written:

* names (session uids, trigger and task names, event ids) are non-empty
  strings that fit their column;
* no text holds a NUL character (PostgreSQL refuses it in text and in
  ``jsonb``) or a lone surrogate (it cannot be encoded as UTF-8);
* JSON values are nested at most :data:`MAX_DEPTH` levels, hold no NaN or
  infinity, and have no two keys that JSON would write alike (``1`` and
  ``"1"``).

Values are encoded once with Django's JSON encoder and decoded again, so what
a task reads back is exactly what was checked (dates, decimals and UUIDs
become strings). Diagnostics (a failure's message, traceback and context)
are never refused: :func:`jsonable` and :func:`sanitize_text` make them
storable instead.
"""

from __future__ import annotations

import json
import math
import re
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from django_triggers.exceptions import UnencodableValue

#: How deep JSON values (kwargs, results, params, metadata) may be nested:
#: MariaDB's JSON columns hold 32 levels, and the library stores values
#: inside up to two levels of its own (an instance's kwargs by trigger, a
#: failure's context in its metadata).
MAX_DEPTH = 30

#: Characters no stored text may hold: NUL, and the surrogates, which are
#: valid in a Python string only when unpaired, and then not encodable.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

_CONTAINERS = (Mapping, list, tuple)
#: What :func:`_walk` visits: containers, and strings (their text is checked).
_VISITED = (*_CONTAINERS, str)


def dumps(value: Any) -> str:
    # allow_nan=False: PostgreSQL's jsonb rejects NaN and infinities.
    return json.dumps(value, cls=DjangoJSONEncoder, allow_nan=False)


def check_name(value: Any, *, what: str, max_length: int) -> str:
    """``value`` if it is a storable name: a non-empty string of at most ``max_length``."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, not {value!r}")
    if len(value) > max_length:
        raise ValueError(
            f"{what} {value[:40]!r}... is {len(value)} characters long; the limit is {max_length}"
        )
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"{what} {value[:80]!r} {problem}")
    return value


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or ``None`` if it can."""
    if text.isascii() and "\x00" not in text:
        return None
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "holds a NUL character (U+0000), which databases cannot store"
    return f"holds a lone surrogate (U+{ord(char):04X}), which cannot be encoded as UTF-8"


def normalize(value: Any, *, what: str) -> Any:
    """Return ``value`` as plain JSON types, or raise naming the offending key path."""
    _check_shape(value, what)
    try:
        normalized = json.loads(dumps(value))
    except (TypeError, ValueError) as exc:
        path = _find_unencodable(value) or ""
        raise _refusal(what, path, f"is not encodable ({exc})") from exc
    for path, node in _walk(normalized):
        if isinstance(node, str):
            problem = text_problem(node)
            if problem is not None:
                raise _refusal(what, path, problem)
        elif isinstance(node, dict):
            for key in node:
                problem = text_problem(key)
                if problem is not None:
                    raise _refusal(what, path, f"has a key {key[:40]!r} that {problem}")
    return normalized


def normalize_mapping(value: Any, *, what: str) -> dict[str, Any]:
    """``normalize`` for values that must be a mapping; ``None`` stands for ``{}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping, not {type(value).__name__}")
    result: dict[str, Any] = normalize(value, what=what)
    return result


def _refusal(what: str, path: str, problem: str) -> UnencodableValue:
    shown = f"the value at {path}" if path else "the value"
    return UnencodableValue(f"{what} cannot be stored: {shown} {problem}", path=path)


def _check_shape(value: Any, what: str) -> None:
    """Refuse values nested too deep (or in a cycle) and keys that JSON would merge."""
    for path, node in _walk(value, limit=MAX_DEPTH):
        if path is _TOO_DEEP:
            raise UnencodableValue(
                f"{what} cannot be stored: it is nested deeper than {MAX_DEPTH} levels "
                f"(or contains itself)",
                path="",
            )
        if isinstance(node, Mapping) and not all(type(key) is str for key in node):
            seen: dict[str, Any] = {}
            for key in node:
                if not isinstance(key, str | int | float | bool) and key is not None:
                    raise _refusal(
                        what,
                        _join(path, repr(key)),
                        f"has a key of type {type(key).__name__}, which JSON cannot write",
                    )
                written = _json_key(key)
                if written in seen:
                    raise _refusal(
                        what,
                        path,
                        f"has keys {seen[written]!r} and {key!r}, which JSON writes alike "
                        f"({written!r}); only one of them could be kept",
                    )
                seen[written] = key


def _json_key(key: str | float | None) -> str:
    """The text JSON writes for a mapping key (as :mod:`json` does)."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    return int.__repr__(key) if isinstance(key, int) else float.__repr__(key)


#: The path :func:`_walk` yields for a node past its depth limit.
_TOO_DEEP = "<too deep>"


def _walk(value: Any, *, limit: int | None = None) -> Iterator[tuple[str, Any]]:
    """Every node of a JSON-like value with its key path, without recursion.

    Levels are counted in containers (mappings, lists): past ``limit`` of
    them, yields ``(_TOO_DEEP, node)`` once and stops.
    """
    stack: list[tuple[str, Any, int]] = [("", value, 1)]
    while stack:
        path, node, depth = stack.pop()
        if limit is not None and depth > limit and isinstance(node, _CONTAINERS):
            yield _TOO_DEEP, node
            return
        yield path, node
        if isinstance(node, Mapping):
            stack.extend(
                (_join(path, str(key)), item, depth + 1)
                for key, item in reversed(list(node.items()))
                if isinstance(item, _VISITED)
            )
        elif isinstance(node, list | tuple):
            stack.extend(
                (f"{path}[{index}]", item, depth + 1)
                for index, item in reversed(list(enumerate(node)))
                if isinstance(item, _VISITED)
            )


def _find_unencodable(value: Any) -> str | None:
    """The key path of the first value inside ``value`` that cannot be encoded."""
    for path, node in _walk(value):
        if isinstance(node, Mapping):
            for key, item in node.items():
                if not isinstance(item, _CONTAINERS) and not _encodes(item):
                    return _join(path, str(key))
        elif isinstance(node, list | tuple):
            for index, item in enumerate(node):
                if not isinstance(item, _CONTAINERS) and not _encodes(item):
                    return f"{path}[{index}]"
    return None


def _encodes(value: Any) -> bool:
    try:
        dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``; nested mappings merge, other values win."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


# -- diagnostics ------------------------------------------------------------------


def sanitize_text(text: str) -> str:
    """``text`` made storable: NUL written ``\\x00``, a lone surrogate as its escape."""
    if text_problem(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def safe_str(value: object) -> str:
    """``str(value)`` made storable, even when the object's ``__str__`` raises."""
    try:
        text = str(value)
    except Exception:
        text = f"<{type(value).__name__} object: str() failed>"
    return sanitize_text(text)


def jsonable(value: Any, _depth: int = 1) -> Any:
    """``value`` as storable JSON, never refused: for diagnostics (exception context).

    Anything un-encodable becomes its ``repr``, text is sanitised
    (:func:`sanitize_text`), and what is nested deeper than :data:`MAX_DEPTH`
    becomes a note saying so: losing the context of a failure is worse than
    storing its text.
    """
    if isinstance(value, str):
        return sanitize_text(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if _depth > MAX_DEPTH and isinstance(value, Mapping | list | tuple | set | frozenset):
        return f"<nested deeper than {MAX_DEPTH} levels>"
    if isinstance(value, Mapping):
        return {safe_str(key): jsonable(item, _depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item, _depth + 1) for item in value]
    try:
        encoded = json.loads(dumps(value))
    except Exception:
        try:
            return sanitize_text(repr(value))
        except Exception:
            return f"<{type(value).__name__} object: repr() failed>"
    return jsonable(encoded, _depth)


def describe_exception(exc: BaseException) -> dict[str, Any]:
    """The metadata a failed instance keeps about the exception that failed it.

    Always storable: text is sanitised and the context made JSON (see
    :func:`jsonable`), so recording a failure cannot
    fail on what the exception holds.
    """
    exc_type = type(exc)
    try:
        formatted = "".join(traceback.format_exception(exc))
    except Exception:  # a broken exception object: keep what can be read
        formatted = f"{exc_type.__qualname__}: <traceback could not be formatted>"
    return {
        "exception_type": sanitize_text(f"{exc_type.__module__}.{exc_type.__qualname__}"),
        "exception_message": safe_str(exc),
        "traceback": sanitize_text(formatted),
        "exception_context": jsonable(getattr(exc, "context", None) or {}),
    }
