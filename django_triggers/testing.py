"""Tools for testing workflows built on django-triggers.

With ``unittest`` or Django test cases::

    class QuestionnaireTests(TriggerManagerTestCaseMixin, TransactionTestCase):
        def setUp(self):
            super().setUp()
            self.manager = TriggerManager("test-session")
            self.manager.update_configuration(CONFIGURATION)

        def test_subject_is_imported(self):
            self.manager.fire("firstPageReceived", {...})
            self.manager.fire("questionnaireComplete")
            self.assertInstanceFinished("t_importSubject#0", {"subjectId": 1})

While a test runs, tasks run in threads of the test process (the
``threading`` runner), and every assertion first waits for those threads,
cascades included. Tasks run once the fire's transaction commits, so use
``TransactionTestCase`` (pytest-django: ``transactional_db``). Under
Django's ``TestCase`` nothing commits: wrap fires in
``self.captureOnCommitCallbacks(execute=True)``, and the tasks then run in
the test's own thread and transaction.

With pytest, add ``pytest_plugins = ["django_triggers.testing"]`` to your
``conftest.py`` for the ``trigger_manager`` and ``triggers`` fixtures.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django.test.utils import override_settings

from django_triggers.exceptions import InstanceNotFound
from django_triggers.runners import ThreadingTaskRunner

if TYPE_CHECKING:
    from django_triggers.manager import TriggerManager
    from django_triggers.models import TaskInstance

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    pytest = None  # type: ignore[assignment]


class TriggerManagerTestCaseMixin:
    """Assertions about the instances of ``self.manager``'s session."""

    manager: TriggerManager
    failureException: type[BaseException] = AssertionError

    def setUp(self) -> None:
        self._triggers_settings = override_settings(TRIGGERS_DEFAULT_RUNNER="threading")
        self._triggers_settings.enable()
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        try:
            _join_task_threads()
            super().tearDown()  # type: ignore[misc]
        finally:
            self._triggers_settings.disable()

    # -- instance status -------------------------------------------------------

    def assertInstanceAbandoned(self, name: str) -> None:
        self._assert_status(name, "abandoned")

    def assertInstanceFailed(self, name: str, exc_type: type[BaseException] | str) -> None:
        instance = self._assert_status(name, "failed")
        expected = exc_type if isinstance(exc_type, str) else _dotted_path(exc_type)
        actual = instance.metadata.get("exception_type")
        if actual != expected:
            raise self.failureException(
                f"{name} failed with {actual}, not {expected}.\n{_describe_failure(instance)}"
            )

    def assertInstanceFinished(self, name: str, expected_result: Any = None) -> None:
        instance = self._assert_status(name, "finished")
        if expected_result is not None and instance.result != expected_result:
            raise self.failureException(
                f"{name} finished with result {instance.result!r}, not {expected_result!r}"
            )

    def assertInstanceMissing(self, name: str) -> None:
        instance = self._find_instance(name)
        if instance is not None:
            raise self.failureException(
                f"{name} should not exist, but it does (status {instance.status!r})"
            )

    def assertInstanceReplayed(self, name: str) -> None:
        self._assert_status(name, "replayed")

    def assertInstanceSkipped(self, name: str) -> None:
        self._assert_status(name, "skipped")

    def assertInstanceUnstarted(self, name: str) -> None:
        self._assert_status(name, "unstarted")

    # -- the session as a whole ------------------------------------------------

    def assertUnresolvedTasks(self, names: Iterable[str]) -> None:
        _join_task_threads()
        actual = sorted(config.name for config in self.manager.get_unresolved_tasks())
        if actual != sorted(names):
            raise self.failureException(f"unresolved tasks are {actual}, expected {sorted(names)}")

    def assertUnresolvedInstances(self, names: Iterable[str]) -> None:
        _join_task_threads()
        unresolved = self.manager.get_unresolved_instances()
        actual = sorted(instance.name for instance in unresolved)
        if actual != sorted(names):
            statuses = ", ".join(f"{i.name}: {i.status}" for i in unresolved) or "none"
            raise self.failureException(
                f"unresolved instances are {actual}, expected {sorted(names)} ({statuses})"
            )

    # -- helpers ---------------------------------------------------------------

    def _find_instance(self, name: str) -> TaskInstance | None:
        _join_task_threads()
        try:
            return self.manager.get_instance(name)
        except InstanceNotFound:
            return None

    def _assert_status(self, name: str, expected: str) -> TaskInstance:
        instance = self._find_instance(name)
        if instance is None:
            existing = ", ".join(
                i.name for i in self.manager.session.instances.order_by("task_name", "number")
            )
            raise self.failureException(
                f"{name} should be {expected}, but there is no such instance "
                f"(instances: {existing or 'none'})"
            )
        if instance.status != expected:
            message = f"{name} should be {expected}, but it is {instance.status}"
            if instance.status == "failed":
                message += f".\n{_describe_failure(instance)}"
            raise self.failureException(message)
        return instance


def _join_task_threads() -> None:
    ThreadingTaskRunner.join_all(timeout=120)


def _dotted_path(exc_type: type[BaseException]) -> str:
    return f"{exc_type.__module__}.{exc_type.__qualname__}"


def _describe_failure(instance: TaskInstance) -> str:
    metadata = instance.metadata
    return (
        f"Exception: {metadata.get('exception_type')}: {metadata.get('exception_message', '')}\n"
        f"Context: {metadata.get('exception_context')}\n"
        f"{metadata.get('traceback', '(no traceback)')}"
    )


class TriggerAssertions(TriggerManagerTestCaseMixin):
    """The mixin's assertions for one manager, outside a test case (pytest)."""

    def __init__(self, manager: TriggerManager):
        self.manager = manager


if pytest is not None:

    @pytest.fixture
    def trigger_manager(transactional_db: None, settings: Any) -> Iterator[TriggerManager]:
        """A manager on a fresh session, with tasks run in threads and awaited at teardown."""
        # Imported here: pytest loads this module as a plugin before Django is
        # set up, and the manager's module imports the models.
        from django_triggers.manager import TriggerManager

        settings.TRIGGERS_DEFAULT_RUNNER = "threading"
        manager = TriggerManager(f"test-{uuid.uuid4().hex}")
        manager.session  # noqa: B018  (created now: commands and the admin can find it)
        yield manager
        _join_task_threads()

    @pytest.fixture
    def triggers(trigger_manager: TriggerManager) -> TriggerAssertions:
        """The assertions of :class:`TriggerManagerTestCaseMixin` on ``trigger_manager``."""
        return TriggerAssertions(trigger_manager)
