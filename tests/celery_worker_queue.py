"""Loaded by test workers (``celery worker --include``): publish to the queue they consume.

A test worker consumes a queue of its own (``-Q``), named in the environment
variable ``TRIGGERS_TEST_CELERY_QUEUE``. Setting it as the app's default queue
makes what the worker's tasks send (cascades, retries) go back to that worker,
and never to the broker's shared default queue.
"""

import os

from example_project.celery import app

QUEUE_ENV = "TRIGGERS_TEST_CELERY_QUEUE"

if os.environ.get(QUEUE_ENV):
    app.conf.task_default_queue = os.environ[QUEUE_ENV]
