"""Helpers to build a small fulfillment network in tests (locations, items, stock)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from oms.bootstrap import Services
from oms.services.ports import SnapshotLine


def a_location(code: str, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "code": code,
        "name": f"Location {code}",
        "type": "dc",
        "latitude": 40.7128,
        "longitude": -74.0060,
        "timezone": "America/New_York",
        "capabilities": ["ship"],
    }
    record.update(fields)
    return record


def an_item(sku: str, **fields: Any) -> dict[str, Any]:
    return {"sku": sku, "name": f"Item {sku}", **fields}


def network(
    services: Services,
    *,
    locations: list[dict[str, Any]] | None = None,
    skus: list[str] | None = None,
) -> None:
    for record in locations or [a_location("DC-EAST")]:
        services.inventory.create_location(record)
    for sku in skus or ["LAMP-01"]:
        services.inventory.create_item(an_item(sku))


def stock(
    services: Services,
    sku: str,
    *,
    at: str,
    on_hand: int,
    as_of: datetime | None = None,
    source: str = "test",
) -> None:
    services.inventory.apply_snapshot(
        [SnapshotLine(sku, at, on_hand)],
        as_of=as_of or services.clock.now(),
        source=source,
    )


def atp(services: Services, sku: str, location: str) -> int:
    return services.inventory.item_availability(sku).atp.get(location, 0)
