"""The examples of the Running in production page."""

import json

from celery import shared_task
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from django_triggers.exceptions import SessionNotFound
from django_triggers.manager import TriggerManager
from django_triggers.recovery import recover


@shared_task(name="triggers.recover")
def recover_triggers() -> dict[str, list[dict[str, str]]]:
    """The recovery sweep, for Celery beat."""
    return recover().as_dict()


@csrf_exempt
@require_POST
def payment_webhook(request: HttpRequest) -> HttpResponse:
    """Payment provider's callback, delivered at least once."""
    event = json.loads(request.body)
    try:
        manager = TriggerManager.for_existing_session(f"order-{event['order']}")
    except SessionNotFound:
        raise Http404("unknown order") from None
    # A redelivered event has the same id: its fire changes nothing.
    manager.fire("paymentReceived", {"amount": event["amount"]}, event_id=event["id"])
    return HttpResponse(status=204)
