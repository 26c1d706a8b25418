"""The examples of the Writing tasks page."""

from typing import Any

import filters as f
from django.core.mail import send_mail

from django_triggers.exceptions import with_context
from django_triggers.task import TaskContext, TriggerTask
from example_project.celery import app
from example_project.questionnaire.models import PageResponse, Subject


class ImportSubject(TriggerTask):
    """Create the subject of a questionnaire from its first page."""

    name = "writing.ImportSubject"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        with context.get_logger_context(context={"session": context.session_uid}) as log:
            # Raises ValueError unless the first page holds a name and a valid
            # birthday; raised inside the block, it is logged with its context
            # (the filter errors), then fails the instance.
            kwargs = context.filter_kwargs(
                {
                    "firstPageReceived": {
                        "responses": f.Required
                        | f.Type(dict)
                        | f.FilterMapper(
                            {
                                "name": f.Required | f.Unicode | f.Strip | f.MinLength(1),
                                "birthday": f.Required | f.Date,
                            }
                        ),
                    },
                }
            )
            responses = kwargs["firstPageReceived"]["responses"]  # birthday is a date again
            subject, created = Subject.objects.get_or_create(
                session_uid=context.session_uid,
                defaults={"name": responses["name"], "birthday": responses["birthday"]},
            )
            if not created:
                log.warning(
                    "The subject was already imported",
                    extra={"context": {"subjectId": subject.pk}},
                )
            log.info("Imported %s", subject.name, extra={"context": {"subjectId": subject.pk}})
        return {"subjectId": subject.pk}


class ComputeScore(TriggerTask):
    """Score a subject with the model named in withParams; flag low scores."""

    name = "writing.ComputeScore"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        subject_id = context.trigger_kwargs["t_importSubject"]["subjectId"]
        model = context.trigger_kwargs["scoring"]["model"]
        try:
            subject = Subject.objects.get(pk=subject_id)
        except Subject.DoesNotExist as exc:
            # Fails the instance; the context is kept in its metadata.
            raise with_context(
                LookupError(f"subject {subject_id} does not exist"),
                {"subjectId": subject_id, "model": model},
            ) from exc
        score = 25 * PageResponse.objects.filter(subject=subject).count()
        if score < 50:
            # Fire another trigger of the session, for the tasks that handle it.
            context.manager.fire("lowScore", {"subjectId": subject_id, "score": score})
        return {"subjectId": subject_id, "model": model, "score": score}


class SendWelcomeEmail(TriggerTask):
    """Welcome the respondent, if they gave an email address."""

    name = "writing.SendWelcomeEmail"

    def _run(self, context: TaskContext) -> None:
        responses = context.trigger_kwargs["firstPageReceived"]["responses"]
        address = responses.get("email")
        if not address:
            # Ends the instance as skipped: no failure, and no cascade.
            raise self.skip(metadata={"reason": "no email address"})
        send_mail("Welcome", f"Thank you, {responses['name']}.", None, [address])
        # Returning None finishes the instance; its cascade has empty kwargs.


class BrowserService:
    """A client of a web service that describes browsers (a stand-in here)."""

    def describe(self, agent: str) -> dict[str, str]:
        name, _, version = agent.partition("/")
        return {"name": name, "version": version}


browser_service = BrowserService()
RETRY_COOLDOWN = 10  # seconds


class ImportBrowserMetadata(TriggerTask):
    """Ask a web service about the browser; retry while it cannot be reached."""

    name = "writing.ImportBrowserMetadata"
    max_retries = 5  # then the instance fails with MaxRetriesExceeded

    def _run(self, context: TaskContext) -> dict[str, Any]:
        agent = context.trigger_kwargs["pageReceived"]["browser"]["agent"]
        try:
            details = browser_service.describe(agent)
        except ConnectionError as exc:
            # This instance fails (recording exc) and is replayed: a clone,
            # with the next number, starts RETRY_COOLDOWN seconds from now.
            raise self.retry(exc=exc, cooldown=RETRY_COOLDOWN) from exc
        return {"browser": details}


class ImportResponses(TriggerTask):
    """Store a page of answers; older clients send them as "key=value;..." text."""

    name = "writing.ImportResponses"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        subject_id = context.trigger_kwargs["t_importSubject"]["subjectId"]
        page = context.trigger_kwargs["pageReceived"]
        if isinstance(page["answers"], str):
            # Retry at once with the answers converted: the clone runs with
            # these kwargs, and they are what the admin shows for it.
            answers = dict(item.split("=", 1) for item in page["answers"].split(";"))
            raise self.retry(replacement_kwargs={"pageReceived": {**page, "answers": answers}})
        PageResponse.objects.create(
            subject_id=subject_id, page=page["page"], answers=page["answers"]
        )
        return {"page": page["page"]}


for task in (ImportSubject, ComputeScore, SendWelcomeEmail, ImportBrowserMetadata, ImportResponses):
    app.register_task(task())

CONFIGURATION: dict[str, dict[str, Any]] = {
    "t_importSubject": {
        "after": ["firstPageReceived", "questionnaireComplete"],
        "run": ImportSubject.name,
    },
    "t_welcome": {"after": ["firstPageReceived"], "run": SendWelcomeEmail.name},
    "t_importResponses": {
        "after": ["t_importSubject"],
        "andEvery": "pageReceived",
        "run": ImportResponses.name,
    },
    "t_importBrowserMetadata": {
        "after": ["pageReceived"],
        "run": ImportBrowserMetadata.name,
    },
    "t_computeScore": {
        "after": ["t_importSubject", "questionnaireComplete"],
        "run": ComputeScore.name,
        "withParams": {"scoring": {"model": "Psych 01"}},
    },
}
