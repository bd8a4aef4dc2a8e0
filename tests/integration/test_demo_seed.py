"""Seeding the demo retailer goes through the inventory services and is idempotent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from oms.adapters.clock import ControlledClock
from oms.bootstrap import Services
from oms.config import Settings
from oms.demo import OtherRetailerSeeded, seed_demo, seed_retailer
from oms.demo.generator import DC, STORE, generate_retailer


@pytest.mark.postgres
def test_the_demo_retailer_is_seeded_once_through_the_inventory_services(
    services: Services, settings: Settings, clock: ControlledClock
) -> None:
    seeded_on = clock.now().date()
    first = seed_demo(services, settings)
    clock.advance(timedelta(minutes=1))
    second = seed_demo(services, settings)

    retailer = generate_retailer(2026, "small")
    positions = list(retailer.positions())
    assert f"added {len(retailer.locations)} locations" in first[0]
    assert f"{len(positions)} stock positions" in first[0]
    assert "already there" in second[0] and "added 0 locations, 0 items, 0" in second[0]
    demo_keys = [key for key in services.access.list_keys() if key.name == "demo admin"]
    assert len(demo_keys) == 1
    secret = (settings.data_dir / "demo-admin.key").read_text().strip()
    assert any(secret in line for line in second)

    listed = services.inventory.list_locations(limit=1000)
    assert sorted(loc.code for loc in listed) == sorted(loc.code for loc in retailer.locations)
    assert len(services.inventory.list_items(limit=1000)) == len(retailer.items)
    # stock is there, deep in a DC and shallow in a store, with the store's safety stock kept back
    dc = next(loc for loc in retailer.locations if loc.type == DC)
    store = next(loc for loc in retailer.locations if loc.type == STORE)
    by_key = {(p.sku, p.location_code): p for p in positions}
    sku = next(
        p.sku
        for p in positions
        if p.location_code == store.code and p.on_hand > 3 and (p.sku, dc.code) in by_key
    )
    found = services.inventory.item_availability(sku, location_codes=[dc.code, store.code])
    assert found.atp[dc.code] == by_key[(sku, dc.code)].on_hand
    assert found.atp[store.code] == by_key[(sku, store.code)].on_hand - 2
    # future supply is there too, dated from the day of seeding
    supply = list(retailer.supply())
    assert f"{len(supply)} supply lines" in first[0]
    order = next(line for line in supply if line.kind == "purchase_order")
    due = services.inventory.item_availability(order.sku, location_codes=[order.location_code])
    assert [(s.reference, s.quantity, s.expected_on) for s in due.supply] == [
        (
            order.reference,
            order.quantity,
            seeded_on + timedelta(days=order.expected_in_days),
        )
    ]


def test_seeding_keeps_what_the_demo_user_changed(services: Services, settings: Settings) -> None:
    retailer = generate_retailer(5, "small")
    seed_retailer(services, retailer)
    store = next(loc for loc in retailer.locations if loc.type == STORE)
    services.inventory.update_location(store.code, {"status": "dark"})

    again = seed_retailer(services, retailer)

    assert not again.changed
    assert services.inventory.get_location(store.code).status == "dark"


def test_another_retailers_data_is_refused_before_anything_is_added(services: Services) -> None:
    seed_retailer(services, generate_retailer(5, "small"))
    before = len(services.inventory.list_items(limit=1000))

    with pytest.raises(OtherRetailerSeeded, match="another demo retailer"):
        seed_retailer(services, generate_retailer(6, "small"))

    assert len(services.inventory.list_items(limit=1000)) == before


def test_opening_stock_goes_in_by_whole_locations_in_batches(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    import oms.demo

    monkeypatch.setattr(oms.demo, "STOCK_BATCH", 1_000)
    batches: list[set[str]] = []
    import_stock = services.inventory.import_stock

    def recording(records: list[dict[str, object]], **options: object) -> object:
        batches.append({str(record["location"]) for record in records})
        return import_stock(records, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(services.inventory, "import_stock", recording)
    retailer = generate_retailer(5, "small")

    report = seed_retailer(services, retailer)

    assert report.positions_added == sum(1 for _ in retailer.positions())
    assert len(batches) > 1
    seen: set[str] = set()
    for locations in batches:
        assert not locations & seen  # a location's count is never split over two snapshots
        seen |= locations
