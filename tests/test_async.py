"""The manager in async code: ``afire`` and its siblings, and the example's async view.

Each coroutine runs as Django's ASGI handler runs a request: in a
thread-sensitive context of its own (:func:`in_request`), so that the
manager's sync work runs in a thread of that request, on its own database
connection. Hence the committed data (``transaction=True``).
"""

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.exceptions import SynchronousOnlyOperation
from django.db import connections
from django.test import AsyncClient
from django.urls import reverse

from django_triggers.aio import AsyncManagerMixin
from django_triggers.exceptions import ConfigurationError, InstanceNotFound
from django_triggers.manager import TriggerManager
from django_triggers.models import (
    FiredTrigger,
    TaskConfig,
    TaskInstance,
    TaskListener,
    TriggerSession,
)
from example_project.questionnaire import services
from tests.concurrent_firing import configure, expected_outcome, outcome
from tests.helpers import RecordingRunner, set_status

ECHO = "tests.Echo"

#: Each async method, by the sync method it runs.
ASYNC_METHODS = {
    "fire": "afire",
    "update_configuration": "aupdate_configuration",
    "get_instance": "aget_instance",
    "replay_failed_instance": "areplay_failed_instance",
    "skip_failed_instance": "askip_failed_instance",
}

pytestmark = pytest.mark.django_db(transaction=True)

T = TypeVar("T")


@pytest.fixture(autouse=True)
def recording_runner(settings: Any) -> None:
    """Scheduled instances are recorded, not run: they stay ``scheduled``."""
    settings.TRIGGERS_DEFAULT_RUNNER = RecordingRunner.name
    RecordingRunner.dispatched.clear()


async def in_request(call: Callable[[], Awaitable[T]]) -> T:
    """Await ``call()`` as Django's ASGI handler awaits a request.

    In a thread-sensitive context of its own, so that its sync work runs in
    a thread (and on a database connection) of its own, closed at the end.
    """
    async with ThreadSensitiveContext():
        try:
            return await call()
        finally:
            await sync_to_async(connections.close_all)()


def run_in_request(call: Callable[[], Awaitable[T]]) -> T:
    """Run ``call()`` in an event loop of its own, as one request."""
    return asyncio.run(in_request(call))


def new_uid() -> str:
    return f"async-{uuid.uuid4().hex}"


# -- the manager in an event loop ------------------------------------------------------------


def test_constructing_a_manager_in_an_event_loop_reads_and_writes_nothing(
    django_assert_num_queries: Any,
) -> None:
    uid = new_uid()

    async def construct() -> TriggerManager:
        manager = TriggerManager(uid)  # a query here would raise SynchronousOnlyOperation
        assert (manager.session_uid, repr(manager)) == (uid, f"<TriggerManager {uid!r}>")
        return manager

    with django_assert_num_queries(0):
        manager = asyncio.run(construct())

    assert manager._session is None
    assert not TriggerSession.objects.filter(uid=uid).exists()


def test_the_sync_methods_refuse_an_event_loop_and_the_async_ones_do_not() -> None:
    uid = new_uid()

    async def fire() -> list[TaskInstance]:
        manager = TriggerManager(uid)
        with pytest.raises(SynchronousOnlyOperation):
            manager.fire("start")
        return await manager.afire("start")

    assert run_in_request(fire) == []
    assert list(FiredTrigger.objects.filter(session__uid=uid).values_list("trigger_name")) == [
        ("start",)
    ]


def test_each_async_method_takes_the_arguments_of_its_sync_one() -> None:
    def parameters(method: Any) -> list[tuple[str, Any, Any]]:
        signature = inspect.signature(method)
        return [(p.name, p.kind, p.default) for p in signature.parameters.values()]

    for sync_name, async_name in ASYNC_METHODS.items():
        async_method = getattr(TriggerManager, async_name)
        assert getattr(AsyncManagerMixin, async_name) is async_method
        assert inspect.iscoroutinefunction(async_method)
        assert parameters(async_method) == parameters(getattr(TriggerManager, sync_name))
        assert f"TriggerManager.{sync_name}`" in async_method.__doc__


# -- the same outcome as the sync methods ------------------------------------------------------

CONFIGURATION = {
    "t_ab": {"after": ["a", "b"], "run": ECHO},
    "t_next": {"after": ["t_ab"], "run": ECHO},
    "t_every": {"after": [], "andEvery": "tick", "run": ECHO, "unless": ["stop"]},
}

#: ``(method, args, kwargs)``, or ``("fail", name)`` to fail that instance first.
SCENARIO: list[tuple[Any, ...]] = [
    ("update_configuration", (CONFIGURATION,), {}),
    ("fire", ("a", {"x": 1}), {}),
    ("fire", ("tick",), {"source": FiredTrigger.APPLICATION}),
    ("fire", ("b", None), {"event_id": "event-1"}),
    ("fire", ("b",), {"event_id": "event-1"}),  # a repeat: changes nothing
    ("get_instance", ("t_ab#0",), {}),
    ("fail", "t_ab#0"),
    ("replay_failed_instance", ("t_ab#0", {"a": {"x": 2}}), {}),
    ("fail", "t_ab#1"),
    ("skip_failed_instance", ("t_ab#1",), {"cascade": True, "result": {"done": True}}),
    ("fail", "t_every#0"),
    ("skip_failed_instance", ("t_every#0",), {}),
    ("fail", "t_next#0"),
    ("replay_failed_instance", ("t_next#0",), {}),
    ("get_instance", ("t_next#1",), {}),
]


def described(value: Any) -> Any:
    """What a method returned, without what differs between sessions (pks, times)."""
    if isinstance(value, list):
        return [described(item) for item in value]
    if isinstance(value, TaskInstance):
        return {
            "name": value.name,
            "status": value.status,
            "kwargs": value.kwargs,
            "result": value.result,
            "parent": value.parent.name if value.parent else None,
            "retries": value.retries,
            "config": value.config.name,
        }
    return value


def snapshot(manager: TriggerManager) -> dict[str, Any]:
    """The session's configuration, instances and fires, without times."""
    state = manager.debug_repr()
    del state["session"]
    for fired in state["fired_triggers"]:
        del fired["fired_at"]
    for instance in state["instances"].values():
        instance["metadata"].pop("timestamps", None)
    return state


def run_sync_scenario(manager: TriggerManager) -> list[Any]:
    results = []
    for step in SCENARIO:
        if step[0] == "fail":
            set_status(manager, step[1], TaskInstance.FAILED)
            continue
        name, args, kwargs = step
        results.append(described(getattr(manager, name)(*args, **kwargs)))
    return results


async def run_async_scenario(manager: TriggerManager) -> list[Any]:
    results = []
    for step in SCENARIO:
        if step[0] == "fail":
            await sync_to_async(set_status)(manager, step[1], TaskInstance.FAILED)
            continue
        name, args, kwargs = step
        result = await getattr(manager, ASYNC_METHODS[name])(*args, **kwargs)
        results.append(await sync_to_async(described)(result))
    return results


def test_each_async_method_has_the_outcome_of_its_sync_one() -> None:
    assert {step[0] for step in SCENARIO} == {*ASYNC_METHODS, "fail"}
    sync_manager = TriggerManager(new_uid())
    sync_results = run_sync_scenario(sync_manager)
    sync_dispatched = list(RecordingRunner.dispatched)
    RecordingRunner.dispatched.clear()

    async_manager = TriggerManager(new_uid())
    async_results = run_in_request(lambda: run_async_scenario(async_manager))

    assert async_results == sync_results
    assert snapshot(async_manager) == snapshot(sync_manager)
    assert RecordingRunner.dispatched == sync_dispatched
    # What the scenario is meant to show, so that both cannot be wrong alike.
    assert sync_dispatched == ["t_every#0", "t_ab#0", "t_ab#1", "t_next#0", "t_next#1"]
    fired = [[instance["name"] for instance in result] for result in sync_results[1:5]]
    assert fired == [[], ["t_every#0"], ["t_ab#0"], ["t_ab#0"]]  # a repeat returns the first's
    assert snapshot(sync_manager)["instances"]["t_ab#1"]["kwargs"] == {"a": {"x": 2}, "b": {}}
    statuses = {name: i["status"] for name, i in snapshot(sync_manager)["instances"].items()}
    assert statuses == {
        "t_ab#0": "replayed",
        "t_ab#1": "skipped",
        "t_every#0": "skipped",
        "t_next#0": "replayed",
        "t_next#1": "scheduled",
    }


def all_rows() -> dict[str, Any]:
    """Every row of the library, as plain values."""
    return {
        model.__name__: list(model.objects.order_by("pk").values())
        for model in (TriggerSession, TaskConfig, TaskListener, FiredTrigger, TaskInstance)
    }


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "exception"),
    [
        ("fire", ("start", {"when": object()}), {}, ValueError),
        ("fire", ("",), {}, ValueError),
        ("fire", ("start", ["not", "a", "mapping"]), {}, TypeError),
        ("fire", ("start",), {"source": "nowhere"}, ValueError),
        ("fire", ("start", {"x": 2}), {"event_id": "event-1"}, ValueError),
        ("update_configuration", ({"t_x": {"after": ["a"], "run": "no.Such"}},), {}, None),
        ("update_configuration", ({"t_x": {"after": ["t_x"], "run": ECHO}},), {}, None),
        ("get_instance", ("t_a#9",), {}, InstanceNotFound),
        ("replay_failed_instance", ("t_a#0",), {}, ValueError),
        ("skip_failed_instance", ("t_a#0",), {"cascade": True}, ValueError),
        ("skip_failed_instance", ("t_a#1",), {}, InstanceNotFound),
    ],
)
def test_an_async_method_refuses_what_its_sync_one_refuses_and_stores_nothing(
    method: str, args: tuple[Any, ...], kwargs: dict[str, Any], exception: type | None
) -> None:
    manager = TriggerManager(new_uid())
    manager.update_configuration({"t_a": {"after": ["start"], "run": ECHO}})
    manager.fire("start", {"x": 1}, event_id="event-1")
    before = all_rows()

    with pytest.raises(Exception) as sync_refusal:
        getattr(manager, method)(*args, **kwargs)
    with pytest.raises(Exception) as async_refusal:
        run_in_request(lambda: getattr(manager, ASYNC_METHODS[method])(*args, **kwargs))

    assert type(async_refusal.value) is type(sync_refusal.value)
    assert str(async_refusal.value) == str(sync_refusal.value)
    assert isinstance(sync_refusal.value, exception or ConfigurationError)
    assert all_rows() == before


# -- the example project's async view ------------------------------------------------------------


def test_the_async_view_fires_and_answers_what_it_scheduled() -> None:
    manager = services.start_questionnaire()
    services.receive_first_page(manager, {"name": "Ada Lovelace", "birthday": "1815-12-10"})
    url = reverse("questionnaire:complete_json", args=[manager.session_uid])

    response = run_in_request(lambda: AsyncClient().post(url))

    assert response.status_code == 200
    assert response.json() == {"session": manager.session_uid, "scheduled": ["t_importSubject#0"]}
    fired = FiredTrigger.objects.filter(session=manager.session).order_by("id")
    assert [(f.trigger_name, f.source, f.scheduled_instances) for f in fired] == [
        ("firstPageReceived", FiredTrigger.APPLICATION, []),
        ("questionnaireComplete", FiredTrigger.APPLICATION, ["t_importSubject#0"]),
    ]
    assert manager.get_instance("t_importSubject#0").status == TaskInstance.SCHEDULED
    assert RecordingRunner.dispatched == ["t_importSubject#0"]


def test_the_async_view_refuses_an_unknown_session_and_other_methods() -> None:
    uid = new_uid()
    client = AsyncClient()

    missing = run_in_request(
        lambda: client.post(reverse("questionnaire:complete_json", args=[uid]))
    )
    assert missing.status_code == 404
    assert not TriggerSession.objects.filter(uid=uid).exists()

    manager = services.start_questionnaire()
    url = reverse("questionnaire:complete_json", args=[manager.session_uid])
    assert run_in_request(lambda: client.get(url)).status_code == 405
    assert not FiredTrigger.objects.filter(session=manager.session).exists()


# -- concurrent fires from one event loop -------------------------------------------------------

WORKERS = 4
FIRES = 10


async def fire_all(session_uid: str, worker: int, fires: int) -> None:
    """``tests.concurrent_firing.fire_all``, awaited."""
    manager = TriggerManager(session_uid)
    for n in range(fires):
        await manager.afire(f"go_{worker}_{n}", {"worker": worker, "n": n})
        await manager.afire("tick", {"worker": worker, "n": n})
        await manager.afire("shared_a" if n % 2 else "shared_b", {"worker": worker})


async def gather(calls: list[Callable[[], Awaitable[None]]], *, one_request: bool) -> None:
    """Await the calls together: in one request, or each in a request of its own."""
    if one_request:
        await in_request(lambda: asyncio.gather(*(call() for call in calls)))
    else:
        await asyncio.gather(*(in_request(call) for call in calls))


@pytest.mark.parametrize("one_request", [True, False], ids=["one request", "a request each"])
def test_gathered_fires_into_one_session_are_all_applied_once(one_request: bool) -> None:
    session_uid = new_uid()
    configure(session_uid, WORKERS, FIRES)

    calls = [lambda w=w: fire_all(session_uid, w, FIRES) for w in range(WORKERS)]
    asyncio.run(gather(calls, one_request=one_request))

    assert outcome(session_uid, RecordingRunner.dispatched) == expected_outcome(WORKERS, FIRES)


@pytest.mark.parametrize("one_request", [True, False], ids=["one request", "a request each"])
def test_gathered_fires_into_distinct_sessions_are_all_applied_once(
    one_request: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatched: list[tuple[str, str]] = []

    def run(self: RecordingRunner, manager: TriggerManager, task_instance: TaskInstance) -> None:
        with self.lock:
            dispatched.append((manager.session_uid, task_instance.name))

    monkeypatch.setattr(RecordingRunner, "run", run)
    sessions = [new_uid() for _ in range(3)]
    for session_uid in sessions:
        configure(session_uid, 2, FIRES)

    calls = [lambda uid=uid, w=w: fire_all(uid, w, FIRES) for uid in sessions for w in range(2)]
    asyncio.run(gather(calls, one_request=one_request))

    for session_uid in sessions:
        names = [name for uid, name in dispatched if uid == session_uid]
        assert outcome(session_uid, names) == expected_outcome(2, FIRES)
