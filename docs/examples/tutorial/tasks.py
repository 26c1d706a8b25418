"""questionnaire/tasks.py: the Celery tasks the questionnaire's triggers run."""

from typing import Any

from django_triggers.task import TaskContext, TriggerTask
from example_project.celery import app  # your project's Celery app
from example_project.questionnaire.models import PageResponse, Subject


class ImportSubject(TriggerTask):
    """Create the subject from the answers of the first page."""

    name = "tutorial.ImportSubject"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        responses = context.trigger_kwargs["firstPageReceived"]["responses"]
        subject = Subject.objects.create(
            session_uid=context.session_uid,
            name=responses["name"],
            birthday=responses["birthday"],  # an ISO date string: kwargs are JSON
        )
        # The kwargs of the cascade: tasks waiting for t_importSubject get them.
        return {"subjectId": subject.pk}


class ImportResponses(TriggerTask):
    """Store the answers of one page."""

    name = "tutorial.ImportResponses"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        subject_id = context.trigger_kwargs["t_importSubject"]["subjectId"]
        page = context.trigger_kwargs["pageReceived"]
        PageResponse.objects.create(
            subject_id=subject_id, page=page["page"], answers=page["answers"]
        )
        return {"page": page["page"]}


class ImportBrowserMetadata(TriggerTask):
    """Remember which browser the questionnaire was answered with."""

    name = "tutorial.ImportBrowserMetadata"

    def _run(self, context: TaskContext) -> None:
        subject_id = context.trigger_kwargs["t_importSubject"]["subjectId"]
        browser = context.trigger_kwargs["pageReceived"]["browser"]
        Subject.objects.filter(pk=subject_id).update(browser=browser)


app.register_task(ImportSubject())
app.register_task(ImportResponses())
app.register_task(ImportBrowserMetadata())
