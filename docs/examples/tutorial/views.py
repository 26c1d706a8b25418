"""questionnaire/views.py: each view fires one trigger into the questionnaire's session."""

import uuid

from django import forms
from django.db import transaction
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from django_triggers.exceptions import SessionNotFound
from django_triggers.manager import TriggerManager

from .workflow import CONFIGURATION


class FirstPageForm(forms.Form):
    name = forms.CharField(max_length=200)
    birthday = forms.DateField()


class PageForm(forms.Form):
    answers = forms.JSONField()


def get_manager(session_uid: str) -> TriggerManager:
    """The manager of an existing questionnaire; a mistyped uid is a 404, not a new session."""
    try:
        return TriggerManager.for_existing_session(session_uid)
    except SessionNotFound:
        raise Http404(f"no questionnaire {session_uid!r}") from None


@require_POST
def start(request: HttpRequest) -> JsonResponse:
    with transaction.atomic():
        manager = TriggerManager(f"questionnaire-{uuid.uuid4().hex}")
        manager.update_configuration(CONFIGURATION)
        if request.POST.get("embedded"):
            manager.fire("isEmbeddedApplication")
    return JsonResponse({"session": manager.session_uid}, status=201)


@require_POST
def first_page(request: HttpRequest, session_uid: str) -> JsonResponse:
    manager = get_manager(session_uid)
    form = FirstPageForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors}, status=400)
    manager.fire("firstPageReceived", {"responses": form.cleaned_data})
    return JsonResponse({"received": 1})


@require_POST
def page(request: HttpRequest, session_uid: str, number: int) -> JsonResponse:
    manager = get_manager(session_uid)
    form = PageForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors}, status=400)
    manager.fire(
        "pageReceived",
        {
            "page": number,
            "answers": form.cleaned_data["answers"],
            "browser": {"agent": request.headers.get("User-Agent", "")},
        },
    )
    return JsonResponse({"received": number})


@require_POST
def complete(request: HttpRequest, session_uid: str) -> JsonResponse:
    get_manager(session_uid).fire("questionnaireComplete")
    return JsonResponse({"complete": True})
