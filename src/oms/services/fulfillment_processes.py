"""Fulfillment run as BPMN processes: the OMS activities the default ``.bpmn`` files call, the
start of the delivery method's process at capture, and the fulfillment steps handed to the
running instance (BPMN messages and the user tasks the store app did through the API).

Activities (thin calls into the services, in the process's unit of work):

==================  =============================  ==========================================
activity            parameters                     does
==================  =============================  ==========================================
``source``          order_id                       reports what capture sourced (allocated,
                                                   backordered units)
``release``         order_id, fulfillment_id       releases the allocated units; sets the
                                                   variables ``fulfillment_id``,
                                                   ``location_code``
``create_transfer`` order_id, fulfillment_id       ship-to-store: releases to the DC (the
                                                   transfer ships from there); sets the same
``capture_payment`` order_id, fulfillment_id       captures what the fulfillment handed over
                                                   (again: only what is missing)
``cancel_remainder`` order_id, fulfillment_id,     cancels an uncollected pickup, restocks
                    reason
``remind_pickup``   order_id, fulfillment_id       the pickup reminder email (once)
==================  =============================  ==========================================

Steps -> process: ``shipped``, ``delivered``, ``checked_in``, ``received`` are correlated as
BPMN messages (buffered when the instance does not wait yet); ``picked`` completes the user
tasks ``Pick`` / ``PutAside``, ``collected`` completes ``HandOver`` / ``BringOut`` / ``Collect``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from oms.domain.fulfillment import FINISHED, Fulfillment, FulfillmentNotFound, FulfillmentStatus
from oms.domain.orders import Order, OrderNotFound
from oms.domain.orders import QuantityState as Q
from oms.processes.activities import ActivityCall
from oms.services.fulfillment import FulfillmentService
from oms.services.orders import OrderService
from oms.services.ports import UnitOfWork
from oms.services.processes import Deployment, ProcessService

DEFINITIONS = Path(__file__).resolve().parent.parent / "processes" / "definitions"
"""The default process per delivery method (``<method>.bpmn``; the key is the method)."""

TASKS_FOR_STEP: dict[str, tuple[str, ...]] = {
    "picked": ("Pick", "PutAside"),
    "collected": ("HandOver", "BringOut", "Collect"),
}
MESSAGES = frozenset({"shipped", "delivered", "checked_in", "received"})
ACTOR = "process"


@dataclass
class FulfillmentProcesses:
    processes: ProcessService
    orders: OrderService
    fulfillments: FulfillmentService

    # -- wiring -------------------------------------------------------------------------------

    def register(self) -> None:
        """Register the activities (before any default definition is deployed or run)."""
        registry = self.processes.activities
        ids = ("order_id", "fulfillment_id")
        registry.register(
            "source",
            self._source,
            required=("order_id",),
            description="Report what capture sourced: allocated and backordered units",
        )
        registry.register(
            "release",
            self._release,
            required=ids,
            description="Release the allocated units to their locations (fulfillments)",
        )
        registry.register(
            "create_transfer",
            self._release,
            required=ids,
            description="Ship to store: release to the DC that transfers to the store",
        )
        registry.register(
            "capture_payment",
            self._capture_payment,
            required=ids,
            description="Capture the payment for what the fulfillment handed over",
        )
        registry.register(
            "cancel_remainder",
            self._cancel_remainder,
            required=ids,
            optional=("reason",),
            description="Cancel an uncollected pickup and put the stock back",
        )
        registry.register(
            "remind_pickup",
            self._remind_pickup,
            required=ids,
            description="Send the pickup reminder email (once)",
        )
        self.orders.on_capture = self.start_in
        self.orders.on_releasable = self.continue_in
        self.fulfillments.on_step = self.step_in

    def deploy_defaults(self, *, deployed_by: str = "system") -> list[Deployment]:
        """Deploy the default definitions (a definition already current stays as it is)."""
        return [
            self.processes.deploy(path.read_text(encoding="utf-8"), deployed_by=deployed_by)
            for path in sorted(DEFINITIONS.glob("*.bpmn"))
        ]

    # -- capture and steps --------------------------------------------------------------------

    def start_in(self, uow: UnitOfWork, order: Order, *, at: datetime, actor: str) -> bool:
        """Start the process of each delivery method of a new order, when one is deployed;
        whether any started."""
        started = False
        methods: dict[str, str | None] = {}
        for line in order.lines:
            methods.setdefault(line.delivery.method.value, line.delivery.pickup_location_code)
        for method, store in methods.items():
            definition = self.processes.latest_in(uow, method)
            if definition is None:
                continue
            self.processes.start_in(
                uow,
                method,
                definition=definition,
                correlation_key=order.order_id,
                new_correlation_key=True,  # the order is new: nothing was kept for its id
                variables={
                    "order_id": order.order_id,
                    "order_number": order.order_number,
                    "delivery_method": method,
                    "fulfillment_id": "",
                    "location_code": store or "",
                    "customer_email": order.customer.email or "",
                    "order_total": str(order.total),
                },
            )
            started = True
        return started

    def step_in(
        self, uow: UnitOfWork, step: str, order_id: str, payload: Mapping[str, Any]
    ) -> None:
        running = uow.processes.running_instances(order_id)  # read (and locked) once
        if not running:
            return
        if step in MESSAGES:
            self.processes.correlate_in(
                uow, step, order_id, dict(payload), buffer=True, instances=running
            )
        elements = TASKS_FOR_STEP.get(step)
        if elements:
            self.processes.complete_tasks_in(
                uow, order_id, elements, dict(payload), actor=ACTOR, instances=running
            )

    def continue_in(self, uow: UnitOfWork, order: Order, *, at: datetime) -> bool:
        """An order whose process released nothing (all backordered, or on hold) may go on:
        release its allocated units now (unless it is on hold) and tell each running instance
        still without a fulfillment which one it got, so that it follows that fulfillment's
        steps. Also after a release by hand. Whether any instance was told. Orders without
        such an instance are left alone (they are released by hand)."""
        waiting = []
        for instance in uow.processes.running_instances(order.order_id):
            variables = self.processes.variables_in(uow, instance)
            if not variables.get("fulfillment_id"):
                waiting.append((instance, variables))
        if not waiting:
            return False
        if not order.on_hold and order.by_state().get(Q.ALLOCATED, 0):
            self.orders.release_in(uow, order, at=at, actor=ACTOR)
            uow.orders.save(order, at=at)
            uow.record(*order.events)
            order.events.clear()
        told = False
        for instance, variables in waiting:
            method = str(variables.get("delivery_method") or instance.process_key)
            mine = self._open_fulfillment(uow, order.order_id, method)
            if mine is None:
                continue
            self.processes.set_variables_in(
                uow,
                instance.id,
                {"fulfillment_id": mine.id, "location_code": mine.handover_location},
                reason="released",
            )
            told = True
        return told

    # -- activities ---------------------------------------------------------------------------

    @staticmethod
    def _order(uow: UnitOfWork, order_id: str) -> Order:
        order = uow.orders.get(str(order_id), for_update=True)
        if order is None:
            raise OrderNotFound(f"no order '{order_id}'")
        return order

    def _source(self, call: ActivityCall) -> dict[str, Any]:
        order = self._order(call.uow, call.parameters["order_id"])
        states = order.by_state()
        return {
            "allocated": states.get(Q.ALLOCATED, 0),
            "backordered": states.get(Q.BACKORDERED, 0),
            "status": order.status,
        }

    def _release(self, call: ActivityCall) -> dict[str, Any]:
        uow = call.uow
        order = self._order(uow, call.parameters["order_id"])
        released = 0
        if order.by_state().get(Q.ALLOCATED, 0) and not order.on_hold:
            releases = self.orders.release_in(uow, order, at=call.now, actor=ACTOR)
            released = sum(int(r["quantity"]) for r in releases)
            uow.orders.save(order, at=call.now)
            uow.record(*order.events)
            order.events.clear()
        method = str(call.variables.get("delivery_method") or call.process_key)
        mine = self._open_fulfillment(uow, order.order_id, method)
        if mine is not None:
            call.variables["fulfillment_id"] = mine.id
            call.variables["location_code"] = mine.handover_location
        return {
            "released": released,
            "fulfillment_id": mine.id if mine else None,
            "location_code": mine.location_code if mine else None,
        }

    @staticmethod
    def _open_fulfillment(uow: UnitOfWork, order_id: str, method: str) -> Fulfillment | None:
        candidates = [
            f
            for f in uow.fulfillments.for_order(order_id)
            if f.delivery_method == method and f.status not in FINISHED
        ]
        return candidates[-1] if candidates else None

    @staticmethod
    def _fulfillment_id(call: ActivityCall) -> str:
        return str(
            call.parameters.get("fulfillment_id") or call.variables.get("fulfillment_id") or ""
        )

    def _fulfillment(self, call: ActivityCall) -> Fulfillment:
        fulfillment_id = self._fulfillment_id(call)
        found = call.uow.fulfillments.get(fulfillment_id) if fulfillment_id else None
        if found is None:
            raise FulfillmentNotFound(f"no fulfillment '{fulfillment_id}' for this process")
        return found

    def _capture_payment(self, call: ActivityCall) -> dict[str, Any]:
        # the usual case: the step that woke the process (shipped, collected) has just captured
        # this handover in full, in this unit of work; capturing again would find nothing missing
        known = self.fulfillments.captured_in_step(call.uow, self._fulfillment_id(call))
        if known is not None:
            return {"status": known}
        fulfillment = self._fulfillment(call)
        order = self._order(call.uow, fulfillment.order_id)
        status = self.fulfillments.capture_in(call.uow, order, fulfillment)
        return {"status": status or "nothing_to_capture"}

    def _cancel_remainder(self, call: ActivityCall) -> dict[str, Any]:
        fulfillment = self._fulfillment(call)
        cancellable = {
            FulfillmentStatus.READY_FOR_PICKUP,
            FulfillmentStatus.CHECKED_IN,
            FulfillmentStatus.PICKED,
            FulfillmentStatus.RECEIVED,
        }
        if fulfillment.status not in cancellable:
            return {"cancelled": False, "status": fulfillment.status.value}
        reason = str(call.parameters.get("reason") or "not_collected")
        self.fulfillments.cancel_remainder(fulfillment.id, reason, uow=call.uow)
        return {"cancelled": True}

    def _remind_pickup(self, call: ActivityCall) -> dict[str, Any]:
        fulfillment = self._fulfillment(call)
        return {"reminded": self.fulfillments.remind(fulfillment.id, uow=call.uow)}
