"""The examples of the Metrics page."""

import os

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)


# [view]
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``/metrics`` without django-prometheus: this process's metrics, or every process's."""
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # The files of every process of the machine (web and worker processes).
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


# [/view]
