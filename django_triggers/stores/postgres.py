"""The PostgreSQL store: a fire's statements, written by hand because a fire is the hot path.

Every web request that fires a trigger pays for these, so they are few and
cheap: one read of just the tasks listening to the trigger (with their open
instances and next instance numbers), without a lock, then one write, a
single statement of data-modifying CTEs that writes only if no change to
what was read committed in between (see ``write_fire``). A worker starts an
instance in one statement and finishes it with its cascade in another.
Values are prepared as each field's own ``get_db_prep_save`` prepares them
(see ``_preparer``), and rows are read back with the ORM's converters, so
what is stored and read is exactly what the ORM would store and read.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cache, partial
from itertools import compress
from typing import TYPE_CHECKING, Any, ClassVar, cast
from weakref import WeakKeyDictionary

from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import CharField, Model
from django.db.models.base import ModelState
from django.db.models.expressions import Col
from django.db.models.signals import post_init, pre_init
from django.utils import timezone

from django_triggers.models import (
    FiredTrigger,
    TaskConfig,
    TaskInstance,
    TaskListener,
    TriggerSession,
)
from django_triggers.stores.base import (
    INSTANCE_UPDATE_FIELDS,
    Finishing,
    FireState,
    Started,
    Upsert,
)
from django_triggers.stores.orm import OrmStore

if TYPE_CHECKING:
    from django.db.models import Field, ForeignObjectRel

#: Columns of the configurations a fire needs.
CONFIG_FIELDS = (
    "id",
    "name",
    "after",
    "and_every",
    "unless",
    "run",
    "using",
    "within",
    "version",
)
#: Columns of the open instances a fire needs (others load on access).
INSTANCE_FIELDS = (
    "id",
    "name",
    "task_name",
    "number",
    "status",
    "kwargs",
    "unless_fired",
    "metadata",
    "celery_task_id",
)
#: Columns of a row of a fire's read after its tag: the session's manager
#: class and version, a config, whether the fire may create an instance of
#: it and its highest instance number, an instance, and a trigger with its
#: latest kwargs (see ``_build_read_sql``).
READ_WIDTH = 2 + len(CONFIG_FIELDS) + 2 + len(INSTANCE_FIELDS) + 2


def lock_session(using: str, session_id: int, *, bump: bool = True) -> bool:
    """Take the session row's lock, in a statement of its own; ``False`` if there is no such row.

    The reads that follow must be separate statements: under READ COMMITTED a
    statement that waited for the lock still sees the database as it was when
    it started, without what the previous holder committed meanwhile. With
    ``bump``, the statement also moves the session's version on, telling
    fires that read without the lock that their read is stale; a fire leaves
    that to its write. On SQLite the transaction already holds the
    database's write lock.
    """
    connection = connections[using]
    with _cursor(connection) as cursor:
        if bump:
            cursor.execute(_cached("lock_bump", connection, _build_lock_bump_sql), [session_id])
            return bool(cursor.rowcount == 1)
        cursor.execute(_cached("lock", connection, _build_lock_sql), [session_id])
        return cursor.fetchone() is not None


def read_for_fire(using: str, session_id: int, trigger_name: str) -> FireState:
    """The configs listening to the trigger, their open instances and the latest kwargs."""
    connection = connections[using]
    sql = _cached(
        "read",
        connection,
        partial(_build_read_sql, session="%(session)s", trigger="%(trigger)s"),
    )
    with _cursor(connection) as cursor:
        cursor.execute(sql, {"session": session_id, "trigger": trigger_name})
        rows = cursor.fetchall()
    return _fire_state(connection, session_id, rows)


def _fire_state(
    connection: BaseDatabaseWrapper, session_id: int, rows: Iterable[Sequence[Any]]
) -> FireState:
    """The state of a fire from the rows of the read (see ``_build_read_sql``)."""
    state = FireState(manager_class="")
    seen_configs: dict[int, TaskConfig] = {}
    seen_instances: set[int] = set()
    width = len(CONFIG_FIELDS)
    for row in rows:
        if row[0] == "k":
            if row[-1] is not None:  # None: never fired
                state.latest_kwargs[row[-2]] = _json(row[-1])
            continue
        state.manager_class, state.version = row[1], row[2]
        config_values = row[3 : 3 + width]
        if config_values[0] is None:
            continue
        config = seen_configs.get(config_values[0])
        if config is None:
            config = _from_db(TaskConfig, connection, CONFIG_FIELDS, config_values)
            config.session_id = session_id
            seen_configs[config.id] = config
            state.configs.append(config)
            may_create, max_number = row[3 + width], row[4 + width]
            state.next_numbers[config.id] = (
                None if not may_create else 0 if max_number is None else max_number + 1
            )
        instance_values = row[5 + width : -2]
        if instance_values[0] is not None and instance_values[0] not in seen_instances:
            seen_instances.add(instance_values[0])
            instance = _from_db(TaskInstance, connection, INSTANCE_FIELDS, instance_values)
            instance.session_id = session_id
            instance.config_id = config.id
            instance.config = config
            state.open_instances[config.id].append(instance)
    return state


def lock_instance(using: str, session_id: int, name: str) -> TaskInstance | None:
    """The session's instance ``name`` with its config, its row locked; ``None`` if absent."""
    connection = connections[using]
    with _cursor(connection) as cursor:
        cursor.execute(
            _cached("lock_instance", connection, _build_lock_instance_sql), [session_id, name]
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return _instance_with_config(connection, row)


@cache
def _attnames(model: type[Model]) -> tuple[str, ...]:
    """The attribute names of the model's columns, in field order."""
    return tuple(f.attname for f in model._meta.concrete_fields)


def _instance_with_config(connection: BaseDatabaseWrapper, row: Sequence[Any]) -> TaskInstance:
    """An instance and its config from a row of all their columns, in field order."""
    instance_names = _attnames(TaskInstance)
    config_names = _attnames(TaskConfig)
    instance = _from_db(TaskInstance, connection, instance_names, row[: len(instance_names)])
    instance.config = _from_db(TaskConfig, connection, config_names, row[len(instance_names) :])
    return cast(TaskInstance, instance)


def transition_instance(
    using: str, session_id: int, name: str, old: str, new: str, when: datetime
) -> TaskInstance | None:
    """PostgreSQL: move instance ``name`` from ``old`` to ``new`` in one statement.

    One round trip instead of a locking read and a write (and their own
    BEGIN and COMMIT). Stamps the instance as ``TriggerManager._set_status``
    does and returns it as updated, with its config. ``None`` if it is not
    ``old`` (or absent), and on other databases: the caller then locks the
    instance and checks.
    """
    connection = connections[using]
    sql = _cached("transition", connection, _build_transition_sql)
    params = [*_status_params(connection, new, when, {}), session_id, name, old]
    with _cursor(connection) as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else _instance_with_config(connection, row)


def start_by_uid(using: str, session_uid: str, name: str, when: datetime) -> Started | None:
    """PostgreSQL: move instance ``name`` of session ``session_uid`` from ``scheduled`` to
    ``running`` in one statement, which also reads its session and what its cascade needs.

    A worker running a task then needs one more statement, the cascade's
    write, unless the session changed meanwhile. ``None`` if the instance is
    not scheduled (or absent), and on other databases.
    """
    connection = connections[using]
    sql = _cached("start_by_uid", connection, _build_start_sql)
    params = [
        *_status_params(connection, TaskInstance.RUNNING, when, {}),
        session_uid,
        name,
        TaskInstance.SCHEDULED,
    ]
    with _cursor(connection) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    width = _started_width()
    started = [row[1 : 1 + width] for row in rows if row[0] == "s"]
    if not started:
        return None
    [started_row] = started
    instance_width = len(_attnames(TaskInstance)) + len(_attnames(TaskConfig))
    session_values = started_row[instance_width:]
    session = _from_db(TriggerSession, connection, _attnames(TriggerSession), session_values)
    instance = _instance_with_config(connection, started_row[:instance_width])
    read = [(row[0], *row[1 + width :]) for row in rows if row[0] != "s"]
    return Started(session, instance, _fire_state(connection, session.pk, read))


def _started_width() -> int:
    """Columns of a started instance, its config and its session (see ``_build_start_sql``)."""
    return sum(len(_attnames(model)) for model in (TaskInstance, TaskConfig, TriggerSession))


def upsert(using: str, change: Upsert) -> None:
    """Write the row of ``change``, in a statement of its own."""
    model = type(change.row)
    model._default_manager.using(using).bulk_create(
        [change.row],
        update_conflicts=True,
        unique_fields=[change.key],
        update_fields=list(change.updated_names()),
    )


def write_fire(
    using: str,
    created: Sequence[TaskInstance],
    touched: Sequence[TaskInstance],
    fired: FiredTrigger,
    state: FireState,
    finishing: Finishing | None = None,
) -> bool:
    """Store what a fire changed: new instances, updated ones, the fire itself.

    Only if nothing the fire read has changed since: the session's version
    and the versions of its listening tasks, which the write moves on.
    Returns ``False``, having written nothing of the fire, if something did
    (or if an earlier fire with the same event id came first). With
    ``finishing``, the write also moves that instance from ``running`` to
    ``finished``, and writes nothing if it is no longer running.
    """
    return _write_fire_in_one_statement(
        connections[using], created, touched, fired, state, finishing
    )


def _write_fire_in_one_statement(
    connection: BaseDatabaseWrapper,
    created: Sequence[TaskInstance],
    touched: Sequence[TaskInstance],
    fired: FiredTrigger,
    state: FireState,
    finishing: Finishing | None,
) -> bool:
    """PostgreSQL: every write of the fire in one statement of data-modifying CTEs.

    ``version_check`` holds a share lock on the session (so no other change
    to it commits meanwhile) and locks the listening tasks in id order (so
    two fires never deadlock); it yields a row only if none of their
    versions moved since the fire read them. The fire is inserted only then,
    and the other writes only if it was. The versions of the tasks move on
    in the same statement (see ``_build_version_check_sql``).
    """
    quote = connection.ops.quote_name
    tasks = len(state.configs)
    params: list[Any] = [fired.session_id, state.version]
    if tasks != 1:
        params += [config.pk for config in state.configs]
    params += [value for config in state.configs for value in (config.pk, config.version)]
    parts = [
        _cached(
            f"version_check:{tasks}",
            connection,
            partial(_build_version_check_sql, tasks=tasks),
        )
    ]
    guard = "version_check"
    if finishing is not None:
        parts.append(_cached("finish", connection, _build_finish_sql))
        params += _status_params(
            connection, TaskInstance.FINISHED, finishing.when, {"result": finishing.result}
        )
        params += [finishing.pk, TaskInstance.RUNNING]
        guard = "finish"
        if finishing.celery_result is not None:
            sql, values = _upsert_sql(connection, finishing.celery_result, guard)
            parts.append(f"celery_result AS ({sql})")
            params += values
    sql, values = _insert_sql(connection, [fired], guard=guard)
    parts.append(f"fired AS ({sql} ON CONFLICT DO NOTHING RETURNING {quote('id')})")
    params += values
    if tasks != 1:
        parts.append(_cached("config_bump", connection, _build_config_bump_sql))
    if created:
        sql, values = _insert_sql(connection, created, guard="fired")
        parts.append(f"new_instances AS ({sql} RETURNING {quote('id')}, {quote('name')})")
        params += values
    for index, instance in enumerate(touched):
        update_sql = _cached("guarded_update", connection, _build_guarded_update_sql)
        parts.append(f"updated_{index} AS ({update_sql})")
        params += _db_values(connection, instance, INSTANCE_UPDATE_FIELDS, add=False)
        params.append(instance.pk)
    new_ids = (
        "(SELECT json_agg(json_build_array(id, name)) FROM new_instances)" if created else "NULL"
    )
    statement = f"WITH {', '.join(parts)} SELECT (SELECT id FROM fired), {new_ids}"
    with _cursor(connection) as cursor:
        cursor.execute(statement, params)
        fired_id, created_ids = cursor.fetchone()
    if fired_id is None:
        return False
    fired.pk = fired_id
    if created:
        ids = dict((name, pk) for pk, name in _json(created_ids))
        for instance in created:
            instance.pk = ids[instance.name]
    for obj in (*created, fired):
        obj._state.adding = False
        obj._state.db = connection.alias
    return True


#: Stock field types whose ``get_db_prep_save`` returns a value of this
#: Python type (or ``None``) unchanged.
_UNCHANGED_TYPES: dict[type[Field[Any, Any]], type] = {
    models.CharField: str,
    models.BooleanField: bool,
    models.FloatField: float,
}
#: Stock integer fields: their values go through the backend's adapter.
_INTEGER_FIELDS = (
    models.IntegerField,
    models.SmallIntegerField,
    models.BigIntegerField,
    models.PositiveIntegerField,
    models.PositiveSmallIntegerField,
    models.PositiveBigIntegerField,
)


def _preparer(connection: BaseDatabaseWrapper, field: Field[Any, Any]) -> Callable[[Any], Any]:
    """``field.get_db_prep_save``, with a short way for the plain values fires write.

    A fire prepares a few dozen values; the generic path through each
    field's conversions and checks costs more than the rest of building its
    write. The short ways give what the generic path gives (a test checks
    it); anything else (expressions, naive datetimes, other types) takes the
    generic path.
    """

    def generic(value: Any) -> Any:
        return field.get_db_prep_save(value, connection)

    kind = type(field)
    if kind in _UNCHANGED_TYPES:
        expected = _UNCHANGED_TYPES[kind]

        def unchanged(value: Any) -> Any:
            return value if value is None or type(value) is expected else generic(value)

        return unchanged
    if kind in _INTEGER_FIELDS:
        adapt_integer, internal_type = (
            connection.ops.adapt_integerfield_value,
            field.get_internal_type(),
        )

        def integer(value: Any) -> Any:
            if value is None or type(value) is not int:
                return generic(value)
            return adapt_integer(value, internal_type)

        return integer
    if kind is models.JSONField:
        adapt_json, encoder = connection.ops.adapt_json_value, field.encoder  # type: ignore[attr-defined]

        def json_value(value: Any) -> Any:
            if type(value) not in (dict, list, str):
                return generic(value)  # None (SQL NULL), expressions, other JSON values
            return adapt_json(value, encoder)

        return json_value
    if kind is models.DateTimeField:
        adapt_datetime = connection.ops.adapt_datetimefield_value

        def aware_datetime(value: Any) -> Any:
            if type(value) is not datetime or not timezone.is_aware(value):
                return generic(value)  # None, naive datetimes (warned about), expressions
            return adapt_datetime(value)

        return aware_datetime
    return generic


#: ``(attname, the field's pre_save if it has its own, preparer)`` of each field.
_SavePlan = list[tuple[str, Callable[..., Any] | None, Callable[[Any], Any]]]
_save_plans: dict[tuple[type[Model], tuple[str, ...]], _SavePlan] = {}


def _save_plan(
    connection: BaseDatabaseWrapper, model: type[Model], names: tuple[str, ...]
) -> _SavePlan:
    """How to prepare the values of the model's fields ``names`` (attnames) for writing."""
    key = (model, names)
    if key not in _save_plans:
        plan: _SavePlan = []
        for name in names:
            f = _field(model, name)
            own_pre_save = type(f).pre_save is not models.Field.pre_save
            plan.append((f.attname, f.pre_save if own_pre_save else None, _preparer(connection, f)))
        _save_plans[key] = plan
    return _save_plans[key]


def _db_values(
    connection: BaseDatabaseWrapper, obj: Model, names: tuple[str, ...], *, add: bool
) -> list[Any]:
    """The values of ``obj``'s fields ``names``, prepared as ``Model.save`` prepares them.

    With ``add`` (an insert), the fields' ``pre_save`` runs first, as it would
    (``auto_now_add`` and the like), and sets the value on ``obj``.
    """
    values = []
    for attname, pre_save, prepare in _save_plan(connection, type(obj), names):
        if add and pre_save is not None:
            value = pre_save(obj, True)
            setattr(obj, attname, value)
        else:
            value = getattr(obj, attname)
        values.append(prepare(value))
    return values


def _db_value(connection: BaseDatabaseWrapper, model: type[Model], name: str, value: Any) -> Any:
    """``value`` prepared for writing to the model's field ``name``."""
    return _save_plan(connection, model, (name,))[0][2](value)


@cache
def _inserted_names(model: type[Model]) -> tuple[str, ...]:
    """The attnames of the columns an insert writes: all but the primary key."""
    return tuple(f.attname for f in model._meta.concrete_fields if not f.primary_key)


def _insert_sql(
    connection: BaseDatabaseWrapper, objects: Sequence[Model], guard: str | None = None
) -> tuple[str, list[Any]]:
    """``INSERT`` of the objects; with ``guard``, of none of them if that CTE returned no row.

    A column that is NULL in every row is written as ``NULL`` in the
    statement rather than passed: a new instance has several, and psycopg
    caches how it rewrites a statement's placeholders only up to 50
    parameters (past that, it parses the statement again at every
    execution).
    """
    model = type(objects[0])
    rows = [_db_values(connection, obj, _inserted_names(model), add=True) for obj in objects]
    if len(rows) == 1:  # the common case, without a pass per column
        nulls = tuple(map(_is_null, rows[0]))
    else:
        nulls = tuple(all(map(_is_null, column)) for column in zip(*rows, strict=True))
    sql = _cached(
        ("insert", model, len(rows), nulls, guard),
        connection,
        partial(_build_insert_sql, model=model, rows=len(rows), nulls=nulls, guard=guard),
    )
    passed = [not null for null in nulls]
    return sql, [value for row in rows for value in compress(row, passed)]


_is_null = partial(operator.is_, None)


def _upsert_sql(
    connection: BaseDatabaseWrapper, change: Upsert, guard: str
) -> tuple[str, list[Any]]:
    """``INSERT ... ON CONFLICT DO UPDATE`` of ``change``'s row, if CTE ``guard`` returned a row."""
    sql, params = _insert_sql(connection, [change.row], guard=guard)
    model = type(change.row)
    names = change.updated_names()
    conflict = _cached(
        ("upsert", model, change.key, names),
        connection,
        partial(_build_on_conflict_sql, model=model, key=change.key, names=names),
    )
    return f"{sql} {conflict}", params


def _build_on_conflict_sql(
    connection: BaseDatabaseWrapper, *, model: type[Model], key: str, names: Sequence[str]
) -> str:
    quote = connection.ops.quote_name

    def column(name: str) -> str:
        return quote(_column(model._meta.get_field(name)))

    assignments = ", ".join(f"{column(name)} = EXCLUDED.{column(name)}" for name in names)
    return f"ON CONFLICT ({column(key)}) DO UPDATE SET {assignments}"


def _build_insert_sql(
    connection: BaseDatabaseWrapper,
    *,
    model: type[Model],
    rows: int,
    nulls: Sequence[bool],
    guard: str | None,
) -> str:
    quote = connection.ops.quote_name
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(quote(_column(f)) for f in fields)
    # Typed, with a guard: a VALUES list outside INSERT has no column types to infer.
    casts = [f"::{_cast_type(f, connection)}" if guard else "" for f in fields]
    cells = (("NULL" if null else "%s") + cast for null, cast in zip(nulls, casts, strict=True))
    row = f"({', '.join(cells)})"
    values = ", ".join([row] * rows)
    insert = f"INSERT INTO {quote(model._meta.db_table)} ({columns})"
    if guard is None:
        return f"{insert} VALUES {values}"
    return f"{insert} SELECT v.* FROM {guard}, (VALUES {values}) v"


def _cast_type(field: Field[Any, Any], connection: BaseDatabaseWrapper) -> str:
    """The type to cast a value of ``field`` to: never one that cuts text short.

    An explicit cast to ``varchar(255)`` truncates longer text without a
    word; cast to unbounded text instead, so that the column's own limit
    refuses it when the row is written.
    """
    if isinstance(field, CharField):
        return str(connection.data_types["TextField"])
    return str(field.cast_db_type(connection))


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    """A concrete field of the model (the stubs allow ``get_field`` a reverse relation)."""
    return cast("Field[Any, Any]", model._meta.get_field(name))


def _column(field: Field[Any, Any] | ForeignObjectRel) -> str:
    """The column of a concrete field.

    Every field named in this module is a concrete field of its model, so it
    has a column; the stubs also allow ``get_field`` a reverse relation and
    ``column`` ``None`` (a field without one).
    """
    return cast(str, cast("Field[Any, Any]", field).column)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _from_db(
    model: type[Model], connection: BaseDatabaseWrapper, names: Sequence[str], values: Sequence[Any]
) -> Any:
    """A model instance from raw column values, converted and built as ``Model.from_db`` would.

    The fields not named are deferred. Unless something listens to the
    model's ``pre_init`` or ``post_init``, the instance is built without
    ``Model.__init__``, whose generic handling of arguments costs more than
    the rest of reading a row: a fire builds several instances.
    """
    names = tuple(names)
    values = list(values)
    for position, column, converters in _conversions(connection, model, names):
        value = values[position]
        for converter in converters:
            value = converter(value, column, connection)
        values[position] = value
    if pre_init.has_listeners(model) or post_init.has_listeners(model):
        return model.from_db(connection.alias, list(names), values)
    instance = model.__new__(model)
    instance.__dict__.update(zip(names, values, strict=True))
    state = instance._state = ModelState()
    state.adding = False
    state.db = connection.alias
    return instance


#: ``(position, column, converters)`` of each converted column.
_Conversions = list[tuple[int, Any, list[Any]]]
_conversion_cache: dict[tuple[type[Model], tuple[str, ...]], _Conversions] = {}


def _conversions(
    connection: BaseDatabaseWrapper, model: type[Model], names: tuple[str, ...]
) -> _Conversions:
    """``(position, column, converters)`` of the columns among ``names`` that have converters."""
    key = (model, names)
    if key not in _conversion_cache:
        found = [
            (position, *_converters(connection, model, name)) for position, name in enumerate(names)
        ]
        _conversion_cache[key] = [conversion for conversion in found if conversion[2]]
    return _conversion_cache[key]


def _converters(
    connection: BaseDatabaseWrapper, model: type[Model], name: str
) -> tuple[Any, list[Any]]:
    """The backend's and the field's converters of a column, as the ORM applies them."""
    model_field = _field(model, name)
    column = Col(model._meta.db_table, model_field)
    backend = connection.ops.get_db_converters(column)
    return column, backend + model_field.get_db_converters(connection)


#: The cursor kept for each PostgreSQL connection (see ``_cursor``).
_kept_cursors: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()


@contextmanager
def _cursor(connection: BaseDatabaseWrapper) -> Iterator[Any]:
    """A cursor for this module's statements; on PostgreSQL, one kept per connection.

    A new psycopg cursor looks up again how to dump each type of parameter
    and load each type of column: for the two statements of a fire, that is
    about 7% of the instructions the firing process runs. psycopg reads a result whole,
    so a kept cursor holds nothing open on the server between statements.
    It is wrapped anew each time, as ``connection.cursor()`` wraps a new one,
    so that health checks, query logging (``DEBUG``, ``CaptureQueriesContext``)
    and execute wrappers apply as they do to any cursor. On other databases,
    a new cursor each time: a SQLite statement not stepped to its end would
    keep its read transaction open.
    """
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    database_connection = connection.connection
    kept = _kept_cursors.get(database_connection)
    if kept is None or kept.closed:
        with connection.wrap_database_errors:
            kept = _kept_cursors[database_connection] = connection.create_cursor()
    if connection.queries_logged:
        yield connection.make_debug_cursor(kept)
    else:
        yield connection.make_cursor(kept)


_sql_cache: dict[Hashable, str] = {}


def _cached(name: Hashable, connection: BaseDatabaseWrapper, build: Any) -> str:
    """The SQL ``build`` makes, built once per ``name``."""
    if name not in _sql_cache:
        _sql_cache[name] = build(connection)
    return _sql_cache[name]


def _build_lock_instance_sql(connection: BaseDatabaseWrapper) -> str:
    quote = connection.ops.quote_name
    instance, config = TaskInstance._meta, TaskConfig._meta
    columns = [f"i.{quote(_column(f))}" for f in instance.concrete_fields]
    columns += [f"c.{quote(_column(f))}" for f in config.concrete_fields]
    sql = (
        f"SELECT {', '.join(columns)} FROM {quote(instance.db_table)} i "
        f"JOIN {quote(config.db_table)} c ON c.{quote(_column(config.pk))} = "
        f"i.{quote(_column(instance.get_field('config')))} "
        f"WHERE i.{quote(_column(instance.get_field('session')))} = %s "
        f"AND i.{quote(_column(instance.get_field('name')))} = %s"
    )
    if connection.features.has_select_for_update_of:
        sql += " FOR UPDATE OF i"
    return sql


def _build_status_assignments(connection: BaseDatabaseWrapper, names: Sequence[str]) -> str:
    """``SET`` list of a status change of instance ``i`` (see :func:`_status_params`)."""
    quote = connection.ops.quote_name
    instance = TaskInstance._meta

    def column(name: str) -> str:
        return quote(_column(instance.get_field(name)))

    metadata = f"i.{column('metadata')}"
    assignments = [
        f"{column('status')} = %s",
        f"{column('status_changed_at')} = %s",
        f"{column('modified')} = %s",
        # What _stamp and _set_status do to the metadata, done by the server,
        # so that metadata written meanwhile (by the task itself) is kept.
        f"{column('metadata')} = {metadata} || jsonb_build_object('timestamps', "
        f"COALESCE({metadata} -> 'timestamps', '{{}}'::jsonb) || "
        f"jsonb_build_object('last_modified', %s::text, %s::text, %s::text))",
        *(f"{column(name)} = %s" for name in names),
    ]
    return ", ".join(assignments)


def _status_params(
    connection: BaseDatabaseWrapper, new: str, when: datetime, values: dict[str, Any]
) -> list[Any]:
    """Parameters of :func:`_build_status_assignments`, for ``values`` (field names to values)."""
    when_db = _db_value(connection, TaskInstance, "status_changed_at", when)
    iso = when.isoformat()
    return [
        new,
        when_db,
        when_db,
        iso,
        new,
        iso,
        *(_db_value(connection, TaskInstance, name, value) for name, value in values.items()),
    ]


def _build_transition_sql(connection: BaseDatabaseWrapper, by_uid: bool = False) -> str:
    """The status change of an instance given by session id (or uid) and name, if in a status.

    Returns the instance's columns and its config's (and, ``by_uid``, its session's).
    """
    quote = connection.ops.quote_name
    instance, config, session = TaskInstance._meta, TaskConfig._meta, TriggerSession._meta

    def column(name: str) -> str:
        return quote(_column(instance.get_field(name)))

    returned = [f"i.{quote(_column(f))}" for f in instance.concrete_fields]
    returned += [f"c.{quote(_column(f))}" for f in config.concrete_fields]
    tables = f"{quote(config.db_table)} c"
    session_is = f"i.{column('session')} = %s"
    if by_uid:
        returned += [f"s.{quote(_column(f))}" for f in session.concrete_fields]
        tables += f", {quote(session.db_table)} s"
        session_is = (
            f"s.{quote(_column(session.pk))} = i.{column('session')} "
            f"AND s.{quote(_column(session.get_field('uid')))} = %s"
        )
    return (
        f"UPDATE {quote(instance.db_table)} i SET {_build_status_assignments(connection, ())} "
        f"FROM {tables} "
        f"WHERE c.{quote(_column(config.pk))} = i.{column('config')} "
        f"AND {session_is} AND i.{column('name')} = %s "
        f"AND i.{column('status')} = %s "
        f"RETURNING {', '.join(returned)}"
    )


def _build_finish_sql(connection: BaseDatabaseWrapper) -> str:
    quote = connection.ops.quote_name
    instance = TaskInstance._meta
    return (
        f"finish AS (UPDATE {quote(instance.db_table)} i "
        f"SET {_build_status_assignments(connection, ['result'])} "
        f"WHERE i.{quote(_column(instance.pk))} = %s "
        f"AND i.{quote(_column(instance.get_field('status')))} = %s "
        f"AND EXISTS (SELECT 1 FROM version_check) RETURNING 1)"
    )


def _build_lock_sql(connection: BaseDatabaseWrapper) -> str:
    quote = connection.ops.quote_name
    meta = TriggerSession._meta
    sql = (
        f"SELECT {quote(_column(meta.pk))} FROM {quote(meta.db_table)} "
        f"WHERE {quote(_column(meta.pk))} = %s"
    )
    return sql + (" FOR UPDATE" if connection.features.has_select_for_update else "")


def _build_lock_bump_sql(connection: BaseDatabaseWrapper) -> str:
    quote = connection.ops.quote_name
    meta = TriggerSession._meta
    version = quote(_column(meta.get_field("version")))
    return (
        f"UPDATE {quote(meta.db_table)} SET {version} = {version} + 1 "
        f"WHERE {quote(_column(meta.pk))} = %s"
    )


def _build_version_check_sql(connection: BaseDatabaseWrapper, tasks: int) -> str:
    """The checks of a fire's write, for a fire read with ``tasks`` listening tasks.

    One placeholder per task rather than an array: PostgreSQL then plans the
    statement once and reuses the plan, whereas for an array of unknown
    length it plans it again at every execution.

    One listening task (the common case) is checked and moved on by one
    ``UPDATE``: its row lock is the check's, and there is no lock order to
    keep. Several are locked in id order first, and moved on by
    ``config_bump`` once the fire is inserted. A version moved on by a write
    that then inserts nothing (an event id a concurrent fire took) only
    makes later fires read again.
    """
    quote = connection.ops.quote_name
    session, config = TriggerSession._meta, TaskConfig._meta
    session_id, config_id = quote(_column(session.pk)), quote(_column(config.pk))
    version = quote(_column(config.get_field("version")))
    session_check = (
        f"session_check AS (SELECT 1 FROM {quote(session.db_table)} WHERE {session_id} = %s "
        f"AND {quote(_column(session.get_field('version')))} = %s FOR SHARE), "
    )
    version_check = (
        f"version_check AS (SELECT 1 FROM session_check "
        f"WHERE (SELECT count(*) FROM config_check) = {tasks})"
    )
    if tasks == 1:
        return (
            f"{session_check}"
            f"config_check AS (UPDATE {quote(config.db_table)} c "
            f"SET {version} = c.{version} + 1 "
            f"WHERE c.{config_id} = %s AND c.{version} = %s "
            f"AND EXISTS (SELECT 1 FROM session_check) RETURNING c.{config_id}), "
            f"{version_check}"
        )
    if tasks:
        ids = ", ".join(["%s"] * tasks)
        pairs = ", ".join(["(%s, %s)"] * tasks)
        unchanged = (
            f"c.{config_id} IN ({ids}) AND (c.{config_id}, c.{version}) IN ({pairs}) "
            f"AND EXISTS (SELECT 1 FROM session_check)"
        )
    else:
        unchanged = "false"
    return (
        f"{session_check}"
        f"config_check AS (SELECT c.{config_id} FROM {quote(config.db_table)} c "
        f"WHERE {unchanged} ORDER BY c.{config_id} FOR UPDATE OF c), "
        f"{version_check}"
    )


def _build_config_bump_sql(connection: BaseDatabaseWrapper) -> str:
    quote = connection.ops.quote_name
    config = TaskConfig._meta
    config_id = quote(_column(config.pk))
    version = quote(_column(config.get_field("version")))
    return (
        f"config_bump AS (UPDATE {quote(config.db_table)} SET {version} = {version} + 1 "
        f"WHERE {config_id} IN (SELECT {config_id} FROM config_check) "
        f"AND EXISTS (SELECT 1 FROM fired))"
    )


def _build_read_sql(
    connection: BaseDatabaseWrapper, *, session: str, trigger: str, lead: int = 0
) -> str:
    """The read of a fire into ``session`` of ``trigger`` (placeholders, or SQL expressions).

    Its rows are tagged ``'c'`` (a listening config, with its open
    instances, one per row) or ``'k'`` (the latest kwargs of a trigger);
    ``lead`` blank columns follow the tag, for a statement that returns
    other rows beside them.

    Only the configs the fire may create an instance of (those without an
    open instance, and those with ``andEvery`` this trigger) need their
    highest instance number and the latest kwargs of their other triggers;
    the read leaves both out for the others, which in a workflow are most:
    an instance waiting for its last trigger.
    """
    quote = connection.ops.quote_name
    lead_blanks = "NULL, " * lead
    # Typed, so that a statement may put these rows after others whose blanks are untyped.
    trigger_blank, kwargs_blank = (
        f"CAST(NULL AS {_cast_type(_field(FiredTrigger, name), connection)})"
        for name in ("trigger_name", "kwargs")
    )

    def table(model: type[Model]) -> str:
        return quote(model._meta.db_table)

    def col(alias: str, model: type[Model], name: str) -> str:
        return f"{alias}.{quote(_column(model._meta.get_field(name)))}"

    config_columns = ", ".join(col("c", TaskConfig, name) for name in CONFIG_FIELDS)
    instance_columns = ", ".join(col("i", TaskInstance, name) for name in INSTANCE_FIELDS)
    blanks = ", ".join(["NULL"] * (lead + READ_WIDTH - 2))  # all but the trigger and kwargs
    unstarted = f"'{TaskInstance.UNSTARTED}'"
    may_create = (
        f"({col('i', TaskInstance, 'id')} IS NULL "
        f"OR {col('c', TaskConfig, 'and_every')} = {trigger})"
    )
    creatable = (
        f"SELECT {col('l', TaskListener, 'config')} FROM {table(TaskListener)} l "
        f"JOIN {table(TaskConfig)} e ON {col('e', TaskConfig, 'id')} = "
        f"{col('l', TaskListener, 'config')} "
        f"WHERE {col('l', TaskListener, 'session')} = {session} "
        f"AND {col('l', TaskListener, 'trigger_name')} = {trigger} "
        f"AND ({col('e', TaskConfig, 'and_every')} = {trigger} OR NOT EXISTS ("
        f"SELECT 1 FROM {table(TaskInstance)} o WHERE {col('o', TaskInstance, 'config')} = "
        f"{col('l', TaskListener, 'config')} AND {col('o', TaskInstance, 'status')} = {unstarted}))"
    )
    return (
        # The listening configs, their open instances and next numbers...
        f"SELECT 'c', {lead_blanks}{col('s', TriggerSession, 'manager_class')}, "
        f"{col('s', TriggerSession, 'version')}, {config_columns}, {may_create}, "
        f"CASE WHEN {may_create} THEN (SELECT MAX({col('n', TaskInstance, 'number')}) "
        f"FROM {table(TaskInstance)} n "
        f"WHERE {col('n', TaskInstance, 'config')} = {col('c', TaskConfig, 'id')}) END, "
        f"{instance_columns}, {trigger_blank}, {kwargs_blank} "
        f"FROM {table(TriggerSession)} s "
        f"LEFT JOIN {table(TaskListener)} l ON {col('l', TaskListener, 'session')} = "
        f"{col('s', TriggerSession, 'id')} "
        f"AND {col('l', TaskListener, 'trigger_name')} = {trigger} "
        f"LEFT JOIN {table(TaskConfig)} c ON {col('c', TaskConfig, 'id')} = "
        f"{col('l', TaskListener, 'config')} "
        f"LEFT JOIN {table(TaskInstance)} i ON {col('i', TaskInstance, 'config')} = "
        f"{col('c', TaskConfig, 'id')} AND {col('i', TaskInstance, 'status')} = {unstarted} "
        f"WHERE {col('s', TriggerSession, 'id')} = {session} "
        # ... and the latest kwargs of every other trigger the configs the
        # fire may create an instance of name: one probe of the
        # (session, trigger_name, id) index each, however long the history.
        f"UNION ALL "
        f"SELECT 'k', {blanks}, t.name, "
        f"(SELECT {col('f', FiredTrigger, 'kwargs')} FROM {table(FiredTrigger)} f "
        f"WHERE {col('f', FiredTrigger, 'session')} = {session} "
        f"AND {col('f', FiredTrigger, 'trigger_name')} = t.name "
        f"ORDER BY {col('f', FiredTrigger, 'id')} DESC LIMIT 1) "
        f"FROM (SELECT DISTINCT {col('m', TaskListener, 'trigger_name')} AS name "
        f"FROM {table(TaskListener)} m "
        f"WHERE {col('m', TaskListener, 'config')} IN ({creatable}) "
        f"AND {col('m', TaskListener, 'trigger_name')} <> {trigger}) t "
        f"ORDER BY 1, {lead + 4}, "
        f"{lead + 6 + len(CONFIG_FIELDS) + INSTANCE_FIELDS.index('number')}"
    )


def _build_start_sql(connection: BaseDatabaseWrapper) -> str:
    """A worker's start (see :func:`start_by_uid`): one ``'s'`` row, then the read's rows.

    The read is the one of the cascade of the started instance: of its task's
    name, in its session.
    """
    width = _started_width()
    columns = [f"c{position}" for position in range(width)]
    instance_names = _attnames(TaskInstance)
    session_id = columns[instance_names.index("session_id")]
    task_name = columns[instance_names.index("task_name")]
    read = _build_read_sql(
        connection,
        session=f"(SELECT {session_id} FROM started)",
        trigger=f"(SELECT {task_name} FROM started)",
        lead=width,
    )
    read_blanks = ", ".join(["NULL"] * READ_WIDTH)
    return (
        f"WITH started ({', '.join(columns)}) AS "
        f"({_build_transition_sql(connection, by_uid=True)}) "
        f"SELECT 's', started.*, {read_blanks} FROM started UNION ALL {read}"
    )


def _build_guarded_update_sql(connection: BaseDatabaseWrapper) -> str:
    """An update of an instance the fire read unstarted: only if it still is, and the fire is."""
    status = connection.ops.quote_name(_column(TaskInstance._meta.get_field("status")))
    return (
        f"{_build_update_sql(connection)} AND {status} = '{TaskInstance.UNSTARTED}' "
        f"AND EXISTS (SELECT 1 FROM fired)"
    )


def _build_update_sql(
    connection: BaseDatabaseWrapper, names: Sequence[str] = INSTANCE_UPDATE_FIELDS
) -> str:
    quote = connection.ops.quote_name
    meta = TaskInstance._meta
    assignments = ", ".join(f"{quote(_column(meta.get_field(name)))} = %s" for name in names)
    return f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(_column(meta.pk))} = %s"


class PostgresStore(OrmStore):
    """The database verbs of the rules: those of a fire and a worker in this module's statements.

    Changes made under the session's lock (replays, skips, recovery, the
    admin) are the ORM store's.
    """

    fires_without_lock: ClassVar[bool] = True

    def lock_session(self, session_id: int, *, bump: bool = True) -> bool:
        return lock_session(self.using, session_id, bump=bump)

    def read_for_fire(self, session_id: int, trigger_name: str) -> FireState:
        return read_for_fire(self.using, session_id, trigger_name)

    def write_fire(
        self,
        created: Sequence[TaskInstance],
        touched: Sequence[TaskInstance],
        fired: FiredTrigger,
        state: FireState,
        finishing: Finishing | None = None,
    ) -> bool:
        return write_fire(self.using, created, touched, fired, state, finishing)

    def lock_instance(self, session_id: int, name: str) -> TaskInstance | None:
        return lock_instance(self.using, session_id, name)

    def transition(
        self, session_id: int, name: str, old: str, new: str, when: datetime
    ) -> TaskInstance | None:
        return transition_instance(self.using, session_id, name, old, new, when)

    def start_by_uid(self, session_uid: str, name: str, when: datetime) -> Started | None:
        return start_by_uid(self.using, session_uid, name, when)

    def upsert(self, change: Upsert) -> None:
        upsert(self.using, change)
