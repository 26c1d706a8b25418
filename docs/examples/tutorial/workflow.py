"""questionnaire/workflow.py: which task runs after which triggers."""

from typing import Any

from .tasks import ImportBrowserMetadata, ImportResponses, ImportSubject

CONFIGURATION: dict[str, dict[str, Any]] = {
    # After the first page and the completion, in either order, import the subject.
    "t_importSubject": {
        "after": ["firstPageReceived", "questionnaireComplete"],
        "run": ImportSubject.name,
    },
    # After the subject is imported, and every time a page is received, store it.
    "t_importResponses": {
        "after": ["t_importSubject"],
        "andEvery": "pageReceived",
        "run": ImportResponses.name,
    },
    # After the subject and a page, unless answered from an embedded application,
    # record the browser.
    "t_importBrowserMetadata": {
        "after": ["t_importSubject", "pageReceived"],
        "unless": ["isEmbeddedApplication"],
        "run": ImportBrowserMetadata.name,
    },
}
