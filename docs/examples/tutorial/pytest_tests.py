"""questionnaire/test_workflow.py: the same checks with pytest-django fixtures.

``conftest.py`` holds ``pytest_plugins = ["django_triggers.testing"]``.
"""

from django_triggers.manager import TriggerManager
from django_triggers.testing import TriggerAssertions

from .workflow import CONFIGURATION


def test_the_subject_is_imported_once_complete(
    trigger_manager: TriggerManager, triggers: TriggerAssertions
) -> None:
    trigger_manager.update_configuration(CONFIGURATION)

    trigger_manager.fire(
        "firstPageReceived", {"responses": {"name": "Ada Lovelace", "birthday": "1815-12-10"}}
    )
    triggers.assertInstanceUnstarted("t_importSubject#0")

    trigger_manager.fire("questionnaireComplete")
    triggers.assertInstanceFinished("t_importSubject#0")
    triggers.assertUnresolvedTasks(["t_importBrowserMetadata", "t_importResponses"])
