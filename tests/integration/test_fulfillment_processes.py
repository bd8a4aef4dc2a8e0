"""Orders carried by the default BPMN processes: started in the capture's transaction, released
by the process, fulfillment steps correlated to it, timers reminding and cancelling an
uncollected pickup with the stock back in ATP."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from oms.adapters.clock import ControlledClock
from oms.bootstrap import Services
from oms.domain.fulfillment import Package
from oms.domain.orders import DeliveryMethod, HoldType, PaymentReference
from oms.domain.orders import QuantityState as Q
from oms.domain.processes import InstanceStatus
from tests.orders_support import an_order, at_store, line, order_network, put


@pytest.fixture
def shop(services: Services) -> Services:
    order_network(services)
    services.fulfillment_processes.deploy_defaults()
    return services


def event_types(services: Services, *types: str) -> list[str]:
    return [e.type for e in services.events.read(types=list(types), limit=1000)]


def atp(services: Services, sku: str, store: str) -> int:
    return services.inventory.item_availability(sku, location_codes=[store]).total_atp


@pytest.mark.postgres
def test_uncollected_pickup_is_reminded_after_two_days_and_cancelled_after_seven(
    shop: Services, clock: ControlledClock
) -> None:
    put(shop, "BULB-03", "S1", 3)
    captured = shop.orders.capture(
        an_order(line("BULB-03", 2, delivery=at_store(DeliveryMethod.PICKUP)), reference="P-1")
    )
    order_id = captured.order.order_id
    # the process started in the capture's transaction and released the order at once
    assert captured.order.status == "released"
    [instance] = shop.processes.instances_for(order_id)
    assert instance.process_key == "pickup"
    [fulfillment] = shop.fulfillments.for_order(order_id)
    view = shop.processes.instance(instance.id)
    assert view.variables["fulfillment_id"] == fulfillment.id
    assert [t.element_id for t in view.tasks if t.state.value == "open"] == ["Pick"]

    shop.fulfillments.confirm_pick(fulfillment.id, 1, 2)
    ready = shop.fulfillments.ready_for_pickup(fulfillment.id)
    view = shop.processes.instance(instance.id)
    assert [t.element_id for t in view.tasks if t.state.value == "open"] == ["HandOver"]
    assert atp(shop, "BULB-03", "S1") == 1

    clock.advance(timedelta(days=2, minutes=1))
    assert shop.processes.run_due_timers().fired == 1
    assert event_types(shop, "fulfillment.pickup_reminder_due") == [
        "fulfillment.pickup_reminder_due"
    ]
    assert shop.fulfillments.run_pickup_deadlines().reminded == 0  # the process owns it

    clock.advance(timedelta(days=5))
    assert shop.processes.run_due_timers().fired == 1
    assert shop.fulfillments.get(fulfillment.id).status.value == "cancelled"
    assert shop.orders.get(order_id).status == "cancelled"
    assert atp(shop, "BULB-03", "S1") == 3
    assert shop.processes.instance(instance.id).instance.status is InstanceStatus.COMPLETED
    assert ready.pickup_code


@pytest.mark.postgres
def test_ship_order_runs_from_capture_to_delivered_through_its_process(shop: Services) -> None:
    put(shop, "LAMP-01", "DC-EAST", 5)
    captured = shop.orders.capture(
        an_order(
            line("LAMP-01", 2, "20.00"),
            reference="S-1",
            payments=[PaymentReference("card", "tok_visa")],
        )
    )
    order_id = captured.order.order_id
    assert shop.payments.summary(captured.order.order_number).authorised_open.amount == Decimal(
        "40.00"
    )
    [fulfillment] = shop.fulfillments.for_order(order_id)
    shop.fulfillments.acknowledge(fulfillment.id)
    shop.fulfillments.confirm_pick(fulfillment.id, 1, 2)
    shop.fulfillments.pack(fulfillment.id, [_package({1: 2})])
    shop.fulfillments.ship(fulfillment.id, carrier="UPS", service="ground", tracking={"P1": "1Z1"})
    [instance] = shop.processes.instances_for(order_id)
    view = shop.processes.instance(instance.id)
    assert view.variables["shipment"]["tracking_numbers"] == ["1Z1"]
    assert view.variables["capture"] == {"status": "approved"}
    shop.fulfillments.confirm_delivery(fulfillment.id)
    assert shop.processes.instance(instance.id).instance.status is InstanceStatus.COMPLETED
    assert shop.orders.get(order_id).status == "delivered"
    # captured once, by the shipment; the process's capture found nothing missing
    assert event_types(shop, "payment.captured") == ["payment.captured"]


def _package(lines: dict[int, int]) -> Package:
    one = Decimal("1")
    return Package("P1", one, one, one, one, lines)


def _waiting_for(services: Services, instance_id: str) -> set[str]:
    view = services.processes.instance(instance_id)
    return {str(element.get("element_id")) for element in view.instance.active_elements}


@pytest.mark.postgres
def test_backordered_ship_order_is_released_by_its_process_once_stock_arrives(
    shop: Services,
) -> None:
    captured = shop.orders.capture(
        an_order(
            line("LAMP-01", 2, "20.00"),
            reference="S-BO",
            payments=[PaymentReference("card", "tok_visa")],
        )
    )
    order_id = captured.order.order_id
    assert captured.order.by_state().get(Q.BACKORDERED) == 2
    [instance] = shop.processes.instances_for(order_id)
    assert shop.fulfillments.for_order(order_id) == []
    assert shop.processes.instance(instance.id).variables["fulfillment_id"] == ""

    put(shop, "LAMP-01", "DC-EAST", 5)
    shop.orders.allocate_backorders("LAMP-01")

    # the receipt's unit of work released the order and told the waiting instance
    [fulfillment] = shop.fulfillments.for_order(order_id)
    assert fulfillment.location_code == "DC-EAST"
    view = shop.processes.instance(instance.id)
    assert view.variables["fulfillment_id"] == fulfillment.id
    assert view.variables["location_code"] == "DC-EAST"
    assert [h.detail for h in view.history if h.kind == "variables_set"] == [
        {
            "variables": {"fulfillment_id": fulfillment.id, "location_code": "DC-EAST"},
            "reason": "released",
        }
    ]
    assert shop.orders.get(order_id).by_state().get(Q.RELEASED) == 2
    # and the process carries the shipment on: payment captured by its fulfillment
    shop.fulfillments.confirm_pick(fulfillment.id, 1, 2)
    shop.fulfillments.pack(fulfillment.id, [_package({1: 2})])
    shop.fulfillments.ship(fulfillment.id, carrier="UPS", service="ground", tracking={"P1": "1Z"})
    view = shop.processes.instance(instance.id)
    assert view.variables["capture"] == {"status": "approved"}
    assert _waiting_for(shop, instance.id) == {"WaitDelivered"}
    # a second run of the backorder allocation finds nothing to do and releases nothing twice
    assert shop.orders.allocate_backorders("LAMP-01") == []
    assert len(shop.fulfillments.for_order(order_id)) == 1


@pytest.mark.postgres
def test_order_held_at_capture_is_released_by_its_process_when_the_hold_is_lifted(
    shop: Services,
) -> None:
    put(shop, "LAMP-01", "DC-EAST", 5)
    captured = shop.orders.capture(
        an_order(
            line("LAMP-01", 1, "20.00"),
            reference="S-HOLD",
            payments=[PaymentReference("card", "tok_decline")],
        )
    )
    order_id = captured.order.order_id
    assert shop.orders.get(order_id).on_hold
    [instance] = shop.processes.instances_for(order_id)
    assert shop.fulfillments.for_order(order_id) == []

    shop.orders.release_hold(order_id, "payment", reason="customer paid by phone")

    [fulfillment] = shop.fulfillments.for_order(order_id)
    assert shop.processes.instance(instance.id).variables["fulfillment_id"] == fulfillment.id
    assert shop.orders.get(order_id).by_state().get(Q.RELEASED) == 1
    assert _waiting_for(shop, instance.id) == {"WaitShipped", "ShipmentLate"}


@pytest.mark.postgres
def test_a_release_by_hand_tells_the_waiting_process_its_fulfillment(shop: Services) -> None:
    put(shop, "LAMP-01", "DC-EAST", 5)
    captured = shop.orders.capture(
        an_order(
            line("LAMP-01", 1, "20.00"),
            reference="S-HAND",
            payments=[PaymentReference("card", "tok_decline")],
        )
    )
    order_id = captured.order.order_id
    [instance] = shop.processes.instances_for(order_id)
    # the hold goes without the hook (an old path), then an operator releases by hand
    with shop.uow() as uow:
        order = uow.orders.get(order_id, for_update=True)
        assert order is not None
        order.release_hold(type=HoldType.PAYMENT, reason="paid", actor="ops", at=shop.clock.now())
        uow.orders.save(order, at=shop.clock.now())
        uow.commit()

    shop.orders.release(order_id)

    [fulfillment] = shop.fulfillments.for_order(order_id)
    assert shop.processes.instance(instance.id).variables["fulfillment_id"] == fulfillment.id


def test_lifting_a_hold_leaves_an_order_without_a_waiting_process_alone(
    services: Services,
) -> None:
    order_network(services)  # no process deployed: orders are released by hand
    put(services, "LAMP-01", "DC-EAST", 5)
    captured = services.orders.capture(
        an_order(
            line("LAMP-01", 1), reference="S-NP", payments=[PaymentReference("card", "tok_decline")]
        )
    )
    order_id = captured.order.order_id
    services.orders.release_hold(order_id, "payment", reason="paid")
    assert services.fulfillments.for_order(order_id) == []
    assert services.orders.get(order_id).by_state().get(Q.ALLOCATED) == 1


@pytest.mark.postgres
def test_the_process_capture_after_a_shipment_answers_as_a_second_capture_would(
    shop: Services,
) -> None:
    """The ship step captured the shipment in full: the process's capture, in the same step,
    knows that nothing is missing without reading the payments again, and answers what a
    second capture answers (approved); outside the step the payments are asked again."""
    put(shop, "LAMP-01", "DC-EAST", 5)
    captured = shop.orders.capture(
        an_order(
            line("LAMP-01", 1, "20.00"),
            reference="S-9",
            payments=[PaymentReference("card", "tok_visa")],
        )
    )
    [fulfillment] = shop.fulfillments.for_order(captured.order.order_id)
    shop.fulfillments.confirm_pick(fulfillment.id, 1, 1)
    shop.fulfillments.pack(fulfillment.id, [_package({1: 1})])
    seen: list[tuple[str | None, str | None]] = []
    step = shop.fulfillments.on_step
    assert step is not None

    def watching(uow: Any, name: str, order_id: str, payload: Any) -> None:
        seen.append((name, shop.fulfillments.captured_in_step(uow, fulfillment.id)))
        step(uow, name, order_id, payload)

    shop.fulfillments.on_step = watching
    try:
        shipped = shop.fulfillments.ship(
            fulfillment.id, carrier="UPS", service="ground", tracking={"P1": "1Z9"}
        )
    finally:
        shop.fulfillments.on_step = step
    assert seen == [("shipped", "approved")]
    [instance] = shop.processes.instances_for(captured.order.order_id)
    assert shop.processes.instance(instance.id).variables["capture"] == {"status": "approved"}
    assert event_types(shop, "payment.captured") == ["payment.captured"]
    with shop.uow() as uow:  # another unit of work: asked again, the same answer
        assert shop.fulfillments.captured_in_step(uow, fulfillment.id) is None
        order = uow.orders.get(captured.order.order_id, for_update=True)
        assert order is not None
        assert shop.fulfillments.capture_in(uow, order, shipped) == "approved"
        uow.commit()
    assert event_types(shop, "payment.captured") == ["payment.captured"]
