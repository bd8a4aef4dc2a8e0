"""Orders carried by the default BPMN processes: started in the capture's transaction, released
by the process, fulfillment steps correlated to it, timers reminding and cancelling an
uncollected pickup with the stock back in ATP."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from oms.adapters.clock import ControlledClock
from oms.bootstrap import Services
from oms.domain.fulfillment import Package
from oms.domain.orders import DeliveryMethod, PaymentReference
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
