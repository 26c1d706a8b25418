"""The questionnaire's pages; each accepted form fires a trigger.

A questionnaire lives in one trigger session, whose uid is in every URL:
start it, answer its pages, complete it, and watch its tasks on the status
page.
"""

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from django_triggers.exceptions import SessionNotFound
from django_triggers.manager import TriggerManager
from django_triggers.models import TriggerSession
from django_triggers.routers import session_database
from example_project.questionnaire import services
from example_project.questionnaire.forms import LAST_PAGE, PAGE_FORMS, StartForm


def _get_manager_or_404(session_uid: str) -> TriggerManager:
    try:
        return TriggerManager.for_existing_session(session_uid)
    except SessionNotFound:
        raise Http404(f"No questionnaire has the session {session_uid!r}.") from None


@require_http_methods(["GET", "POST"])
def start(request: HttpRequest) -> HttpResponse:
    """Start a questionnaire; ``?embedded=1`` ticks the embedded application box."""
    if request.method == "POST":
        form = StartForm(request.POST)
        if form.is_valid():
            manager = services.start_questionnaire(embedded=form.cleaned_data["embedded"])
            return redirect("questionnaire:page", session_uid=manager.session_uid, page=1)
    else:
        form = StartForm(initial={"embedded": request.GET.get("embedded") == "1"})
    return render(request, "questionnaire/start.html", {"form": form})


@require_http_methods(["GET", "POST"])
def page(request: HttpRequest, session_uid: str, page: int) -> HttpResponse:
    """One page of the questionnaire: the first fires ``firstPageReceived``, the others
    ``pageReceived``."""
    manager = _get_manager_or_404(session_uid)
    form_class = PAGE_FORMS.get(page)
    if form_class is None:
        raise Http404(f"The questionnaire has no page {page}.")
    if request.method == "POST":
        form = form_class(request.POST)
        if form.is_valid():
            if page == 1:
                services.receive_first_page(manager, form.cleaned_data)
            else:
                user_agent = request.headers.get("User-Agent", "")
                services.receive_page(manager, page, form.cleaned_data, user_agent=user_agent)
            if page < LAST_PAGE:
                return redirect("questionnaire:page", session_uid=session_uid, page=page + 1)
            return redirect("questionnaire:complete", session_uid=session_uid)
    else:
        form = form_class()
    context = {"form": form, "session_uid": session_uid, "page": page, "last_page": LAST_PAGE}
    return render(request, "questionnaire/page.html", context)


@require_http_methods(["GET", "POST"])
def complete(request: HttpRequest, session_uid: str) -> HttpResponse:
    """Ask for confirmation, then fire ``questionnaireComplete``."""
    manager = _get_manager_or_404(session_uid)
    if request.method == "POST":
        services.complete_questionnaire(manager)
        return redirect("questionnaire:status", session_uid=session_uid)
    return render(request, "questionnaire/complete.html", {"session_uid": session_uid})


@require_POST
async def complete_json(request: HttpRequest, session_uid: str) -> JsonResponse:
    """``complete``, as an async view answering JSON: fire ``questionnaireComplete``.

    Answers with the instances the fire scheduled. The manager's ``a``
    methods run its sync ones in Django's thread for database work, as the
    ORM's ``a`` methods do; constructing the manager reads nothing.
    """
    sessions = TriggerSession.objects.using(session_database(session_uid))
    if not await sessions.filter(uid=session_uid).aexists():
        raise Http404(f"No questionnaire has the session {session_uid!r}.")
    manager = TriggerManager(session_uid)
    scheduled = await manager.afire("questionnaireComplete")
    return JsonResponse({"session": session_uid, "scheduled": [i.name for i in scheduled]})


def status(request: HttpRequest, session_uid: str) -> HttpResponse:
    """The session's tasks, their instances and statuses."""
    manager = _get_manager_or_404(session_uid)
    tasks = services.session_status(manager)
    statuses = [instance.status for task in tasks for instance in task.instances]
    context = {
        "session_uid": session_uid,
        "tasks": tasks,
        "has_instances": bool(statuses),
        "unresolved": sorted(instance.name for instance in manager.get_unresolved_instances()),
        "in_progress": any(s in services.IN_PROGRESS_STATUSES for s in statuses),
    }
    return render(request, "questionnaire/status.html", context)
