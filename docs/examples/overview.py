"""The example on the front page."""

from typing import Any

from django_triggers.manager import TriggerManager

from .tutorial.tasks import ImportSubject


def overview(questionnaire_id: int, responses: dict[str, Any]) -> TriggerManager:
    # [overview]
    manager = TriggerManager(f"questionnaire-{questionnaire_id}")  # found or created
    manager.update_configuration(
        {
            "t_importSubject": {
                "after": ["firstPageReceived", "questionnaireComplete"],
                "run": ImportSubject.name,
            },
        }
    )
    manager.fire("firstPageReceived", {"responses": responses})
    # ... minutes or days later, from another request, maybe on another server:
    manager.fire("questionnaireComplete")  # both have fired: ImportSubject runs
    # [/overview]
    return manager
