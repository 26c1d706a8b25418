"""Concurrent fires into one session: none lost, nothing scheduled twice.

The fires and their expected outcome are described in ``tests.concurrent_firing``.
"""

import uuid
from functools import partial

import pytest

from tests.concurrent_firing import (
    RecordingRunner,
    configure,
    expected_outcome,
    fire_all,
    fire_from_processes,
    outcome,
)
from tests.helpers import run_together

WORKERS = 4
FIRES = 25


@pytest.mark.django_db(transaction=True)
def test_fires_from_threads_into_one_session_are_all_applied_once():
    session_uid = f"threads-{uuid.uuid4().hex}"
    configure(session_uid, WORKERS, FIRES)
    RecordingRunner.dispatched.clear()

    run_together([partial(fire_all, session_uid, worker, FIRES) for worker in range(WORKERS)])

    dispatched = list(RecordingRunner.dispatched)
    assert outcome(session_uid, dispatched) == expected_outcome(WORKERS, FIRES)


@pytest.mark.django_db(transaction=True)
def test_fires_from_processes_into_one_session_are_all_applied_once():
    session_uid = f"processes-{uuid.uuid4().hex}"
    configure(session_uid, WORKERS, FIRES)
    dispatched = fire_from_processes(session_uid, WORKERS, FIRES)
    assert outcome(session_uid, dispatched) == expected_outcome(WORKERS, FIRES)
