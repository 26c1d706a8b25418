"""Run Celery tasks once a configured combination of triggers has fired."""

__version__ = "0.1.0"
