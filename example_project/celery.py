import os

from celery import Celery, Task
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def close_old_connections(sender: Task | None = None, **kwargs: object) -> None:
    """Close connections past CONN_MAX_AGE or broken, as Django does around a request.

    Celery's Django fixup keeps connections only with CELERY_DB_REUSE_MAX
    (see settings.py), and then never checks them. Not around eager tasks,
    which may run inside the caller's transaction.
    """
    from django.db import close_old_connections

    if sender is None or not getattr(sender.request, "is_eager", False):
        close_old_connections()
