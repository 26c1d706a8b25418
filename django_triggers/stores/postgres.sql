-- The statements of the PostgreSQL store (django_triggers/stores/postgres.py).
--
-- Each statement starts with a "-- name:" line and the comments that say
-- what it is for; comment lines are dropped when the file is loaded, once,
-- and nothing else is done to the text. Parameters are named
-- (%(session)s); rows go in as one JSON document each
-- (jsonb_populate_record), or a JSON array of them, whatever their number,
-- so every statement has the same text and the same parameters at every
-- execution. Whole rows come back as JSON objects (to_jsonb), turned into
-- model instances by the store.
--
-- Statuses are written as literals where a statement only ever means one
-- ('unstarted', 'running', 'finished'): they are the values of
-- TaskInstance.STATUS_CHOICES, and the tests check that they still are.


-- name: lock_session
-- Lock the session's row until the transaction ends. A statement of its
-- own: under READ COMMITTED, a statement that waited for the lock still
-- sees the database as it was when it started, so the reads that follow
-- must be separate statements.
SELECT id
FROM django_triggers_triggersession
WHERE id = %(session)s
FOR UPDATE;


-- name: lock_session_and_move_version
-- Lock the session's row and move its version on, so that a fire that read
-- without the lock meanwhile finds, at its write, that its read is stale.
UPDATE django_triggers_triggersession
SET version = version + 1
WHERE id = %(session)s
RETURNING id;


-- name: read_for_fire
-- What a fire of %(trigger)s into session %(session)s reads, without a lock.
--
-- Rows of kind 'c': the session's manager class and version, then each task
-- listening to the trigger, once per open (unstarted) instance it has, or
-- once with no instance. Only for the tasks the fire may create an instance
-- of (no open instance, or andEvery this trigger) is the highest instance
-- number read: for the others, which in a workflow are most (an instance
-- waiting for its last trigger), the fire creates nothing.
--
-- Rows of kind 'k': the latest kwargs of every other trigger that those
-- tasks wait for, what a new instance starts with; one probe of the
-- (session, trigger_name, id) index each, however long the history. Whether
-- a task has an open instance is one probe of an index too (LATERAL ...
-- LIMIT 1): under an OR, NOT EXISTS would become a hash of every open
-- instance in the database.
--
-- The subquery fire_read is also start_instance's, word for word (a test
-- checks it): there, the target is the started instance's cascade.
WITH target AS (
    SELECT %(session)s::bigint AS session_id,
           %(trigger)s::text AS trigger_name
)
SELECT fire_read.*
FROM (
    SELECT 'c' AS kind,
           s.manager_class,
           s.version,
           c.id AS config_id,
           jsonb_build_object(
               'id', c.id, 'session_id', c.session_id, 'name', c.name, 'after', c.after,
               'and_every', c.and_every, 'unless', c.unless, 'run', c.run, 'using', c.using,
               'within', c.within, 'version', c.version
           ) AS config,
           (i.id IS NULL OR c.and_every = (SELECT trigger_name FROM target)) AS may_create,
           CASE WHEN i.id IS NULL OR c.and_every = (SELECT trigger_name FROM target) THEN (
               SELECT max(n.number)
               FROM django_triggers_taskinstance n
               WHERE n.config_id = c.id
           ) END AS highest_number,
           i.number AS instance_number,
           CASE WHEN i.id IS NOT NULL THEN jsonb_build_object(
               'id', i.id, 'session_id', i.session_id, 'config_id', i.config_id,
               'name', i.name, 'task_name', i.task_name, 'number', i.number,
               'status', i.status, 'kwargs', i.kwargs, 'unless_fired', i.unless_fired,
               'metadata', i.metadata, 'celery_task_id', i.celery_task_id,
               'dispatched_at', i.dispatched_at, 'status_changed_at', i.status_changed_at,
               'modified', i.modified
           ) END AS instance,
           NULL AS trigger_name,
           NULL::jsonb AS kwargs
    FROM django_triggers_triggersession s
    LEFT JOIN django_triggers_tasklistener l
           ON l.session_id = s.id AND l.trigger_name = (SELECT trigger_name FROM target)
    LEFT JOIN django_triggers_taskconfig c
           ON c.id = l.config_id
    LEFT JOIN django_triggers_taskinstance i
           ON i.config_id = c.id AND i.status = 'unstarted'
    WHERE s.id = (SELECT session_id FROM target)
    UNION ALL
    SELECT 'k', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           waited.trigger_name,
           (SELECT f.kwargs
            FROM django_triggers_firedtrigger f
            WHERE f.session_id = (SELECT session_id FROM target)
              AND f.trigger_name = waited.trigger_name
            ORDER BY f.id DESC
            LIMIT 1)
    FROM (
        SELECT DISTINCT m.trigger_name
        FROM django_triggers_tasklistener l
        JOIN django_triggers_taskconfig e
          ON e.id = l.config_id
        JOIN django_triggers_tasklistener m
          ON m.config_id = l.config_id AND m.trigger_name <> (SELECT trigger_name FROM target)
        LEFT JOIN LATERAL (
            SELECT true AS found
            FROM django_triggers_taskinstance o
            WHERE o.config_id = l.config_id AND o.status = 'unstarted'
            LIMIT 1
        ) open_instance ON true
        WHERE l.session_id = (SELECT session_id FROM target)
          AND l.trigger_name = (SELECT trigger_name FROM target)
          AND (e.and_every = (SELECT trigger_name FROM target) OR open_instance.found IS NULL)
    ) waited
) fire_read
ORDER BY fire_read.kind, fire_read.config_id, fire_read.instance_number;


-- name: lock_instance
-- The session's instance %(name)s and its task, the instance's row locked
-- (not the task's).
SELECT to_jsonb(i) AS instance,
       to_jsonb(c) AS config
FROM django_triggers_taskinstance i
JOIN django_triggers_taskconfig c ON c.id = i.config_id
WHERE i.session_id = %(session)s AND i.name = %(name)s
FOR UPDATE OF i;


-- name: move_instance
-- Move instance %(name)s of session %(session)s from status %(old)s to
-- %(new)s, if it is still %(old)s: one round trip instead of a locking read
-- and a write. Stamps the change as the status machine does
-- (status_changed_at, modified, and metadata.timestamps), the metadata
-- merged by the server so that what the task wrote meanwhile is kept.
-- Returns the instance as updated, and its task.
UPDATE django_triggers_taskinstance i
SET status = %(new)s::text,
    status_changed_at = %(when)s,
    modified = %(when)s,
    metadata = i.metadata || jsonb_build_object(
        'timestamps',
        COALESCE(i.metadata -> 'timestamps', '{}'::jsonb)
            || jsonb_build_object('last_modified', %(when_iso)s::text, %(new)s::text, %(when_iso)s::text))
FROM django_triggers_taskconfig c
WHERE i.session_id = %(session)s
  AND i.name = %(name)s
  AND i.status = %(old)s
  AND c.id = i.config_id
RETURNING to_jsonb(i) AS instance,
          to_jsonb(c) AS config;


-- name: start_instance
-- A worker's start: move instance %(name)s of the session with uid
-- %(session_uid)s from scheduled to running, stamped as move_instance
-- stamps it, and read, in the same statement, what the instance's cascade
-- (a fire of its task's name) needs, as read_for_fire reads it. A row per
-- row of that read, each with the session, the started instance and its
-- task; none if the instance was not scheduled. The cascade's write checks
-- that what was read is unchanged, as any fire's write does.
WITH started AS (
    UPDATE django_triggers_taskinstance i
    SET status = 'running',
        status_changed_at = %(when)s,
        modified = %(when)s,
        metadata = i.metadata || jsonb_build_object(
            'timestamps',
            COALESCE(i.metadata -> 'timestamps', '{}'::jsonb)
                || jsonb_build_object('last_modified', %(when_iso)s::text, 'running', %(when_iso)s::text))
    FROM django_triggers_triggersession s,
         django_triggers_taskconfig c
    WHERE s.uid = %(session_uid)s
      AND i.session_id = s.id
      AND i.name = %(name)s
      AND i.status = 'scheduled'
      AND c.id = i.config_id
    RETURNING i.session_id,
              i.task_name,
              to_jsonb(s) AS session,
              to_jsonb(i) AS instance,
              to_jsonb(c) AS config
),
target AS (
    SELECT session_id, task_name AS trigger_name
    FROM started
)
SELECT started.session, started.instance, started.config, fire_read.*
FROM started
CROSS JOIN (
    SELECT 'c' AS kind,
           s.manager_class,
           s.version,
           c.id AS config_id,
           jsonb_build_object(
               'id', c.id, 'session_id', c.session_id, 'name', c.name, 'after', c.after,
               'and_every', c.and_every, 'unless', c.unless, 'run', c.run, 'using', c.using,
               'within', c.within, 'version', c.version
           ) AS config,
           (i.id IS NULL OR c.and_every = (SELECT trigger_name FROM target)) AS may_create,
           CASE WHEN i.id IS NULL OR c.and_every = (SELECT trigger_name FROM target) THEN (
               SELECT max(n.number)
               FROM django_triggers_taskinstance n
               WHERE n.config_id = c.id
           ) END AS highest_number,
           i.number AS instance_number,
           CASE WHEN i.id IS NOT NULL THEN jsonb_build_object(
               'id', i.id, 'session_id', i.session_id, 'config_id', i.config_id,
               'name', i.name, 'task_name', i.task_name, 'number', i.number,
               'status', i.status, 'kwargs', i.kwargs, 'unless_fired', i.unless_fired,
               'metadata', i.metadata, 'celery_task_id', i.celery_task_id,
               'dispatched_at', i.dispatched_at, 'status_changed_at', i.status_changed_at,
               'modified', i.modified
           ) END AS instance,
           NULL AS trigger_name,
           NULL::jsonb AS kwargs
    FROM django_triggers_triggersession s
    LEFT JOIN django_triggers_tasklistener l
           ON l.session_id = s.id AND l.trigger_name = (SELECT trigger_name FROM target)
    LEFT JOIN django_triggers_taskconfig c
           ON c.id = l.config_id
    LEFT JOIN django_triggers_taskinstance i
           ON i.config_id = c.id AND i.status = 'unstarted'
    WHERE s.id = (SELECT session_id FROM target)
    UNION ALL
    SELECT 'k', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           waited.trigger_name,
           (SELECT f.kwargs
            FROM django_triggers_firedtrigger f
            WHERE f.session_id = (SELECT session_id FROM target)
              AND f.trigger_name = waited.trigger_name
            ORDER BY f.id DESC
            LIMIT 1)
    FROM (
        SELECT DISTINCT m.trigger_name
        FROM django_triggers_tasklistener l
        JOIN django_triggers_taskconfig e
          ON e.id = l.config_id
        JOIN django_triggers_tasklistener m
          ON m.config_id = l.config_id AND m.trigger_name <> (SELECT trigger_name FROM target)
        LEFT JOIN LATERAL (
            SELECT true AS found
            FROM django_triggers_taskinstance o
            WHERE o.config_id = l.config_id AND o.status = 'unstarted'
            LIMIT 1
        ) open_instance ON true
        WHERE l.session_id = (SELECT session_id FROM target)
          AND l.trigger_name = (SELECT trigger_name FROM target)
          AND (e.and_every = (SELECT trigger_name FROM target) OR open_instance.found IS NULL)
    ) waited
) fire_read
ORDER BY fire_read.kind, fire_read.config_id, fire_read.instance_number;


-- name: write_fire
-- Every write of a fire, in one statement, and only if nothing the fire
-- read has changed since: then it returns the new fire's id and the ids of
-- the instances it created; else it writes nothing and returns NULLs.
--
-- session_check keeps the session's version as read (a share lock, so that
-- no change taking the session's lock commits meanwhile). config_check
-- locks the listening tasks as read, one by one in the order given (by id,
-- so that two fires never deadlock); version_check passes only if all of
-- them are still at the versions read. The fire is inserted only then (or not at all, if an
-- earlier fire took its event id), and the other writes only if it was:
-- the listening tasks' versions move on, the new instances are inserted
-- and the open ones updated, if still unstarted.
--
-- Rows are found by primary key (= ANY (ARRAY(...)), or a LATERAL probe):
-- the planner guesses 100 rows for a JSON document, and would rather scan
-- the table, a plan it keeps as the table grows. The status they are updated
-- from is a subquery for the same reason: as a literal, it would let the
-- planner pick the partial index of every open instance in the database.
--
-- A plain fire writes no instance's finish and no Celery result: those are
-- finish_and_fire's, a statement of their own because every table a
-- statement writes costs each execution, even when it writes no row.
WITH session_check AS (
    SELECT 1
    FROM django_triggers_triggersession
    WHERE id = %(session_id)s AND version = %(session_version)s
    FOR SHARE
),
config_check AS (
    SELECT locked.id
    FROM jsonb_to_recordset(%(configs)s::jsonb) AS read (id bigint, version bigint)
    CROSS JOIN LATERAL (
        SELECT c.id
        FROM django_triggers_taskconfig c
        WHERE c.id = read.id AND c.version = read.version
          AND EXISTS (SELECT 1 FROM session_check)
        FOR UPDATE
    ) locked
),
version_check AS (
    SELECT 1
    FROM session_check
    WHERE (SELECT count(*) FROM config_check) = jsonb_array_length(%(configs)s::jsonb)
),
checked AS (
    SELECT 1
    FROM version_check
),
fired AS (
    INSERT INTO django_triggers_firedtrigger (
        session_id, trigger_name, kwargs, source, event_id, scheduled_instances, fired_at,
        trace_context)
    SELECT %(session_id)s::bigint, %(trigger_name)s, %(kwargs)s, %(source)s, %(event_id)s,
           %(scheduled_instances)s, %(fired_at)s, %(trace_context)s
    FROM checked
    ON CONFLICT DO NOTHING
    RETURNING id
),
config_bump AS (
    UPDATE django_triggers_taskconfig
    SET version = version + 1
    WHERE id = ANY (ARRAY(SELECT id FROM config_check))
      AND EXISTS (SELECT 1 FROM fired)
),
inserted AS (
    INSERT INTO django_triggers_taskinstance (
        session_id, config_id, name, task_name, number, status, kwargs, unless_fired,
        result, metadata, log_level, logs_marked_resolved, parent_id, retries, eta,
        deadline, celery_task_id, dispatched_at, status_changed_at, created, modified)
    SELECT r.session_id, r.config_id, r.name, r.task_name, r.number, r.status, r.kwargs,
           r.unless_fired, r.result, r.metadata, r.log_level, r.logs_marked_resolved,
           r.parent_id, r.retries, r.eta, r.deadline, r.celery_task_id, r.dispatched_at,
           r.status_changed_at, r.created, r.modified
    FROM jsonb_populate_recordset(NULL::django_triggers_taskinstance, %(created)s::jsonb) r
    WHERE EXISTS (SELECT 1 FROM fired)
    RETURNING id, name
),
touched AS (
    UPDATE django_triggers_taskinstance i
    SET kwargs = r.kwargs,
        unless_fired = r.unless_fired,
        status = r.status,
        status_changed_at = r.status_changed_at,
        celery_task_id = r.celery_task_id,
        dispatched_at = r.dispatched_at,
        metadata = r.metadata,
        modified = r.modified
    FROM jsonb_populate_recordset(NULL::django_triggers_taskinstance, %(touched)s::jsonb) r
    WHERE i.id = r.id
      AND i.id = ANY (ARRAY(SELECT (jsonb_array_elements(%(touched)s::jsonb) ->> 'id')::bigint))
      AND i.status = (SELECT 'unstarted')
      AND EXISTS (SELECT 1 FROM fired)
)
SELECT (SELECT id FROM fired),
       (SELECT jsonb_agg(jsonb_build_array(id, name)) FROM inserted);


-- name: finish_and_fire
-- A cascade: write_fire's writes, word for word (a test checks it), and
-- also, first, the instance whose cascade this is (%(finishing)s) moved
-- from running to finished with its result, stamped as move_instance
-- stamps, and its Celery task's result row written (%(celery_result)s, a
-- JSON array of django-celery-results' TaskResult rows, none or one; it
-- replaces a row of the same task id, keeping when it was created and
-- started). Nothing is written if the instance is no longer running.
WITH session_check AS (
    SELECT 1
    FROM django_triggers_triggersession
    WHERE id = %(session_id)s AND version = %(session_version)s
    FOR SHARE
),
config_check AS (
    SELECT locked.id
    FROM jsonb_to_recordset(%(configs)s::jsonb) AS read (id bigint, version bigint)
    CROSS JOIN LATERAL (
        SELECT c.id
        FROM django_triggers_taskconfig c
        WHERE c.id = read.id AND c.version = read.version
          AND EXISTS (SELECT 1 FROM session_check)
        FOR UPDATE
    ) locked
),
version_check AS (
    SELECT 1
    FROM session_check
    WHERE (SELECT count(*) FROM config_check) = jsonb_array_length(%(configs)s::jsonb)
),
finish AS (
    UPDATE django_triggers_taskinstance i
    SET status = 'finished',
        status_changed_at = %(now)s,
        modified = %(now)s,
        result = %(result)s,
        metadata = i.metadata || jsonb_build_object(
            'timestamps',
            COALESCE(i.metadata -> 'timestamps', '{}'::jsonb)
                || jsonb_build_object('last_modified', %(now_iso)s::text, 'finished', %(now_iso)s::text))
    WHERE i.id = %(finishing)s
      AND i.status = 'running'
      AND EXISTS (SELECT 1 FROM version_check)
    RETURNING i.id
),
checked AS (
    SELECT 1
    FROM version_check
    WHERE %(finishing)s::bigint IS NULL OR EXISTS (SELECT 1 FROM finish)
),
celery_result AS (
    INSERT INTO django_celery_results_taskresult (
        task_id, periodic_task_name, task_name, task_args, task_kwargs, status, worker,
        content_type, content_encoding, result, date_created, date_started, date_done,
        traceback, meta)
    SELECT r.task_id, r.periodic_task_name, r.task_name, r.task_args, r.task_kwargs, r.status,
           r.worker, r.content_type, r.content_encoding, r.result, r.date_created,
           r.date_started, r.date_done, r.traceback, r.meta
    FROM finish,
         jsonb_populate_recordset(NULL::django_celery_results_taskresult, %(celery_result)s::jsonb) r
    ON CONFLICT (task_id) DO UPDATE
    SET periodic_task_name = EXCLUDED.periodic_task_name,
        task_name = EXCLUDED.task_name,
        task_args = EXCLUDED.task_args,
        task_kwargs = EXCLUDED.task_kwargs,
        status = EXCLUDED.status,
        worker = EXCLUDED.worker,
        content_type = EXCLUDED.content_type,
        content_encoding = EXCLUDED.content_encoding,
        result = EXCLUDED.result,
        date_done = EXCLUDED.date_done,
        traceback = EXCLUDED.traceback,
        meta = EXCLUDED.meta
),
fired AS (
    INSERT INTO django_triggers_firedtrigger (
        session_id, trigger_name, kwargs, source, event_id, scheduled_instances, fired_at,
        trace_context)
    SELECT %(session_id)s::bigint, %(trigger_name)s, %(kwargs)s, %(source)s, %(event_id)s,
           %(scheduled_instances)s, %(fired_at)s, %(trace_context)s
    FROM checked
    ON CONFLICT DO NOTHING
    RETURNING id
),
config_bump AS (
    UPDATE django_triggers_taskconfig
    SET version = version + 1
    WHERE id = ANY (ARRAY(SELECT id FROM config_check))
      AND EXISTS (SELECT 1 FROM fired)
),
inserted AS (
    INSERT INTO django_triggers_taskinstance (
        session_id, config_id, name, task_name, number, status, kwargs, unless_fired,
        result, metadata, log_level, logs_marked_resolved, parent_id, retries, eta,
        deadline, celery_task_id, dispatched_at, status_changed_at, created, modified)
    SELECT r.session_id, r.config_id, r.name, r.task_name, r.number, r.status, r.kwargs,
           r.unless_fired, r.result, r.metadata, r.log_level, r.logs_marked_resolved,
           r.parent_id, r.retries, r.eta, r.deadline, r.celery_task_id, r.dispatched_at,
           r.status_changed_at, r.created, r.modified
    FROM jsonb_populate_recordset(NULL::django_triggers_taskinstance, %(created)s::jsonb) r
    WHERE EXISTS (SELECT 1 FROM fired)
    RETURNING id, name
),
touched AS (
    UPDATE django_triggers_taskinstance i
    SET kwargs = r.kwargs,
        unless_fired = r.unless_fired,
        status = r.status,
        status_changed_at = r.status_changed_at,
        celery_task_id = r.celery_task_id,
        dispatched_at = r.dispatched_at,
        metadata = r.metadata,
        modified = r.modified
    FROM jsonb_populate_recordset(NULL::django_triggers_taskinstance, %(touched)s::jsonb) r
    WHERE i.id = r.id
      AND i.id = ANY (ARRAY(SELECT (jsonb_array_elements(%(touched)s::jsonb) ->> 'id')::bigint))
      AND i.status = (SELECT 'unstarted')
      AND EXISTS (SELECT 1 FROM fired)
)
SELECT (SELECT id FROM fired),
       (SELECT jsonb_agg(jsonb_build_array(id, name)) FROM inserted);
