# Load the Celery app when Django starts, so that @shared_task and
# register_task use it (the standard Celery + Django layout).
from example_project.celery import app as celery_app

__all__ = ["celery_app"]
