"""The PostgreSQL store: a fire in two statements, a worker's start and finish in one each.

Every web request that fires a trigger pays for a fire, so it reads without
the session's lock (``read_for_fire``) and writes everything in one
statement that checks nothing it read has changed (``write_fire``). A
worker moves its instance to ``running`` in one statement, and finishes it
in its cascade's write.

The statements are in ``postgres.sql``, beside this module, each named and
commented; they are read once, and run as written. Rows go in as JSON
documents prepared from the model instances (``row_document``) and come
back as JSON objects turned into model instances (``from_document``).
Changes made under the session's lock (replays, skips, recovery, the
admin) are the ORM store's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from django.apps import apps
from django.db import connections
from django.db.models import DateTimeField, JSONField, Model

from django_triggers.models import FiredTrigger, TaskConfig, TaskInstance, TriggerSession

if TYPE_CHECKING:
    from django.db.models import Field
from django_triggers.stores.base import (
    INSTANCE_UPDATE_FIELDS,
    Finishing,
    FireState,
    Started,
    Upsert,
)
from django_triggers.stores.orm import OrmStore

SQL_FILE = Path(__file__).with_name("postgres.sql")

M = TypeVar("M", bound=Model)

#: The columns of django-celery-results' ``TaskResult`` that ``write_fire``
#: writes (the primary key aside). Where the installed version has others,
#: the portable store serves PostgreSQL instead.
CELERY_RESULT_COLUMNS = frozenset(
    {
        "task_id",
        "periodic_task_name",
        "task_name",
        "task_args",
        "task_kwargs",
        "status",
        "worker",
        "content_type",
        "content_encoding",
        "result",
        "date_created",
        "date_started",
        "date_done",
        "traceback",
        "meta",
    }
)


def load_statements(path: Path) -> Mapping[str, str]:
    """The statements of an SQL file, by name: each follows a ``-- name: <name>`` line.

    Comment lines, indentation and the final semicolon are dropped, nothing
    else: psycopg keeps how it rewrites the placeholders of statements of up
    to 4,096 bytes.
    """
    statements: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("-- name:"):
            name = stripped.removeprefix("-- name:").strip()
            if name in statements:
                raise ValueError(f"{path.name} names two statements {name!r}")
            current = statements[name] = []
        elif current is not None and stripped and not stripped.startswith("--"):
            current.append(stripped)
    return MappingProxyType(
        {name: "\n".join(lines).rstrip().removesuffix(";") for name, lines in statements.items()}
    )


STATEMENTS = load_statements(SQL_FILE)


def celery_results_fit() -> bool:
    """Whether ``write_fire`` can write django-celery-results' rows as installed here."""
    if not apps.is_installed("django_celery_results"):
        return False
    from django_celery_results.models import TaskResult

    columns = {f.column for f in TaskResult._meta.concrete_fields if not f.primary_key}
    return columns == CELERY_RESULT_COLUMNS


class PostgresStore(OrmStore):
    """The database verbs of the rules, those of a fire and a worker in ``postgres.sql``."""

    fires_without_lock: ClassVar[bool] = True

    def _run(self, name: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows statement ``name`` returns."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(STATEMENTS[name], params)
            return cursor.fetchall()

    def lock_session(self, session_id: int, *, bump: bool = True) -> bool:
        name = "lock_session_and_move_version" if bump else "lock_session"
        return bool(self._run(name, {"session": session_id}))

    def read_for_fire(self, session_id: int, trigger_name: str) -> FireState:
        return self._fire_state(
            self._run("read_for_fire", {"session": session_id, "trigger": trigger_name})
        )

    def _fire_state(self, rows: Iterable[Sequence[Any]]) -> FireState:
        """What a fire read, from the rows of ``fire_read`` (see ``postgres.sql``)."""
        state = FireState(manager_class="")
        configs: dict[int, TaskConfig] = {}
        for (
            kind,
            manager_class,
            version,
            config_id,
            config,
            may_create,
            highest_number,
            _instance_number,
            instance,
            trigger,
            kwargs,
        ) in rows:
            if kind == "k":
                if kwargs is not None:  # None: never fired
                    state.latest_kwargs[trigger] = json.loads(kwargs)
                continue
            state.manager_class, state.version = manager_class, version
            if config_id is None:
                continue  # no task listens to the trigger
            if config_id not in configs:
                configs[config_id] = self.from_document(TaskConfig, config)
                state.configs.append(configs[config_id])
                state.next_numbers[config_id] = (
                    None if not may_create else 0 if highest_number is None else highest_number + 1
                )
            if instance is not None:
                open_instance = self.from_document(TaskInstance, instance)
                open_instance.config = configs[config_id]
                state.open_instances[config_id].append(open_instance)
        return state

    def write_fire(
        self,
        created: Sequence[TaskInstance],
        touched: Sequence[TaskInstance],
        fired: FiredTrigger,
        state: FireState,
        finishing: Finishing | None = None,
    ) -> bool:
        params: dict[str, Any] = {
            "session_version": state.version,
            "configs": json.dumps(
                [
                    {"id": config.pk, "version": config.version}
                    for config in sorted(state.configs, key=lambda config: config.pk)
                ]
            ),
            **self._insert_values(fired),
            "created": documents(row_document(instance, adding=True) for instance in created),
            "touched": documents(
                row_document(instance, names=("id", *INSTANCE_UPDATE_FIELDS))
                for instance in touched
            ),
        }
        if finishing is None:
            [(fired_id, created_ids)] = self._run("write_fire", params)
        else:
            params.update(
                finishing=finishing.pk,
                result=self._prepared(TaskInstance, "result", finishing.result),
                now=finishing.when,
                now_iso=finishing.when.isoformat(),
                celery_result=self._celery_result_document(finishing.celery_result),
            )
            [(fired_id, created_ids)] = self._run("finish_and_fire", params)
        if fired_id is None:
            return False
        fired.pk = fired_id
        ids = dict((name, pk) for pk, name in json.loads(created_ids or "[]"))
        for instance in created:
            instance.pk = ids[instance.name]
        for obj in (*created, fired):
            obj._state.adding = False
            obj._state.db = self.using
        return True

    def _insert_values(self, obj: Model) -> dict[str, Any]:
        """The values of ``obj``'s columns but its key, as ``Model.save`` inserts them."""
        connection = connections[self.using]
        values = {}
        for field in obj._meta.concrete_fields:
            if not field.primary_key:
                value = field.pre_save(obj, True)
                setattr(obj, field.attname, value)
                values[str(field.column)] = field.get_db_prep_save(value, connection)
        return values

    def _prepared(self, model: type[Model], name: str, value: Any) -> Any:
        """``value`` as the ORM passes it to the database for the model's field ``name``."""
        field = model._meta.get_field(name)
        return field.get_db_prep_save(value, connections[self.using])  # type: ignore[union-attr]

    @staticmethod
    def _celery_result_document(change: Upsert | None) -> str:
        """The JSON array of the Celery result row to write: none, or one."""
        if change is None:
            return "[]"
        if not (change.key == "task_id" and set(change.kept) == {"date_created", "date_started"}):
            raise ValueError(f"write_fire writes Celery's TaskResult rows only, not {change!r}")
        return documents([row_document(change.row, adding=True)])

    def lock_instance(self, session_id: int, name: str) -> TaskInstance | None:
        rows = self._run("lock_instance", {"session": session_id, "name": name})
        return self._instance_with_config(*rows[0]) if rows else None

    def transition(
        self, session_id: int, name: str, old: str, new: str, when: datetime
    ) -> TaskInstance | None:
        params = {
            "session": session_id,
            "name": name,
            "old": old,
            "new": new,
            "when": when,
            "when_iso": when.isoformat(),
        }
        rows = self._run("move_instance", params)
        return self._instance_with_config(*rows[0]) if rows else None

    def start_by_uid(self, session_uid: str, name: str, when: datetime) -> Started | None:
        params = {
            "session_uid": session_uid,
            "name": name,
            "when": when,
            "when_iso": when.isoformat(),
        }
        rows = self._run("start_instance", params)
        if not rows:
            return None
        session, instance, config = rows[0][:3]
        return Started(
            self.from_document(TriggerSession, session),
            self._instance_with_config(instance, config),
            self._fire_state(row[3:] for row in rows),
        )

    def _instance_with_config(self, instance: str, config: str) -> TaskInstance:
        loaded = self.from_document(TaskInstance, instance)
        loaded.config = self.from_document(TaskConfig, config)
        return loaded

    def from_document(self, model: type[M], document: str) -> M:
        """A model instance from a row as ``to_jsonb`` or ``jsonb_build_object`` gives it.

        Built as the ORM builds what it reads; the fields the document
        leaves out are deferred.
        """
        values = json.loads(document)
        present = [
            (attname, load(values[column]))
            for attname, column, load in _loaders(model)
            if column in values
        ]
        return model.from_db(
            self.using, [attname for attname, _ in present], [value for _, value in present]
        )


def row_document(obj: Model, *, adding: bool = False, names: Iterable[str] | None = None) -> str:
    """The JSON object of ``obj``'s columns (its fields ``names``, or all but the key) to write.

    Each value is as ``Model.save`` would write it: ``pre_save`` first when
    ``adding`` (``auto_now_add`` and the like, set on ``obj`` too), JSON
    values through their field's encoder, times in ISO 8601 with their
    offset and every microsecond.
    """
    plain: dict[str, Any] = {}
    members = []
    for field, column, encode in _writers(type(obj), None if names is None else tuple(names)):
        if adding:
            value = field.pre_save(obj, True)
            setattr(obj, field.attname, value)
        else:
            value = getattr(obj, field.attname)
        if encode is not None:
            members.append(f"{_PLAIN.encode(column)}:{encode(value)}")
        elif isinstance(value, datetime):
            plain[column] = value.isoformat()
        else:
            plain[column] = value
    if plain:
        members.append(_PLAIN.encode(plain)[1:-1])
    return "{" + ",".join(members) + "}"


#: How values that are not JSON fields' are written into a row document.
_PLAIN = json.JSONEncoder(separators=(",", ":"))


@cache
def _writers(
    model: type[Model], names: tuple[str, ...] | None
) -> tuple[tuple[Field[Any, Any], str, Callable[[Any], str] | None], ...]:
    """``(field, column, its JSON encoder's encode or None)`` of the fields ``names``
    (all but the key by default)."""
    fields = (
        [model._meta.get_field(name) for name in names]
        if names is not None
        else [f for f in model._meta.concrete_fields if not f.primary_key]
    )
    return tuple(
        (
            cast("Field[Any, Any]", field),
            str(cast("Field[Any, Any]", field).column),
            (field.encoder or json.JSONEncoder)(separators=(",", ":")).encode
            if isinstance(field, JSONField)
            else None,
        )
        for field in fields
    )


def documents(rows: Iterable[str]) -> str:
    """A JSON array of row documents."""
    return "[" + ",".join(rows) + "]"


def _parse_datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _unchanged(value: Any) -> Any:
    return value


@cache
def _loaders(model: type[Model]) -> tuple[tuple[str, str, Any], ...]:
    """``(attname, column, how to load its JSON value)`` of the model's columns, in order."""
    return tuple(
        (f.attname, str(f.column), _parse_datetime if isinstance(f, DateTimeField) else _unchanged)
        for f in model._meta.concrete_fields
    )
