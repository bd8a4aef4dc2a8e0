"""Order capture through the services: validation, sourcing, allocation, retries, SQL budget."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, func, select

from oms.adapters.db.tables import order_timeline, orders, outbox_events
from oms.bootstrap import Services, build_services
from oms.config import Settings
from oms.domain.inventory import SupplyLine
from oms.domain.orders import (
    Address,
    CardNumberRejected,
    Delivery,
    DeliveryMethod,
    InvalidOrder,
    PaymentReference,
    QuantityState,
    Totals,
)
from oms.queries.orders import OrderSearch
from tests.inventory_support import atp
from tests.orders_support import (
    WEST_HOME,
    IdsThatCollideOnce,
    an_order,
    at_store,
    line,
    order_network,
    put,
    ship,
)


@pytest.fixture
def shop(services: Services) -> Services:
    order_network(services)
    return services


def field_pointers(error: InvalidOrder) -> dict[str, str]:
    return {e["pointer"]: e["detail"] for e in error.extensions["errors"]}


@pytest.mark.postgres
def test_capture_allocates_each_line_at_the_nearest_location_that_can_serve_it(
    shop: Services,
) -> None:
    put(shop, "LAMP-01", "DC-EAST", 10)
    put(shop, "LAMP-01", "DC-WEST", 10)
    put(shop, "SHADE-02", "S1", 3)
    put(shop, "BULB-03", "V1", 50)

    captured = shop.orders.capture(
        an_order(
            line("LAMP-01", 2),  # ships to New York: DC-EAST, not DC-WEST
            line("LAMP-01", 1, delivery=ship(WEST_HOME)),  # Los Angeles: DC-WEST
            line("SHADE-02", 3, delivery=at_store(DeliveryMethod.PICKUP)),
            line(
                "BULB-03", 6, "1.50", delivery=Delivery(DeliveryMethod.DROPSHIP, address=WEST_HOME)
            ),
        )
    )

    order = captured.order
    assert captured.created
    assert [
        (ln.line_no, ln.status, ln.at_locations(QuantityState.ALLOCATED)) for ln in order.lines
    ] == [
        (1, "allocated", [("DC-EAST", 2)]),
        (2, "allocated", [("DC-WEST", 1)]),
        (3, "allocated", [("S1", 3)]),
        (4, "allocated", [("V1", 6)]),
    ]
    assert order.status == "allocated"
    # 2 x 10 + 1 x 10 + 3 x 10 + 6 x 1.50 = 69.00
    assert order.total == Decimal("69.00")
    assert (atp(shop, "LAMP-01", "DC-EAST"), atp(shop, "LAMP-01", "DC-WEST")) == (8, 9)
    assert atp(shop, "SHADE-02", "S1") == 0
    types = [e.type for e in shop.events.read(types=["order.created", "order.allocated"])]
    assert types == ["order.created", "order.allocated"]
    stored = shop.orders.get(order.order_id)
    assert stored.status == "allocated" and stored.lines[2].delivery.pickup_location_code == "S1"
    assert stored.customer.email == "ann@example.com"  # kept lower case for search


def test_pickup_lines_choose_their_store_before_ship_lines_take_its_stock(shop: Services) -> None:
    put(shop, "LAMP-01", "S1", 2)
    order = shop.orders.capture(
        an_order(
            line("LAMP-01", 2, delivery=ship()),  # S1 is the nearest shipper, but ...
            line("LAMP-01", 2, delivery=at_store(DeliveryMethod.PICKUP)),  # ... only S1 serves this
        )
    ).order
    assert order.lines[1].at_locations(QuantityState.ALLOCATED) == [("S1", 2)]
    assert order.lines[0].status == "backordered"


@pytest.mark.postgres
def test_a_line_without_stock_waits_with_the_date_future_supply_covers(shop: Services) -> None:
    put(shop, "CHAIR-04", "DC-EAST", 1)
    today = shop.clock.now().date()
    shop.inventory.add_supply(
        [
            SupplyLine(
                "PO-1",
                "purchase_order",
                "CHAIR-04",
                "DC-EAST",
                2,
                today + timedelta(days=5),
                "open",
            ),
            SupplyLine(
                "PO-2",
                "purchase_order",
                "CHAIR-04",
                "DC-WEST",
                10,
                today + timedelta(days=9),
                "open",
            ),
        ]
    )
    first = shop.orders.capture(an_order(line("CHAIR-04", 3), reference="A")).order
    # 1 allocated at DC-EAST; 2 wait: PO-1 (2 units, day 5) covers them
    assert first.lines[0].by_state() == {"allocated": 1, "backordered": 2}
    assert first.lines[0].promised_on == today + timedelta(days=5)
    assert first.status == "partially_allocated"
    second = shop.orders.capture(an_order(line("CHAIR-04", 4), reference="B")).order
    # the 2 units of PO-1 are promised already: PO-2 (day 9) covers the next 4
    assert second.lines[0].promised_on == today + timedelta(days=9)
    third = shop.orders.capture(an_order(line("CHAIR-04", 20), reference="C")).order
    assert third.lines[0].promised_on is None  # no supply covers it: date unknown
    backordered = shop.events.read(types=["order.backordered"])
    assert [e.data["lines"][0]["expected_on"] for e in backordered] == [
        (today + timedelta(days=5)).isoformat(),
        (today + timedelta(days=9)).isoformat(),
        None,
    ]


# --- validation ---------------------------------------------------------------------------------


def test_validation_names_every_bad_field(shop: Services) -> None:
    with pytest.raises(InvalidOrder) as refused:
        shop.orders.capture(
            an_order(
                line("NOPE-99", 1),
                line("LAMP-01", 0),
                line("LAMP-01", 1, delivery=at_store(DeliveryMethod.PICKUP, "S3")),
                line("LAMP-01", 1, delivery=at_store(DeliveryMethod.CURBSIDE, "S2")),
                line("LAMP-01", 1, delivery=at_store(DeliveryMethod.PICKUP, "S4")),
                line(
                    "LAMP-01",
                    1,
                    delivery=Delivery(
                        DeliveryMethod.SHIP,
                        address=Address(
                            name="Ann", line1="", city="NYC", postal_code="", country="US"
                        ),
                    ),
                ),
                line("LAMP-01", 1, delivery=at_store(DeliveryMethod.PICKUP, "NOWHERE")),
                payments=[PaymentReference("card", "tok_1", Decimal("10.00"), currency="EUR")],
            )
        )
    assert field_pointers(refused.value) == {
        "#/lines/0/sku": "unknown SKU 'NOPE-99'",
        "#/lines/1/quantity": "must be at least 1",
        "#/lines/2/delivery/pickup_location_code": "location 'S3' has no 'pickup' capability",
        "#/lines/3/delivery/pickup_location_code": "location 'S2' has no 'curbside' capability",
        "#/lines/4/delivery/pickup_location_code": "location 'S4' is offline, not active",
        "#/lines/5/delivery/address/line1": "required for delivery to an address",
        "#/lines/5/delivery/address/postal_code": "required for delivery to an address",
        "#/lines/6/delivery/pickup_location_code": "unknown location 'NOWHERE'",
        "#/payments/0/currency": "EUR does not match the order's currency USD",
    }
    with shop.uow(read_only=True) as uow:
        assert uow.connection.execute(select(func.count()).select_from(orders)).scalar() == 0


def test_totals_that_do_not_add_up_and_unknown_currencies_are_refused(shop: Services) -> None:
    with pytest.raises(InvalidOrder) as refused:
        shop.orders.capture(
            an_order(
                line("LAMP-01", 2, "10.00", discount=Decimal("1.00"), total=Decimal("20.00")),
                totals=Totals(total=Decimal("20.00"), currency="USD"),
            )
        )
    assert field_pointers(refused.value) == {
        "#/lines/0/total": "20.00 does not add up: 2 x 10.00 - 1.00 + 0 = 19.00"
    }
    with pytest.raises(InvalidOrder) as unknown:
        shop.orders.capture(an_order(currency="ABC"))
    assert "#/currency" in field_pointers(unknown.value)


def test_a_card_number_anywhere_is_refused_and_nothing_is_stored(shop: Services) -> None:
    put(shop, "LAMP-01", "DC-EAST", 5)
    for command in (
        an_order(payments=[PaymentReference("card", "4111 1111 1111 1111")]),
        an_order(notes="card 5555-5555-5555-4444 exp 12/29"),
    ):
        with pytest.raises(CardNumberRejected) as refused:
            shop.orders.capture(command)
        assert refused.value.extensions["errors"][0]["pointer"] in ("#/payments/0/token", "#/notes")
    assert atp(shop, "LAMP-01", "DC-EAST") == 5
    assert shop.events.read(types=["order.created"]) == []


# --- retries and concurrency ----------------------------------------------------------------------


@pytest.mark.postgres
def test_a_retried_capture_returns_the_existing_order(shop: Services) -> None:
    put(shop, "LAMP-01", "DC-EAST", 5)
    first = shop.orders.capture(an_order(line("LAMP-01", 2)))
    again = shop.orders.capture(an_order(line("LAMP-01", 2)))
    other_channel = shop.orders.capture(an_order(line("LAMP-01", 1), channel="app"))
    assert (first.created, again.created, other_channel.created) == (True, False, True)
    assert again.order.order_id == first.order.order_id
    assert other_channel.order.order_id != first.order.order_id
    assert atp(shop, "LAMP-01", "DC-EAST") == 2  # 5 - 2 - 1: the retry allocated nothing


@pytest.mark.postgres
def test_an_order_number_already_taken_is_drawn_again(
    shop: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(shop, "LAMP-01", "DC-EAST", 5)
    first = shop.orders.capture(an_order(line("LAMP-01", 1), reference="WEB-1"))
    ids = IdsThatCollideOnce(shop.orders._ids)
    monkeypatch.setattr(shop.orders, "_ids", ids)
    ids.collide_with = first.order.order_id

    second = shop.orders.capture(an_order(line("LAMP-01", 2), reference="WEB-2"))

    assert ids.collide_with is None  # the colliding id was tried
    assert second.created and second.order.order_number != first.order.order_number
    assert shop.orders.get(first.order.order_id).order_number == first.order.order_number
    assert atp(shop, "LAMP-01", "DC-EAST") == 2  # the failed attempt allocated nothing


def _capture_in_process(url: str, barrier: Any, results: Any) -> None:
    services = build_services(Settings(database_url=url))
    try:
        barrier.wait(timeout=30)
        captured = services.orders.capture(an_order(line("LAMP-01", 1), reference="RACE-1"))
        results.put((captured.order.order_id, captured.created))
    except Exception as error:  # reported to the test, which fails on it
        results.put(("error", repr(error)))
    finally:
        services.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_the_same_channel_reference_captured_by_several_processes_makes_one_order(
    shop: Services, database_url: str
) -> None:
    put(shop, "LAMP-01", "DC-EAST", 100)
    context = multiprocessing.get_context("spawn")
    processes_count = 6
    barrier = context.Barrier(processes_count)
    results = context.Queue()
    processes = [
        context.Process(target=_capture_in_process, args=(database_url, barrier, results))
        for _ in range(processes_count)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    assert not [o for o in outcomes if o[0] == "error"], outcomes
    assert len({order_id for order_id, _ in outcomes}) == 1
    assert sorted(created for _, created in outcomes) == [False] * 5 + [True]
    with shop.uow(read_only=True) as uow:
        assert uow.connection.execute(select(func.count()).select_from(orders)).scalar() == 1
    assert atp(shop, "LAMP-01", "DC-EAST") == 99


# --- SQL budget -----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_capturing_a_three_line_order_issues_at_most_20_statements_none_repeated(
    shop: Services,
) -> None:
    for sku in ("LAMP-01", "SHADE-02", "BULB-03"):
        put(shop, sku, "DC-EAST", 10)
    shop.orders.capture(an_order(line("LAMP-01", 1), reference="warm-up"))  # caches, pool
    statements: list[tuple[str, str]] = []

    def count(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        statements.append((statement, repr(parameters)))

    event.listen(shop.engine, "before_cursor_execute", count)
    try:
        shop.orders.capture(
            an_order(line("LAMP-01", 1), line("SHADE-02", 2), line("BULB-03", 3), reference="X")
        )
    finally:
        event.remove(shop.engine, "before_cursor_execute", count)

    listing = "\n".join(sql.split("\n")[0][:100] for sql, _ in statements)
    # 15 on SQLite (its BEGIN IMMEDIATE is one), 14 on PostgreSQL; room for a few more
    assert len(statements) <= 20, listing
    repeated = [s for s, n in Counter(statements).items() if n > 1]
    assert repeated == [], repeated
    with shop.uow(read_only=True) as uow:
        assert (
            uow.connection.execute(select(func.count()).select_from(order_timeline)).scalar() == 4
        )  # created + allocated, for each of the two orders
        assert (
            uow.connection.execute(
                select(func.count())
                .select_from(outbox_events)
                .where(outbox_events.c.type == "order.created")
            ).scalar()
            == 2
        )


# --- search ---------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_search_by_customer_reference_status_channel_location_and_dates(shop: Services) -> None:
    put(shop, "LAMP-01", "DC-EAST", 100)
    put(shop, "SHADE-02", "S1", 1)
    made = []
    for index, channel in enumerate(["web", "app", "store", "call_center", "marketplace"] * 2):
        wanted = (
            line("SHADE-02", 1, delivery=at_store(DeliveryMethod.PICKUP))
            if index == 3
            else line("LAMP-01", 1)
        )
        made.append(
            shop.orders.capture(an_order(wanted, channel=channel, reference=f"R-{index}")).order
        )
        shop.clock.advance(timedelta(minutes=1))
    shop.orders.cancel(made[0].order_id, reason="customer asked")
    q = shop.order_queries

    assert [
        o.order_id for o in q.search(OrderSearch(email="ANN@example.com"), limit=200).items
    ] == [o.order_id for o in reversed(made)]
    assert [o.channel_reference for o in q.search(OrderSearch(channel="app")).items] == [
        "R-6",
        "R-1",
    ]
    assert [o.order_id for o in q.search(OrderSearch(status="cancelled")).items] == [
        made[0].order_id
    ]
    assert [o.order_id for o in q.search(OrderSearch(location_code="S1")).items] == [
        made[3].order_id
    ]
    # the cancelled order holds nothing at DC-EAST any more
    assert len(q.search(OrderSearch(location_code="DC-EAST")).items) == 8
    assert q.search(OrderSearch(phone="+1 (212) 555-0100")).items[0].order_id == made[-1].order_id
    assert (
        q.search(OrderSearch(order_number=made[2].order_number)).items[0].order_id
        == made[2].order_id
    )
    assert q.search(OrderSearch(channel_reference="R-4")).items[0].order_id == made[4].order_id
    start = made[0].created_at + timedelta(minutes=2)
    window = q.search(OrderSearch(created_from=start, created_to=start + timedelta(minutes=3)))
    assert [o.channel_reference for o in window.items] == ["R-4", "R-3", "R-2"]

    seen: list[str] = []
    cursor = None
    while True:
        page = q.search(OrderSearch(), limit=3, cursor=cursor)
        seen.extend(o.order_id for o in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [o.order_id for o in reversed(made)]
