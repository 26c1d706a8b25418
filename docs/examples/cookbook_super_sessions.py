"""Cookbook: one order, a session per shipment, and fires that reach both."""

from typing import Any

from django.db import transaction

from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance, TriggerSession
from django_triggers.task import TaskContext, TriggerTask
from example_project.celery import app

SEPARATOR = ":"


class OrderSessions:
    """The sessions of one order: its own, and one per step ("order-42:shipment-1")."""

    def __init__(self, order_uid: str):
        if SEPARATOR in order_uid:
            raise ValueError(f"an order uid cannot contain {SEPARATOR!r}: {order_uid!r}")
        self.order_uid = order_uid

    @classmethod
    def of(cls, session_uid: str) -> "OrderSessions":
        """The order a session belongs to, from its uid (its own or a step's)."""
        return cls(session_uid.split(SEPARATOR, 1)[0])

    def main(self) -> TriggerManager:
        return TriggerManager(self.order_uid)

    def step(self, step: str) -> TriggerManager:
        return TriggerManager(f"{self.order_uid}{SEPARATOR}{step}")

    def steps(self) -> list[str]:
        """The steps that have a session, in uid order."""
        prefix = f"{self.order_uid}{SEPARATOR}"
        uids = TriggerSession.objects.filter(uid__startswith=prefix).values_list("uid", flat=True)
        return sorted(uid.removeprefix(prefix) for uid in uids)

    def fire(
        self, step: str, trigger_name: str, trigger_kwargs: dict[str, Any] | None = None
    ) -> list[TaskInstance]:
        """Fire into the order's session and one step's, in one transaction."""
        with transaction.atomic():
            # Always the order's session first: fires that lock the same
            # sessions in the same order cannot deadlock.
            scheduled = self.main().fire(trigger_name, trigger_kwargs)
            scheduled += self.step(step).fire(trigger_name, trigger_kwargs)
        return scheduled

    def fire_everywhere(
        self, trigger_name: str, trigger_kwargs: dict[str, Any] | None = None
    ) -> list[TaskInstance]:
        """Fire into the order's session and every step's, in one transaction."""
        with transaction.atomic():
            scheduled = self.main().fire(trigger_name, trigger_kwargs)
            for step in self.steps():
                scheduled += self.step(step).fire(trigger_name, trigger_kwargs)
        return scheduled

    def unresolved(self) -> dict[str, list[str]]:
        """The unresolved instances of the whole order, by session uid."""
        managers = [self.main(), *(self.step(step) for step in self.steps())]
        return {
            manager.session_uid: sorted(i.name for i in manager.get_unresolved_instances())
            for manager in managers
        }


class PrintLabel(TriggerTask):
    name = "cookbook.PrintLabel"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        return {"label": f"label for {context.session_uid}"}


class DeliverParcel(TriggerTask):
    """The last step of a shipment: tell the order's session."""

    name = "cookbook.DeliverParcel"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        order = OrderSessions.of(context.session_uid)
        shipment = context.session_uid.removeprefix(f"{order.order_uid}{SEPARATOR}")
        order.main().fire("shipmentDelivered", {"shipment": shipment})
        return {"shipment": shipment}


class NotifyCustomer(TriggerTask):
    name = "cookbook.NotifyCustomer"

    def _run(self, context: TaskContext) -> dict[str, Any]:
        return {"told": context.trigger_kwargs}


for task in (PrintLabel, DeliverParcel, NotifyCustomer):
    app.register_task(task())

#: The order's own tasks.
ORDER_TASKS: dict[str, dict[str, Any]] = {
    "t_sendInvoice": {"after": ["paymentReceived"], "run": NotifyCustomer.name},
    # One instance per shipment shipped, and one per shipment delivered.
    "t_notifyShipped": {"after": [], "andEvery": "shipmentShipped", "run": NotifyCustomer.name},
    "t_notifyDelivered": {
        "after": [],
        "andEvery": "shipmentDelivered",
        "run": NotifyCustomer.name,
    },
}
#: The tasks of each shipment: one-shot, so once per shipment.
SHIPMENT_TASKS: dict[str, dict[str, Any]] = {
    "t_printLabel": {"after": ["paymentReceived", "stockReserved"], "run": PrintLabel.name},
    "t_deliver": {"after": ["shipmentShipped"], "run": DeliverParcel.name},
}


def place_order(order_uid: str, shipments: list[str]) -> OrderSessions:
    sessions = OrderSessions(order_uid)
    with transaction.atomic():
        sessions.main().update_configuration(ORDER_TASKS)
        for shipment in shipments:
            sessions.step(shipment).update_configuration(SHIPMENT_TASKS)
    return sessions


def two_parcels(order_uid: str) -> OrderSessions:
    # [two parcels]
    sessions = place_order(order_uid, ["shipment-1", "shipment-2"])
    # The payment concerns everything: the invoice, and every parcel's label.
    sessions.fire_everywhere("paymentReceived", {"amount": "12.50"})
    # The warehouse works parcel by parcel.
    sessions.step("shipment-1").fire("stockReserved")
    # Shipping a parcel concerns the parcel and the order.
    sessions.fire("shipment-1", "shipmentShipped", {"carrier": "post"})
    # Once the tasks have run, sessions.unresolved() is
    # {"order-42": [], "order-42:shipment-1": [], "order-42:shipment-2": ["t_printLabel#0"]}
    # [/two parcels]
    return sessions
