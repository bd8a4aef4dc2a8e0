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


def race_for_stock(
    database_url: str,
    api_key: str,
    worker: int,
    barrier: Any,
    results: Any,
) -> None:
    """One OS process of the oversell race: it keeps taking 1 unit of HOT-1 at DC-EAST until
    refused. Even workers reserve over HTTP (their own app on the shared database), odd workers
    allocate through the service; both must meet the same conditional update."""
    from fastapi.testclient import TestClient

    from oms.api.app import create_app
    from oms.bootstrap import build_services
    from oms.config import Settings
    from oms.domain.inventory import InsufficientStock, StockLine

    services = build_services(Settings(database_url=database_url))
    outcomes: list[dict[str, Any]] = []
    try:
        client = TestClient(create_app(services), headers={"X-API-Key": api_key})
        barrier.wait(timeout=60)
        while True:
            if worker % 2 == 0:
                response = client.post(
                    "/reservations",
                    json={
                        "reference": f"cart-{worker}-{len(outcomes)}",
                        "lines": [{"sku": "HOT-1", "quantity": 1, "location": "DC-EAST"}],
                        "ttl_seconds": 3600,
                    },
                )
                outcomes.append(
                    {
                        "worker": worker,
                        "how": "reserve",
                        "status": response.status_code,
                        "content_type": response.headers.get("content-type"),
                        "body": response.json(),
                    }
                )
                if response.status_code != 201:
                    break
            else:
                try:
                    services.inventory.allocate([StockLine("HOT-1", "DC-EAST", 1)])
                    outcomes.append({"worker": worker, "how": "allocate", "status": 201})
                except InsufficientStock as refused:
                    outcomes.append(
                        {
                            "worker": worker,
                            "how": "allocate",
                            "status": 409,
                            "body": {"available": refused.available, "detail": refused.detail},
                        }
                    )
                    break
        client.close()
    finally:
        services.close()
        results.put(outcomes)
