"""The statements of a fire, written by hand because a fire is the hot path.

Every web request that fires a trigger pays for these, so they are few and
cheap: one read of just the tasks listening to the trigger (with their open
instances and next instance numbers), then one write. On PostgreSQL the read
takes no lock and the write is a single statement that writes only if no
change to what was read committed in between (see ``write_fire``); elsewhere
the fire holds the session's lock. Values go through each field's own
``get_db_prep_save``, so what is stored is exactly what the ORM would store,
on any database Django supports.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.db.models.expressions import Col

from django_triggers.models import (
    FiredTrigger,
    TaskConfig,
    TaskInstance,
    TaskListener,
    TriggerSession,
)

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
#: What applying a fire changes on an existing instance.
INSTANCE_UPDATE_FIELDS = (
    "kwargs",
    "unless_fired",
    "status",
    "status_changed_at",
    "celery_task_id",
    "dispatched_at",
    "metadata",
    "modified",
)


@dataclass
class FireState:
    """What a fire reads: under the session's lock, or guarded by its version."""

    manager_class: str
    #: ``TriggerSession.version`` as read; the fire's write requires it unchanged.
    version: int = 0
    configs: list[TaskConfig] = field(default_factory=list)
    #: Unstarted instances of each config, by number.
    open_instances: dict[int, list[TaskInstance]] = field(default_factory=lambda: defaultdict(list))
    #: The number the next instance of each config takes.
    next_numbers: dict[int, int] = field(default_factory=dict)
    #: Latest kwargs of every trigger the listening configs name, among those fired.
    latest_kwargs: dict[str, Any] = field(default_factory=dict)


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
    with connection.cursor() as cursor:
        if bump:
            cursor.execute(_cached("lock_bump", connection, _build_lock_bump_sql), [session_id])
            return bool(cursor.rowcount == 1)
        cursor.execute(_cached("lock", connection, _build_lock_sql), [session_id])
        return cursor.fetchone() is not None


def can_fire_without_lock(using: str) -> bool:
    """Whether a fire may read without the session's lock and write only if nothing moved.

    It needs the fire's whole write, with its version check, in one
    statement: PostgreSQL's data-modifying CTEs. Elsewhere a fire always
    takes the lock.
    """
    return connections[using].vendor == "postgresql"


def read_for_fire(using: str, session_id: int, trigger_name: str) -> FireState:
    """The configs listening to the trigger, their open instances and the latest kwargs."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(
            _cached("read", connection, _build_read_sql),
            [trigger_name, session_id, session_id, session_id, trigger_name],
        )
        rows = cursor.fetchall()
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
            config = _from_db(TaskConfig, using, CONFIG_FIELDS, config_values)
            config.session_id = session_id
            seen_configs[config.id] = config
            state.configs.append(config)
            max_number = row[3 + width]
            state.next_numbers[config.id] = 0 if max_number is None else max_number + 1
        instance_values = row[4 + width : -2]
        if instance_values[0] is not None and instance_values[0] not in seen_instances:
            seen_instances.add(instance_values[0])
            instance = _from_db(TaskInstance, using, INSTANCE_FIELDS, instance_values)
            instance.session_id = session_id
            instance.config_id = config.id
            instance.config = config
            state.open_instances[config.id].append(instance)
    return state


def lock_instance(using: str, session_id: int, name: str) -> TaskInstance | None:
    """The session's instance ``name`` with its config, its row locked; ``None`` if absent."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(
            _cached("lock_instance", connection, _build_lock_instance_sql), [session_id, name]
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return _instance_with_config(using, row)


def _instance_with_config(using: str, row: Sequence[Any]) -> TaskInstance:
    """An instance and its config from a row of all their columns, in field order."""
    instance_names = [f.attname for f in TaskInstance._meta.concrete_fields]
    config_names = [f.attname for f in TaskConfig._meta.concrete_fields]
    instance = _from_db(TaskInstance, using, instance_names, row[: len(instance_names)])
    instance.config = _from_db(TaskConfig, using, config_names, row[len(instance_names) :])
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
    if connection.vendor != "postgresql":
        return None
    sql = _cached("transition", connection, _build_transition_sql)
    params = [*_status_params(connection, new, when, {}), session_id, name, old]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else _instance_with_config(using, row)


def start_by_uid(
    using: str, session_uid: str, name: str, when: datetime
) -> tuple[TriggerSession, TaskInstance] | None:
    """PostgreSQL: move instance ``name`` of session ``session_uid`` from ``scheduled`` to
    ``running`` in one statement; return its session and the instance, with its config.

    A worker starting a task needs nothing else from the database. ``None``
    if the instance is not scheduled (or absent), and on other databases.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    sql = _cached("start_by_uid", connection, partial(_build_transition_sql, by_uid=True))
    params = [
        *_status_params(connection, TaskInstance.RUNNING, when, {}),
        session_uid,
        name,
        TaskInstance.SCHEDULED,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    width = len(TaskInstance._meta.concrete_fields) + len(TaskConfig._meta.concrete_fields)
    session_names = [f.attname for f in TriggerSession._meta.concrete_fields]
    session = _from_db(TriggerSession, using, session_names, row[width:])
    return session, _instance_with_config(using, row[:width])


@dataclass
class Finishing:
    """A running instance whose cascade the fire is: finished by the fire's own write."""

    pk: int
    result: Any
    when: datetime


def write_fire(
    using: str,
    created: Sequence[TaskInstance],
    touched: Sequence[TaskInstance],
    fired: FiredTrigger,
    state: FireState,
    finishing: Finishing | None = None,
) -> bool:
    """Store what a fire changed: new instances, updated ones, the fire itself.

    On PostgreSQL, only if nothing the fire read has changed since: the
    session's version and the versions of its listening tasks, which the
    write moves on. Returns ``False``, having written nothing of the fire,
    if something did (or if an earlier fire with the same event id came
    first). With ``finishing`` (PostgreSQL only), the write also moves that
    instance from ``running`` to ``finished``, and writes nothing if it is no
    longer running. Elsewhere the fire holds the session's lock, and always
    writes.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        return _write_fire_in_one_statement(connection, created, touched, fired, state, finishing)
    if finishing is not None:
        raise ValueError("only a fire written in one statement can finish an instance")
    if created:
        insert(using, created)
    if touched:
        update_instances(using, touched)
    insert(using, [fired])
    return True


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
    and the other writes only if it was.
    """
    quote = connection.ops.quote_name
    tasks = len(state.configs)
    params: list[Any] = [fired.session_id, state.version]
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
    sql, values = _insert_sql(connection, [fired], guard=guard)
    parts.append(f"fired AS ({sql} ON CONFLICT DO NOTHING RETURNING {quote('id')})")
    params += values
    parts.append(_cached("config_bump", connection, _build_config_bump_sql))
    if created:
        sql, values = _insert_sql(connection, created, guard="fired")
        parts.append(f"new_instances AS ({sql} RETURNING {quote('id')}, {quote('name')})")
        params += values
    meta = TaskInstance._meta
    update_fields = cast(
        "list[Field[Any, Any]]", [meta.get_field(name) for name in INSTANCE_UPDATE_FIELDS]
    )
    for index, instance in enumerate(touched):
        update_sql = _cached("guarded_update", connection, _build_guarded_update_sql)
        parts.append(f"updated_{index} AS ({update_sql})")
        params += [
            f.get_db_prep_save(getattr(instance, f.attname), connection) for f in update_fields
        ]
        params.append(instance.pk)
    new_ids = (
        "(SELECT json_agg(json_build_array(id, name)) FROM new_instances)" if created else "NULL"
    )
    statement = f"WITH {', '.join(parts)} SELECT (SELECT id FROM fired), {new_ids}"
    with connection.cursor() as cursor:
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


def update_instances(
    using: str, instances: Sequence[TaskInstance], names: Sequence[str] = INSTANCE_UPDATE_FIELDS
) -> None:
    """Write the given fields of existing instances."""
    connection = connections[using]
    names = tuple(names)
    fields = cast("list[Field[Any, Any]]", [TaskInstance._meta.get_field(name) for name in names])
    params = [
        [f.get_db_prep_save(getattr(instance, f.attname), connection) for f in fields]
        + [instance.pk]
        for instance in instances
    ]
    with connection.cursor() as cursor:
        sql = _cached(
            f"update:{','.join(names)}", connection, partial(_build_update_sql, names=names)
        )
        if len(params) == 1:
            cursor.execute(sql, params[0])
        else:
            cursor.executemany(sql, params)


def insert(using: str, objects: Iterable[Model]) -> None:
    """Insert new rows of one model in one statement, setting their primary keys."""
    objects = list(objects)
    connection = connections[using]
    sql, params = _insert_sql(connection, objects)
    meta = type(objects[0])._meta
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {connection.ops.quote_name(_column(meta.pk))}", params)
        for obj, (pk,) in zip(objects, cursor.fetchall(), strict=True):
            obj.pk = pk
    for obj in objects:
        obj._state.adding = False
        obj._state.db = using


def _insert_sql(
    connection: BaseDatabaseWrapper, objects: Sequence[Model], guard: str | None = None
) -> tuple[str, list[Any]]:
    """``INSERT`` of the objects; with ``guard``, of none of them if that CTE returned no row."""
    model = type(objects[0])
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    sql = _cached(
        f"insert:{model._meta.label}:{len(objects)}:{guard}",
        connection,
        partial(_build_insert_sql, model=model, fields=fields, rows=len(objects), guard=guard),
    )
    params = []
    for obj in objects:
        for f in fields:
            value = f.pre_save(obj, add=True)
            setattr(obj, f.attname, value)
            params.append(f.get_db_prep_save(value, connection))
    return sql, params


def _build_insert_sql(
    connection: BaseDatabaseWrapper,
    *,
    model: type[Model],
    fields: Sequence[Field[Any, Any]],
    rows: int,
    guard: str | None,
) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(_column(f)) for f in fields)
    if guard is None:
        row = f"({', '.join(['%s'] * len(fields))})"
        values = f"VALUES {', '.join([row] * rows)}"
    else:
        # Typed placeholders: a VALUES list outside INSERT has no column types to infer.
        row = f"({', '.join(f'%s::{f.cast_db_type(connection)}' for f in fields)})"
        values = f"SELECT v.* FROM {guard}, (VALUES {', '.join([row] * rows)}) v"
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) {values}"


def _column(field: Field[Any, Any] | ForeignObjectRel) -> str:
    """The column of a concrete field.

    Every field named in this module is a concrete field of its model, so it
    has a column; the stubs also allow ``get_field`` a reverse relation and
    ``column`` ``None`` (a field without one).
    """
    return cast(str, cast("Field[Any, Any]", field).column)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _from_db(model: type[Model], using: str, names: Sequence[str], values: Sequence[Any]) -> Any:
    """A model instance from raw column values, converted as the ORM would."""
    connection = connections[using]
    converted = []
    for name, value in zip(names, values, strict=True):
        column, converters = _converters(connection, model, name)
        for converter in converters:
            value = converter(value, column, connection)
        converted.append(value)
    return model.from_db(using, list(names), converted)


_converter_cache: dict[tuple[str, type[Model], str], tuple[Any, list[Any]]] = {}


def _converters(
    connection: BaseDatabaseWrapper, model: type[Model], name: str
) -> tuple[Any, list[Any]]:
    """The backend's and the field's converters of a column, as the ORM applies them."""
    key = (connection.vendor, model, name)
    if key not in _converter_cache:
        model_field = cast("Field[Any, Any]", model._meta.get_field(name))
        column = Col(model._meta.db_table, model_field)
        _converter_cache[key] = (
            column,
            connection.ops.get_db_converters(column) + model_field.get_db_converters(connection),
        )
    return _converter_cache[key]


_sql_cache: dict[tuple[str, str], str] = {}


def _cached(name: str, connection: BaseDatabaseWrapper, build: Any) -> str:
    key = (name, connection.vendor)
    if key not in _sql_cache:
        _sql_cache[key] = build(connection)
    return _sql_cache[key]


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
    meta = TaskInstance._meta
    when_db = meta.get_field("status_changed_at").get_db_prep_save(when, connection)
    iso = when.isoformat()
    return [
        new,
        when_db,
        when_db,
        iso,
        new,
        iso,
        *(
            cast("Field[Any, Any]", meta.get_field(name)).get_db_prep_save(value, connection)
            for name, value in values.items()
        ),
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
    """
    quote = connection.ops.quote_name
    session, config = TriggerSession._meta, TaskConfig._meta
    session_id, config_id = quote(_column(session.pk)), quote(_column(config.pk))
    version = quote(_column(config.get_field("version")))
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
        f"session_check AS (SELECT 1 FROM {quote(session.db_table)} WHERE {session_id} = %s "
        f"AND {quote(_column(session.get_field('version')))} = %s FOR SHARE), "
        f"config_check AS (SELECT c.{config_id} FROM {quote(config.db_table)} c "
        f"WHERE {unchanged} ORDER BY c.{config_id} FOR UPDATE OF c), "
        f"version_check AS (SELECT 1 FROM session_check "
        f"WHERE (SELECT count(*) FROM config_check) = {tasks})"
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


def _build_read_sql(connection: BaseDatabaseWrapper) -> str:
    quote = connection.ops.quote_name

    def table(model: type[Model]) -> str:
        return quote(model._meta.db_table)

    def col(alias: str, model: type[Model], name: str) -> str:
        return f"{alias}.{quote(_column(model._meta.get_field(name)))}"

    config_columns = ", ".join(col("c", TaskConfig, name) for name in CONFIG_FIELDS)
    instance_columns = ", ".join(col("i", TaskInstance, name) for name in INSTANCE_FIELDS)
    blanks = ", ".join(["NULL"] * (3 + len(CONFIG_FIELDS) + len(INSTANCE_FIELDS)))
    listening = (
        f"SELECT {col('l', TaskListener, 'config')} FROM {table(TaskListener)} l "
        f"WHERE {col('l', TaskListener, 'session')} = %s "
        f"AND {col('l', TaskListener, 'trigger_name')} = %s"
    )
    return (
        # The listening configs, their open instances and next numbers...
        f"SELECT 'c', {col('s', TriggerSession, 'manager_class')}, "
        f"{col('s', TriggerSession, 'version')}, {config_columns}, "
        f"(SELECT MAX({col('n', TaskInstance, 'number')}) FROM {table(TaskInstance)} n "
        f"WHERE {col('n', TaskInstance, 'config')} = {col('c', TaskConfig, 'id')}), "
        f"{instance_columns}, NULL, NULL "
        f"FROM {table(TriggerSession)} s "
        f"LEFT JOIN {table(TaskListener)} l ON {col('l', TaskListener, 'session')} = "
        f"{col('s', TriggerSession, 'id')} AND {col('l', TaskListener, 'trigger_name')} = %s "
        f"LEFT JOIN {table(TaskConfig)} c ON {col('c', TaskConfig, 'id')} = "
        f"{col('l', TaskListener, 'config')} "
        f"LEFT JOIN {table(TaskInstance)} i ON {col('i', TaskInstance, 'config')} = "
        f"{col('c', TaskConfig, 'id')} AND {col('i', TaskInstance, 'status')} = "
        f"'{TaskInstance.UNSTARTED}' "
        f"WHERE {col('s', TriggerSession, 'id')} = %s "
        # ... and the latest kwargs of every trigger those configs name: one
        # probe of the (session, trigger_name, id) index each, however long
        # the session's history.
        f"UNION ALL "
        f"SELECT 'k', {blanks}, t.name, "
        f"(SELECT {col('f', FiredTrigger, 'kwargs')} FROM {table(FiredTrigger)} f "
        f"WHERE {col('f', FiredTrigger, 'session')} = %s "
        f"AND {col('f', FiredTrigger, 'trigger_name')} = t.name "
        f"ORDER BY {col('f', FiredTrigger, 'id')} DESC LIMIT 1) "
        f"FROM (SELECT DISTINCT {col('m', TaskListener, 'trigger_name')} AS name "
        f"FROM {table(TaskListener)} m "
        f"WHERE {col('m', TaskListener, 'config')} IN ({listening})) t "
        f"ORDER BY 1, 4, {5 + len(CONFIG_FIELDS) + INSTANCE_FIELDS.index('number')}"
    )


def _build_guarded_update_sql(connection: BaseDatabaseWrapper) -> str:
    return f"{_build_update_sql(connection)} AND EXISTS (SELECT 1 FROM fired)"


def _build_update_sql(
    connection: BaseDatabaseWrapper, names: Sequence[str] = INSTANCE_UPDATE_FIELDS
) -> str:
    quote = connection.ops.quote_name
    meta = TaskInstance._meta
    assignments = ", ".join(f"{quote(_column(meta.get_field(name)))} = %s" for name in names)
    return f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(_column(meta.pk))} = %s"
