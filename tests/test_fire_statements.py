"""What a fire costs the database: a fixed number of statements, none after its commit."""

import pytest
from django.db import OperationalError, connection
from django.db.models.signals import post_init
from django.test.utils import CaptureQueriesContext

from django_triggers.manager import TriggerManager
from django_triggers.models import FiredTrigger, TaskInstance
from django_triggers.stores import store_for
from django_triggers.stores.postgres import row_document
from tests.helpers import RecordingRunner

ECHO = "tests.Echo"
FIRED_TABLE = f"INSERT INTO {FiredTrigger._meta.db_table}"


@pytest.fixture(autouse=True)
def _fresh_runner():
    RecordingRunner.dispatched.clear()
    yield
    RecordingRunner.dispatched.clear()


def configure(manager: TriggerManager, others: int) -> None:
    """``target`` after ``first`` and ``second``, and ``others`` tasks nothing fires."""
    configuration = {
        "target": {"after": ["first", "second"], "run": ECHO, "using": RecordingRunner.name}
    }
    for i in range(others):
        configuration[f"other_{i}"] = {
            "after": [f"unrelated_{i}", "first"],
            "run": ECHO,
            "using": RecordingRunner.name,
        }
    manager.update_configuration(configuration)


def statements_of(manager: TriggerManager, trigger: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        manager.fire(trigger)
    return [query["sql"] for query in captured.captured_queries]


def test_a_fire_runs_as_many_statements_in_a_large_session_as_in_a_small_one(transactional_db):
    small, large = TriggerManager("session-size-small"), TriggerManager("session-size-large")
    for manager, others in ((small, 1), (large, 200)):
        manager.update_configuration(
            {
                "target": {
                    "after": ["first", "second"],
                    "run": ECHO,
                    "using": RecordingRunner.name,
                },
                **{f"other_{i}": {"after": [f"unrelated_{i}"], "run": ECHO} for i in range(others)},
            }
        )
        manager.fire("unrelated_0")

    counts = {
        trigger: (len(statements_of(small, trigger)), len(statements_of(large, trigger)))
        for trigger in ("first", "second")
    }

    assert counts["first"][0] == counts["first"][1]
    assert counts["second"][0] == counts["second"][1]
    assert RecordingRunner.dispatched == ["target#0", "target#0"]


@pytest.mark.postgres
def test_a_fire_runs_as_many_statements_for_200_listening_tasks_as_for_one(transactional_db):
    small, large = TriggerManager("statements-small"), TriggerManager("statements-large")
    configure(small, others=1)
    configure(large, others=200)
    for manager in (small, large):
        manager.fire("unrelated_0")

    counts = {
        trigger: (len(statements_of(small, trigger)), len(statements_of(large, trigger)))
        for trigger in ("first", "second")
    }

    assert counts["first"][0] == counts["first"][1]
    assert counts["second"][0] == counts["second"][1]
    assert RecordingRunner.dispatched == ["other_0#0", "other_0#0", "target#0", "target#0"]


def test_a_fire_that_schedules_writes_nothing_after_its_commit(transactional_db):
    manager = TriggerManager("statements-after-commit")
    configure(manager, others=0)
    manager.fire("first")

    statements = statements_of(manager, "second")

    assert RecordingRunner.dispatched == ["target#0"]
    fire_written = max(
        i
        for i, sql in enumerate(statements)
        if FIRED_TABLE in " ".join(sql.replace('"', "").replace("`", "").split())
    )
    # Without a transaction of its own (PostgreSQL, autocommit), the fire's
    # write is its last statement; in one, the commit follows it.
    assert statements[fire_written + 1 :] in ([], ["COMMIT"])


def test_an_instance_is_recorded_as_dispatched_before_its_runner_gets_it(transactional_db):
    seen = []

    class Inspecting(RecordingRunner):
        name = "test_fire_statements.inspecting"

        def run(self, manager, task_instance):
            stored = TaskInstance.objects.get(pk=task_instance.pk)
            seen.append((stored.status, stored.dispatched_at is not None))

    manager = TriggerManager("statements-dispatched")
    manager.update_configuration({"t": {"after": ["a"], "run": ECHO, "using": Inspecting.name}})

    manager.fire("a")

    assert seen == [(TaskInstance.SCHEDULED, True)]


@pytest.mark.postgres
def test_the_instances_a_fire_reads_are_those_the_orm_would_build(transactional_db):
    manager = TriggerManager("fire-statements-rows")
    configure(manager, others=0)
    manager.fire("first", {"x": 1})
    state = store_for("default").read_for_fire(manager.session.pk, "second")

    [read] = state.open_instances[state.configs[0].pk]
    loaded = TaskInstance.objects.get(pk=read.pk)

    fields = {f.attname for f in TaskInstance._meta.concrete_fields}
    present = fields - read.get_deferred_fields()
    assert {"id", "status", "kwargs", "unless_fired", "metadata"} <= present
    assert {name: getattr(read, name) for name in present} == {
        name: getattr(loaded, name) for name in present
    }
    assert (read._state.adding, read._state.db) == (False, "default")
    assert read.created == loaded.created  # deferred: loaded on access


def test_a_fire_that_can_only_complete_instances_reads_no_numbers_or_latest_kwargs(
    transactional_db,
):
    manager = TriggerManager("fire-statements-completing")
    configure(manager, others=0)
    manager.fire("first", {"x": 1})

    completing = store_for("default").read_for_fire(manager.session.pk, "second")
    [config] = completing.configs

    assert (completing.next_numbers, completing.latest_kwargs) == ({config.pk: None}, {})
    with pytest.raises(RuntimeError, match="'target'"):
        completing.next_number(config)


def test_a_fire_that_may_create_an_instance_reads_its_number_and_latest_kwargs(
    transactional_db,
):
    manager = TriggerManager("fire-statements-creating")
    configure(manager, others=0)
    manager.fire("first", {"x": 1})
    manager.fire("second")

    creating = store_for("default").read_for_fire(manager.session.pk, "second")
    [config] = creating.configs

    assert creating.next_number(config) == 1
    assert creating.latest_kwargs == {"first": {"x": 1}}


def test_post_init_receivers_see_the_instances_a_fire_reads(transactional_db):
    manager = TriggerManager("fire-statements-post-init")
    configure(manager, others=0)
    manager.fire("first")
    seen = []

    def note(sender, instance, **kwargs):
        seen.append((instance.name, instance.status))

    post_init.connect(note, sender=TaskInstance)
    try:
        manager.fire("second")
    finally:
        post_init.disconnect(note, sender=TaskInstance)

    assert ("target#0", TaskInstance.UNSTARTED) in seen


@pytest.mark.postgres
@pytest.mark.parametrize("model", [TaskInstance, FiredTrigger])
def test_the_rows_a_fire_writes_read_back_as_the_orm_wrote_them(transactional_db, model):
    manager = TriggerManager("fire-statements-values")
    configure(manager, others=0)
    manager.fire("first", {"when": "2026-01-01", "n": 1.5, "text": "é\u2028"})
    manager.fire("second", {"list": [1, 2], "nested": {"a": [None, True]}})
    store = store_for("default")
    fields = [f.attname for f in model._meta.concrete_fields if not f.primary_key]
    for stored in model.objects.filter(session=manager.session):
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT to_jsonb(r) FROM jsonb_populate_record(NULL::{model._meta.db_table}, "
                f"%s::jsonb) r",
                [row_document(stored)],
            )
            [(document,)] = cursor.fetchall()

        written = store.from_document(model, document)

        assert {name: getattr(written, name) for name in fields} == {
            name: getattr(stored, name) for name in fields
        }


@pytest.mark.postgres
def test_a_row_document_keeps_every_microsecond_and_the_fields_json_encoder(transactional_db):
    manager = TriggerManager("fire-statements-precision")
    configure(manager, others=0)
    manager.fire("first")
    instance = TaskInstance.objects.get(session=manager.session)
    instance.eta = instance.created.replace(microsecond=123456)
    instance.metadata = {"at": instance.eta}  # DjangoJSONEncoder: milliseconds, as Django stores

    document = row_document(instance)

    assert instance.eta.utcoffset().total_seconds() == 0
    assert f'"eta":"{instance.eta.isoformat()}"' in document
    assert f'"metadata":{{"at":"{instance.eta.isoformat()[:23]}Z"}}' in document


@pytest.mark.postgres
def test_a_fire_after_its_connection_was_lost_runs_on_the_new_connection(transactional_db):
    manager = TriggerManager("statements-lost-connection")
    configure(manager, others=0)
    manager.fire("first")
    with pytest.raises(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    with pytest.raises(OperationalError):
        manager.fire("second")  # as any statement on the lost connection
    connection.close_if_unusable_or_obsolete()  # as Django does after a request
    manager.fire("second")

    assert manager.get_instance("target#0").status == TaskInstance.SCHEDULED
    assert RecordingRunner.dispatched == ["target#0"]


def test_a_fire_creating_instances_with_and_without_a_value_stores_each_as_given(
    transactional_db,
):
    manager = TriggerManager("statements-mixed-nulls")
    manager.update_configuration(
        {
            "t_timed": {"after": ["go", "later"], "run": ECHO, "within": 60},
            "t_open": {"after": ["go", "later"], "run": ECHO},
            "t_plain": {"after": ["go", "later"], "run": ECHO},
        }
    )

    manager.fire("go")

    deadlines = {name: manager.get_instance(f"{name}#0").deadline for name in ("t_timed", "t_open")}
    assert deadlines["t_timed"] is not None
    assert deadlines["t_open"] is None
    assert manager.get_instance("t_plain#0").deadline is None
    assert manager.get_instance("t_timed#0").kwargs == {"go": {}}
