"""Changes after capture: each allowed case, and each refused case leaving order, reservations and
allocations exactly as before. Backorders allocated first come first served on receipt."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from oms.adapters.db.tables import (
    inventory_positions,
    order_cancel_requests,
    order_holds,
    order_line_quantities,
    order_lines,
    order_timeline,
    orders,
    outbox_events,
    reservation_lines,
    reservations,
)
from oms.bootstrap import Services
from oms.domain.access import Principal, Role
from oms.domain.errors import DomainError, Forbidden
from oms.domain.inventory import DeltaKind, SupplyLine
from oms.domain.orders import (
    Delivery,
    DeliveryMethod,
    HoldType,
    InvalidOrder,
    OrderChangedConcurrently,
    OrderChangeRefused,
    OrderOnHold,
    QuantityState,
)
from oms.services.ports import DeltaLine, SnapshotLine
from tests.inventory_support import atp
from tests.orders_support import WEST_HOME, an_order, at_store, line, order_network, put, ship

Q = QuantityState


@pytest.fixture
def shop(services: Services) -> Services:
    order_network(services)
    for sku in ("LAMP-01", "SHADE-02"):
        put(services, sku, "DC-EAST", 10)
        put(services, sku, "DC-WEST", 10)
    put(services, "LAMP-01", "S2", 1)
    put(services, "LAMP-01", "S1", 0)
    return services


def everything(services: Services) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the order, stock and reservation tables, and the outbox: the whole state a
    refused change must leave untouched."""
    tables = (
        orders,
        order_lines,
        order_line_quantities,
        order_holds,
        order_cancel_requests,
        order_timeline,
        inventory_positions,
        reservations,
        reservation_lines,
        outbox_events,
    )
    with services.uow(read_only=True) as uow:
        return {
            table.name: sorted(
                (tuple(map(repr, row)) for row in uow.connection.execute(select(table))), key=str
            )
            for table in tables
        }


def refused_without_trace(
    services: Services, change: Callable[[], object], error: type[DomainError], match: str
) -> DomainError:
    before = everything(services)
    with pytest.raises(error, match=match) as refused:
        change()
    assert everything(services) == before
    return refused.value


def placed(services: Services, order_id: str, line_no: int = 1) -> dict[Any, int]:
    return services.orders.get(order_id).line(line_no).buckets


# --- cancellations --------------------------------------------------------------------------------


@pytest.mark.postgres
def test_cancelling_before_release_is_immediate_and_frees_the_stock(shop: Services) -> None:
    order = shop.orders.capture(an_order(line("LAMP-01", 3), line("SHADE-02", 2))).order

    result = shop.orders.cancel(order.order_id, line_no=1, quantity=2, reason="too many")

    assert (result.cancelled, result.requests) == (2, [])
    assert placed(shop, order.order_id) == {(Q.ALLOCATED, "DC-EAST"): 1, (Q.CANCELLED, None): 2}
    assert atp(shop, "LAMP-01", "DC-EAST") == 9
    shop.orders.cancel(order.order_id, reason="customer changed mind")
    cancelled = shop.orders.get(order.order_id)
    assert cancelled.status == "cancelled"
    assert (atp(shop, "LAMP-01", "DC-EAST"), atp(shop, "SHADE-02", "DC-EAST")) == (10, 10)
    assert [e.type for e in shop.events.read(types=["order.cancelled"])] == ["order.cancelled"]
    refused_without_trace(
        shop,
        lambda: shop.orders.cancel(order.order_id, reason="again"),
        OrderChangeRefused,
        "is cancelled",
    )


@pytest.mark.postgres
def test_cancelling_more_than_is_left_is_refused_without_trace(shop: Services) -> None:
    order = shop.orders.capture(an_order(line("LAMP-01", 3))).order
    refused_without_trace(
        shop,
        lambda: shop.orders.cancel(order.order_id, line_no=1, quantity=4, reason="x"),
        OrderChangeRefused,
        "only 3 of 3",
    )


@pytest.mark.postgres
def test_after_release_a_cancel_is_a_request_the_location_confirms(shop: Services) -> None:
    order = shop.orders.capture(an_order(line("LAMP-01", 3))).order
    shop.orders.release(order.order_id)

    result = shop.orders.cancel(order.order_id, line_no=1, quantity=2, reason="late")

    assert result.cancelled == 0
    [request] = result.requests
    assert (request.location_code, request.quantity) == ("DC-EAST", 2)
    assert atp(shop, "LAMP-01", "DC-EAST") == 7  # nothing freed until the location agrees
    other_store = Principal("k", "S1 tablet", Role.STORE_ASSOCIATE, frozenset({"S1"}))
    refused_without_trace(
        shop,
        lambda: shop.orders.decide_cancel_request(
            order.order_id, request.request_id, confirm=True, principal=other_store
        ),
        Forbidden,
        "may not access location 'DC-EAST'",
    )
    dc = Principal("k2", "DC east", Role.STORE_ASSOCIATE, frozenset({"DC-EAST"}))
    shop.orders.decide_cancel_request(
        order.order_id, request.request_id, confirm=True, principal=dc
    )
    assert placed(shop, order.order_id) == {(Q.RELEASED, "DC-EAST"): 1, (Q.CANCELLED, None): 2}
    assert atp(shop, "LAMP-01", "DC-EAST") == 9
    assert shop.orders.get(order.order_id).status == "released"


@pytest.mark.postgres
def test_a_refused_cancel_request_changes_no_quantity(shop: Services) -> None:
    order = shop.orders.capture(an_order(line("LAMP-01", 2))).order
    shop.orders.release(order.order_id)
    [request] = shop.orders.cancel(order.order_id, reason="late").requests
    shop.orders.move_quantity(
        order.order_id, 1, 2, source=Q.RELEASED, target=Q.PICKED, location_code="DC-EAST"
    )
    shop.orders.move_quantity(
        order.order_id, 1, 2, source=Q.PICKED, target=Q.SHIPPED, location_code="DC-EAST"
    )
    # shipped: confirming is no longer possible, refusing is
    refused_without_trace(
        shop,
        lambda: shop.orders.decide_cancel_request(order.order_id, request.request_id, confirm=True),
        OrderChangeRefused,
        "only 0 of its 2 unit",
    )
    shop.orders.decide_cancel_request(
        order.order_id, request.request_id, confirm=False, reason="already on the truck"
    )
    stored = shop.orders.get(order.order_id)
    assert stored.status == "shipped"
    assert stored.cancel_requests[0].status == "refused"
    assert (atp(shop, "LAMP-01", "DC-EAST"), _on_hand(shop, "LAMP-01", "DC-EAST")) == (8, 8)


def _on_hand(services: Services, sku: str, code: str) -> int:
    positions = services.inventory.item_availability(sku).positions
    return next(p.on_hand for p in positions if p.location_code == code)


# --- address, store and method changes ------------------------------------------------------------


@pytest.mark.postgres
def test_changing_the_ship_to_address_sources_again_from_the_new_nearest(shop: Services) -> None:
    order = shop.orders.capture(an_order(line("LAMP-01", 2))).order
    assert placed(shop, order.order_id) == {(Q.ALLOCATED, "DC-EAST"): 2}

    shop.orders.change_ship_address(order.order_id, WEST_HOME, reason="moved to LA")

    assert placed(shop, order.order_id) == {(Q.ALLOCATED, "DC-WEST"): 2}
    assert (atp(shop, "LAMP-01", "DC-EAST"), atp(shop, "LAMP-01", "DC-WEST")) == (10, 8)
    entry = shop.order_queries.history(order.order_id)[0][-2]
    assert entry.action == "ship_address_changed" and entry.reason == "moved to LA"
    assert entry.old["address"]["city"] == "New York"  # type: ignore[index]
    assert entry.new["address"]["city"] == "Los Angeles"  # type: ignore[index]


@pytest.mark.postgres
def test_changing_the_address_after_release_is_refused_without_trace(shop: Services) -> None:
    order = shop.orders.capture(an_order(line("LAMP-01", 2))).order
    shop.orders.release(order.order_id)
    refused_without_trace(
        shop,
        lambda: shop.orders.change_ship_address(order.order_id, WEST_HOME),
        OrderChangeRefused,
        "already released",
    )


@pytest.mark.postgres
def test_changing_the_pickup_store(shop: Services) -> None:
    put(shop, "SHADE-02", "S1", 2)
    put(shop, "SHADE-02", "S2", 1)
    order = shop.orders.capture(
        an_order(line("SHADE-02", 1, delivery=at_store(DeliveryMethod.PICKUP, "S1")))
    ).order

    shop.orders.change_pickup_location(order.order_id, 1, "S2", reason="closer to work")

    assert placed(shop, order.order_id) == {(Q.ALLOCATED, "S2"): 1}
    assert (atp(shop, "SHADE-02", "S1"), atp(shop, "SHADE-02", "S2")) == (2, 0)
    # back to S1 works; to S3 (no pickup) or to a store without stock does not
    refused_without_trace(
        shop,
        lambda: shop.orders.change_pickup_location(order.order_id, 1, "S3"),
        InvalidOrder,
        "no 'pickup' capability",
    )
    shop.clock.advance(timedelta(minutes=1))  # a newer count: S1 sold its last shades
    put(shop, "SHADE-02", "S1", 0)
    refused_without_trace(
        shop,
        lambda: shop.orders.change_pickup_location(order.order_id, 1, "S1"),
        OrderChangeRefused,
        r"only 0 of 1 unit\(s\) are available at S1",
    )


@pytest.mark.postgres
def test_switching_a_line_between_ship_and_pickup(shop: Services) -> None:
    order = shop.orders.capture(an_order(line("LAMP-01", 1))).order

    shop.orders.change_delivery(order.order_id, 1, at_store(DeliveryMethod.PICKUP, "S2"))
    assert placed(shop, order.order_id) == {(Q.ALLOCATED, "S2"): 1}
    assert atp(shop, "LAMP-01", "S2") == 0

    shop.orders.change_delivery(order.order_id, 1, ship())
    assert placed(shop, order.order_id) == {(Q.ALLOCATED, "DC-EAST"): 1}
    assert atp(shop, "LAMP-01", "S2") == 1

    big = shop.orders.capture(an_order(line("LAMP-01", 2), reference="BIG")).order
    refused_without_trace(
        shop,
        lambda: shop.orders.change_delivery(big.order_id, 1, at_store(DeliveryMethod.PICKUP, "S2")),
        OrderChangeRefused,
        r"only 1 of 2 unit\(s\) are available at S2",
    )
    refused_without_trace(
        shop,
        lambda: shop.orders.change_delivery(big.order_id, 1, Delivery(DeliveryMethod.SHIP)),
        InvalidOrder,
        "address: required",
    )


# --- lines and quantities -------------------------------------------------------------------------


@pytest.mark.postgres
def test_adding_a_line_and_changing_quantities(shop: Services) -> None:
    order = shop.orders.capture(an_order(line("LAMP-01", 2))).order

    shop.orders.add_line(order.order_id, line("SHADE-02", 3), reason="forgot the shade")
    shop.orders.change_quantity(order.order_id, 1, 5, reason="a lamp per room")
    shop.orders.change_quantity(order.order_id, 2, 1, reason="one is enough")

    stored = shop.orders.get(order.order_id)
    assert [ln.buckets for ln in stored.lines] == [
        {(Q.ALLOCATED, "DC-EAST"): 5},
        {(Q.ALLOCATED, "DC-EAST"): 1},
    ]
    assert (atp(shop, "LAMP-01", "DC-EAST"), atp(shop, "SHADE-02", "DC-EAST")) == (5, 9)
    assert stored.total == 6 * 10  # 5 + 1 units at 10.00
    actions = [entry.action for entry in shop.order_queries.history(order.order_id)[0]]
    assert actions == [
        "created",
        "allocated",
        "line_added",
        "allocated",
        "quantity_changed",
        "allocated",
        "quantity_changed",
    ]

    shop.orders.release(order.order_id)
    refused_without_trace(
        shop,
        lambda: shop.orders.change_quantity(order.order_id, 1, 4),
        OrderChangeRefused,
        "already released",
    )
    refused_without_trace(
        shop,
        lambda: shop.orders.add_line(order.order_id, line("NOPE-9", 1)),
        InvalidOrder,
        "unknown SKU",
    )


@pytest.mark.postgres
def test_a_line_added_to_a_cancelled_order_is_refused(shop: Services) -> None:
    order = shop.orders.capture(an_order(line("LAMP-01", 2))).order
    shop.orders.cancel(order.order_id, reason="fraud")
    refused_without_trace(
        shop,
        lambda: shop.orders.add_line(order.order_id, line("SHADE-02", 1)),
        OrderChangeRefused,
        "is cancelled",
    )


# --- holds ----------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_hold_stops_release_until_it_is_released(shop: Services) -> None:
    order = shop.orders.capture(an_order(line("LAMP-01", 2))).order
    risk = Principal("risk", "fraud screen", Role.INTEGRATION)
    shop.orders.place_hold(order.order_id, "fraud", reason="score 91", principal=risk)

    refused_without_trace(
        shop, lambda: shop.orders.release(order.order_id), OrderOnHold, "on hold \\(fraud\\)"
    )
    refused_without_trace(
        shop,
        lambda: shop.orders.place_hold(order.order_id, HoldType.FRAUD, reason="again"),
        OrderChangeRefused,
        "already has a fraud hold",
    )
    hold = shop.orders.release_hold(order.order_id, "fraud", reason="checked by phone")
    assert (hold.placed_by, hold.reason, hold.release_reason) == (
        risk.actor,
        "score 91",
        "checked by phone",
    )
    shop.orders.release(order.order_id)
    assert shop.orders.get(order.order_id).status == "released"


# --- backorders -----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_receipt_allocates_the_oldest_waiting_orders_first(shop: Services) -> None:
    today = shop.clock.now().date()
    shop.inventory.add_supply(
        [
            SupplyLine(
                "PO-7",
                "purchase_order",
                "CHAIR-04",
                "DC-EAST",
                5,
                today + timedelta(days=10),
                "open",
            )
        ]
    )
    first = shop.orders.capture(an_order(line("CHAIR-04", 2), reference="FIRST")).order
    shop.clock.advance(timedelta(minutes=5))
    second = shop.orders.capture(an_order(line("CHAIR-04", 3), reference="SECOND")).order
    shop.clock.advance(timedelta(minutes=5))
    third = shop.orders.capture(an_order(line("CHAIR-04", 1), reference="THIRD")).order
    # 6 units wait; PO-7 brings 5 on day 10: the third order's unit has no date
    assert [shop.orders.get(o.order_id).lines[0].promised_on for o in (first, second, third)] == [
        today + timedelta(days=10),
        today + timedelta(days=10),
        None,
    ]

    shop.inventory.apply_deltas(
        [DeltaLine("wms", "rcpt-1", "CHAIR-04", "DC-EAST", DeltaKind.RECEIPT, 4, shop.clock.now())]
    )
    # the receipt itself allocated the waiting lines (the inventory -> orders hook in bootstrap)

    assert [shop.orders.get(o.order_id).line(1).by_state() for o in (first, second, third)] == [
        {Q.ALLOCATED: 2},
        {Q.ALLOCATED: 2, Q.BACKORDERED: 1},
        {Q.BACKORDERED: 1},
    ]
    assert [shop.orders.get(o.order_id).status for o in (first, second, third)] == [
        "allocated",
        "partially_allocated",
        "backordered",
    ]
    # the first order waits no more; PO-7 still covers the second's last unit and now the third's
    assert [shop.orders.get(o.order_id).lines[0].promised_on for o in (first, second, third)] == [
        None,
        today + timedelta(days=10),
        today + timedelta(days=10),
    ]
    assert atp(shop, "CHAIR-04", "DC-EAST") == 0
    assert shop.orders.allocate_backorders("CHAIR-04") == []  # nothing left to give
    assert shop.orders.allocate_waiting_backorders() == 0  # the worker's safety net finds nothing


def test_a_count_allocates_the_waiting_lines_of_the_skus_it_raised_only(shop: Services) -> None:
    # Two SKUs wait. A count raising one of them looks the raised SKU up (fewer raised than
    # waiting); one raising both and more reads the waiting SKUs and keeps the raised ones.
    chair = shop.orders.capture(an_order(line("CHAIR-04", 1), reference="CHAIR")).order
    bulb = shop.orders.capture(an_order(line("BULB-03", 1), reference="BULB")).order
    assert [shop.orders.get(o.order_id).status for o in (chair, bulb)] == ["backordered"] * 2

    def count(*positions: tuple[str, int]) -> None:
        shop.clock.advance(timedelta(minutes=1))
        shop.inventory.apply_snapshot(
            [SnapshotLine(sku, "DC-EAST", on_hand) for sku, on_hand in positions],
            as_of=shop.clock.now(),
            source="wms",
        )

    count(("CHAIR-04", 1))
    assert [shop.orders.get(o.order_id).status for o in (chair, bulb)] == [
        "allocated",
        "backordered",
    ]
    count(("LAMP-01", 20), ("SHADE-02", 20), ("BULB-03", 1))
    assert shop.orders.get(bulb.order_id).status == "allocated"
    assert shop.orders.allocate_waiting_backorders(["CHAIR-04", "BULB-03"]) == 0


@pytest.mark.postgres
def test_saving_many_orders_sets_what_changed_and_refuses_one_changed_meanwhile(
    shop: Services,
) -> None:
    put(shop, "LAMP-01", "DC-EAST", 10)
    ids = [
        shop.orders.capture(an_order(line("LAMP-01", 1), reference=f"MANY-{n}")).order.order_id
        for n in range(3)
    ]
    with shop.uow() as uow:
        loaded = uow.orders.get_many(ids, for_update=True)
        loaded[ids[0]].notes = "call before delivery"
        uow.orders.save_many([loaded[i] for i in ids], at=shop.clock.now())
        uow.commit()
    with shop.uow(read_only=True) as uow:
        stored = dict(
            uow.connection.execute(
                select(orders.c.order_id, orders.c.notes).where(orders.c.order_id.in_(ids))
            ).all()
        )
    assert stored == {ids[0]: "call before delivery", ids[1]: None, ids[2]: None}

    with shop.uow() as uow:
        loaded = uow.orders.get_many(ids, for_update=True)
        # another writer got to the middle one first
        uow.connection.execute(
            orders.update().where(orders.c.order_id == ids[1]).values(version=orders.c.version + 1)
        )
        with pytest.raises(OrderChangedConcurrently):
            uow.orders.save_many([loaded[i] for i in ids], at=shop.clock.now())
