"""The questionnaire's trigger tasks."""

from typing import Any

import filters as f

from django_triggers.task import TaskContext, TriggerTask
from example_project.celery import app
from example_project.questionnaire.models import PageResponse, Subject


class ImportSubject(TriggerTask):
    """Create the subject from the first page, once the questionnaire is complete."""

    name = "questionnaire.ImportSubject"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        kwargs = context.filter_kwargs(
            {
                "firstPageReceived": {
                    "responses": f.Required
                    | f.Type(dict)
                    | f.FilterMapper(
                        {"name": f.Required | f.Unicode, "birthday": f.Required | f.Date}
                    ),
                },
            }
        )
        responses = kwargs["firstPageReceived"]["responses"]
        subject, _ = Subject.objects.update_or_create(
            session_uid=context.session_uid,
            defaults={"name": responses["name"], "birthday": responses["birthday"]},
        )
        return {"subjectId": subject.pk}


class ImportResponses(TriggerTask):
    """Store one page of answers; runs once per ``pageReceived``."""

    name = "questionnaire.ImportResponses"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        subject_id = context.trigger_kwargs["t_importSubject"]["subjectId"]
        page = context.trigger_kwargs["pageReceived"]
        PageResponse.objects.update_or_create(
            subject_id=subject_id, page=page["page"], defaults={"answers": page["answers"]}
        )
        return {"subjectId": subject_id, "page": page["page"]}


class ImportBrowserMetadata(TriggerTask):
    """Record the browser's details; not configured to run for embedded applications."""

    name = "questionnaire.ImportBrowserMetadata"

    def _run(self, context: TaskContext) -> None:
        subject_id = context.trigger_kwargs["t_importSubject"]["subjectId"]
        browser = context.trigger_kwargs["browser"]
        with context.get_logger_context(context={"subject": subject_id}) as log:
            log.info("Recording browser metadata")
            Subject.objects.filter(pk=subject_id).update(
                browser={**browser, **context.trigger_kwargs["pageReceived"].get("browser", {})}
            )


class ComputeScore(TriggerTask):
    """The finalizing step: a score computed with the model named in withParams."""

    name = "questionnaire.ComputeScore"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        subject_id = context.trigger_kwargs["t_importSubject"]["subjectId"]
        model = context.trigger_kwargs["scoring"]["model"]
        subject = Subject.objects.get(pk=subject_id)
        score = round(subject.birthday.year / 100 + len(subject.name), 2)
        Subject.objects.filter(pk=subject_id).update(score=score)
        return {"subjectId": subject_id, "model": model, "score": score}


for task_class in (ImportSubject, ImportResponses, ImportBrowserMetadata, ComputeScore):
    app.register_task(task_class())
