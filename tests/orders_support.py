"""Helpers for order tests: a small network (two DCs, stores, a vendor) and order requests."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from oms.bootstrap import Services
from oms.domain.locations import LocationType
from oms.domain.orders import Address, Customer, Delivery, DeliveryMethod, LineRequest
from oms.services.orders import CaptureOrder
from tests.inventory_support import a_location, an_item, stock

HOME = Address(
    name="Ann Lee",
    line1="1 Main St",
    city="New York",
    postal_code="10001",
    country="US",
    latitude=40.75,
    longitude=-73.99,
)
WEST_HOME = Address(
    name="Bo Diaz",
    line1="9 Sunset Blvd",
    city="Los Angeles",
    postal_code="90001",
    country="US",
    latitude=34.05,
    longitude=-118.25,
)
SKUS = ["LAMP-01", "SHADE-02", "BULB-03", "CHAIR-04"]


def order_network(services: Services) -> None:
    """DC-EAST (New York) and DC-WEST (Los Angeles) ship; S1 (New York) offers pickup and
    curbside; S2 (Boston) pickup only; S3 ships but has no pickup; S4 is offline; V1 is a
    vendor that drop-ships. Stores keep no safety stock here, so ATP = on hand."""
    services.inventory.set_safety_stock_default(LocationType.STORE, 0)
    for record in (
        a_location("DC-EAST", latitude=40.71, longitude=-74.0),
        a_location("DC-WEST", latitude=34.05, longitude=-118.24, timezone="America/Los_Angeles"),
        a_location(
            "S1",
            type="store",
            latitude=40.76,
            longitude=-73.98,
            capabilities=["ship", "pickup", "curbside", "receive_transfer"],
        ),
        a_location("S2", type="store", latitude=42.36, longitude=-71.06, capabilities=["pickup"]),
        a_location("S3", type="store", latitude=40.7, longitude=-74.01, capabilities=["ship"]),
        a_location(
            "S4",
            type="store",
            status="offline",
            latitude=40.7,
            longitude=-74.0,
            capabilities=["pickup"],
        ),
        a_location("V1", type="vendor", latitude=41.0, longitude=-80.0, capabilities=["ship"]),
    ):
        services.inventory.create_location(record)
    for sku in SKUS:
        services.inventory.create_item(an_item(sku))


def put(services: Services, sku: str, location: str, on_hand: int) -> None:
    stock(services, sku, at=location, on_hand=on_hand)


def ship(address: Address = HOME) -> Delivery:
    return Delivery(DeliveryMethod.SHIP, address=address)


def at_store(method: DeliveryMethod, store: str = "S1") -> Delivery:
    return Delivery(method, pickup_location_code=store)


def line(
    sku: str, quantity: int, price: str = "10.00", delivery: Delivery | None = None, **extra: Any
) -> LineRequest:
    return LineRequest(sku, quantity, Decimal(price), delivery or ship(), **extra)


def an_order(
    *lines: LineRequest,
    channel: str = "web",
    reference: str = "WEB-1001",
    currency: str = "USD",
    **extra: Any,
) -> CaptureOrder:
    return CaptureOrder(
        channel=channel,
        channel_reference=reference,
        customer=Customer(
            customer_id="C-1", name="Ann Lee", email="Ann@Example.com", phone="+1 212 555 0100"
        ),
        currency=currency,
        lines=list(lines) or [line("LAMP-01", 2)],
        **extra,
    )


class IdsThatCollideOnce:
    """Hands out, once, an id whose low 50 bits (an order or RMA number) equal an earlier one's."""

    def __init__(self, ids: Any) -> None:
        self._ids = ids
        self.collide_with: str | None = None

    def new_id(self) -> str:
        if self.collide_with is not None:
            twin = uuid.UUID(self.collide_with).int ^ (1 << 100)  # a high bit: same number
            self.collide_with = None
            return str(uuid.UUID(int=twin))
        return str(self._ids.new_id())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ids, name)
