"""JSON normalisation of everything stored: kwargs, results, params, metadata.

Values are encoded once with Django's JSON encoder and decoded again, so what
a task reads back from the database is exactly what was checked at fire time
(dates, decimals and UUIDs become strings), and nothing un-encodable is ever
half-written.
"""

import json
from collections.abc import Mapping
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from django_triggers.exceptions import UnencodableValue


def dumps(value: Any) -> str:
    # allow_nan=False: PostgreSQL's jsonb rejects NaN and infinities.
    return json.dumps(value, cls=DjangoJSONEncoder, allow_nan=False)


def normalize(value: Any, *, what: str) -> Any:
    """Return ``value`` as plain JSON types, or raise naming the offending key path."""
    try:
        return json.loads(dumps(value))
    except (TypeError, ValueError) as exc:
        path = _find_unencodable(value, "") or ""
        shown = path or "the top level"
        raise UnencodableValue(
            f"{what} cannot be stored as JSON: the value at {shown} is not encodable ({exc})",
            path=path,
        ) from exc


def normalize_mapping(value: Any, *, what: str) -> dict[str, Any]:
    """``normalize`` for values that must be a mapping; ``None`` stands for ``{}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping, not {type(value).__name__}")
    result: dict[str, Any] = normalize(value, what=what)
    return result


def _find_unencodable(value: Any, path: str) -> str | None:
    """The key path of the first value inside ``value`` that cannot be encoded."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return _join(path, repr(key))
            found = _find_unencodable(item, _join(path, str(key)))
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _find_unencodable(item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    try:
        dumps(value)
    except (TypeError, ValueError):
        return path
    return None


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


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types, with anything un-encodable replaced by its ``repr``.

    For diagnostics (exception context), where losing a value is worse than
    storing its text.
    """
    try:
        return normalize(value, what="value")
    except UnencodableValue:
        pass
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    return repr(value)
