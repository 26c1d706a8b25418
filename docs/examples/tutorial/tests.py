"""questionnaire/tests.py: the workflow tested with TriggerManagerTestCaseMixin."""

from django.test import TestCase, TransactionTestCase

from django_triggers.manager import TriggerManager
from django_triggers.testing import TriggerManagerTestCaseMixin
from example_project.questionnaire.models import PageResponse, Subject

from .workflow import CONFIGURATION

FIRST_PAGE = {"responses": {"name": "Ada Lovelace", "birthday": "1815-12-10"}}


class QuestionnaireWorkflowTests(TriggerManagerTestCaseMixin, TransactionTestCase):
    """Tasks run in threads once each fire commits; every assertion waits for them."""

    def setUp(self) -> None:
        super().setUp()
        self.manager = TriggerManager("questionnaire-test")
        self.manager.update_configuration(CONFIGURATION)

    def test_the_subject_waits_for_the_questionnaire_to_be_complete(self) -> None:
        self.manager.fire("firstPageReceived", FIRST_PAGE)

        self.assertInstanceUnstarted("t_importSubject#0")
        self.assertUnresolvedInstances(["t_importSubject#0"])

        self.manager.fire("questionnaireComplete")

        # Assertions wait for the task threads; a plain query does not, so it comes after.
        self.assertInstanceFinished("t_importSubject#0")
        subject = Subject.objects.get(session_uid="questionnaire-test")
        self.assertInstanceFinished("t_importSubject#0", {"subjectId": subject.pk})

    def test_every_page_is_stored_once_the_subject_exists(self) -> None:
        self.manager.fire("pageReceived", {"page": 2, "answers": {"mood": "good"}, "browser": {}})
        self.manager.fire("firstPageReceived", FIRST_PAGE)
        self.manager.fire("questionnaireComplete")
        self.manager.fire("pageReceived", {"page": 3, "answers": {"sleep": 8}, "browser": {}})

        self.assertInstanceFinished("t_importResponses#0", {"page": 2})
        self.assertInstanceFinished("t_importResponses#1", {"page": 3})
        self.assertInstanceMissing("t_importResponses#2")
        self.assertEqual(PageResponse.objects.filter(subject__name="Ada Lovelace").count(), 2)
        self.assertUnresolvedTasks([])

    def test_no_browser_metadata_for_embedded_applications(self) -> None:
        self.manager.fire("isEmbeddedApplication")
        self.manager.fire("pageReceived", {"page": 2, "answers": {}, "browser": {"agent": "x"}})

        self.assertInstanceAbandoned("t_importBrowserMetadata#0")


class QuestionnaireInATestCase(TriggerManagerTestCaseMixin, TestCase):
    """Under TestCase nothing commits: capture the on-commit callbacks and run them."""

    def setUp(self) -> None:
        super().setUp()
        self.manager = TriggerManager("questionnaire-test")
        self.manager.update_configuration(CONFIGURATION)

    def test_the_subject_is_imported(self) -> None:
        with self.captureOnCommitCallbacks(execute=True):
            self.manager.fire("firstPageReceived", FIRST_PAGE)
            self.manager.fire("questionnaireComplete")

        # The tasks ran inline, in this test's transaction, cascades included.
        self.assertInstanceFinished("t_importSubject#0")
        self.assertTrue(Subject.objects.filter(name="Ada Lovelace").exists())
