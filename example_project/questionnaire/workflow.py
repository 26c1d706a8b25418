"""How the questionnaire's tasks depend on its triggers.

Read each entry as a sentence: *after* these triggers (*and every* time this
one fires), *unless* those fired, *run* this task.
"""

from typing import Any

from example_project.questionnaire.tasks import (
    ComputeScore,
    ImportBrowserMetadata,
    ImportResponses,
    ImportSubject,
)

CONFIGURATION: dict[str, dict[str, Any]] = {
    "t_importSubject": {
        "after": ["firstPageReceived", "questionnaireComplete"],
        "run": ImportSubject.name,
    },
    "t_importResponses": {
        "after": ["t_importSubject"],
        "andEvery": "pageReceived",
        "run": ImportResponses.name,
    },
    "t_importBrowserMetadata": {
        "after": ["t_importSubject", "pageReceived"],
        "unless": ["isEmbeddedApplication"],
        "run": ImportBrowserMetadata.name,
        "withParams": {"browser": {"source": "user-agent"}},
    },
    "t_computeScore": {
        "after": ["t_importSubject", "questionnaireComplete"],
        "run": ComputeScore.name,
        "withParams": {"scoring": {"model": "Psych 01"}},
    },
}
