"""The demo retailer: what ``oms demo`` seeds before it serves.

Seeding is idempotent: running it again adds nothing that is already there. The retailer comes
from :mod:`oms.demo.generator` (size ``small`` by default) and goes in through the same inventory
services as any import: items, then locations, then for the locations this run added an opening
stock snapshot and future supply (purchase orders, transfers) dated from today. Locations, items
and stock already present are left as they are, so what a demo user changed (a store gone dark,
stock sold) survives a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from oms.bootstrap import Services
from oms.config import Settings
from oms.demo.generator import (
    Retailer,
    generate_retailer,
    item_record,
    location_document,
)
from oms.domain.access import Role
from oms.domain.errors import Conflict
from oms.domain.inventory import SupplyLine

DEMO_SEED = 2026
DEMO_SIZE = "small"
STOCK_SOURCE = "demo-seed"
STOCK_BATCH = 50_000
PAGE = 500

Progress = Callable[[str], None]


class OtherRetailerSeeded(Conflict):
    slug = "other-demo-retailer"
    title = "The database holds another demo retailer"


@dataclass(frozen=True)
class SeedReport:
    locations_added: int
    items_added: int
    positions_added: int
    supply_added: int
    locations: int
    items: int

    @property
    def changed(self) -> bool:
        return bool(
            self.locations_added or self.items_added or self.positions_added or self.supply_added
        )


def _existing_location_codes(services: Services) -> set[str]:
    codes: set[str] = set()
    after: str | None = None
    while True:
        page = services.inventory.list_locations(after=after, limit=PAGE)
        codes.update(location.code for location in page)
        if len(page) < PAGE:
            return codes
        after = page[-1].code


def _existing_skus(services: Services) -> set[str]:
    skus: set[str] = set()
    after: str | None = None
    while True:
        page = services.inventory.list_items(after=after, limit=PAGE)
        skus.update(item.sku for item in page)
        if len(page) < PAGE:
            return skus
        after = page[-1].sku


def seed_retailer(
    services: Services, retailer: Retailer, *, progress: Progress | None = None
) -> SeedReport:
    """Add what of ``retailer`` is missing: locations, items, and opening stock at the locations
    added now (stock at locations that were already there is theirs to keep)."""

    def say(message: str) -> None:
        if progress:
            progress(message)

    # Items first: if they clash with another retailer's, nothing has been added yet.
    known_skus = _existing_skus(services)
    new_items = [item for item in retailer.items if item.sku not in known_skus]
    if new_items:
        say(f"adding {len(new_items)} items")
        try:
            services.inventory.import_items([item_record(item) for item in new_items])
        except Conflict as clash:
            raise OtherRetailerSeeded(
                f"the database holds items of another demo retailer ({clash.detail}); seed "
                f"with the seed used before, or use an empty database (OMS_DATA_DIR)"
            ) from None
    known_codes = _existing_location_codes(services)
    new_locations = [loc for loc in retailer.locations if loc.code not in known_codes]
    if new_locations:
        say(f"adding {len(new_locations)} locations")
        services.inventory.import_locations([location_document(loc) for loc in new_locations])
    new_codes = {location.code for location in new_locations}
    added = 0
    # Positions come location by location; import whole locations in batches of about
    # STOCK_BATCH rows, so that the large size never holds millions of rows at once.
    batch: list[dict[str, object]] = []
    current: str | None = None
    for position in retailer.positions():
        if position.location_code not in new_codes:
            continue
        if position.location_code != current and len(batch) >= STOCK_BATCH:
            services.inventory.import_stock(batch, source=STOCK_SOURCE)
            added += len(batch)
            say(f"opening stock: {added} positions")
            batch = []
        current = position.location_code
        batch.append(
            {"sku": position.sku, "location": position.location_code, "on_hand": position.on_hand}
        )
    if batch:
        services.inventory.import_stock(batch, source=STOCK_SOURCE)
        added += len(batch)
    # Future supply, dated from today: purchase orders due at DCs, transfers due at stores.
    today = services.clock.now().date()
    supply = [
        SupplyLine(
            reference=line.reference,
            kind=line.kind,
            sku=line.sku,
            location_code=line.location_code,
            quantity=line.quantity,
            expected_on=today + timedelta(days=line.expected_in_days),
            status=line.status,
        )
        for line in retailer.supply()
        if line.location_code in new_codes
    ]
    if supply:
        say(f"adding future supply: {len(supply)} lines")
        services.inventory.add_supply(supply)
    return SeedReport(
        locations_added=len(new_locations),
        items_added=len(new_items),
        positions_added=added,
        supply_added=len(supply),
        locations=len(retailer.locations),
        items=len(retailer.items),
    )


def seed_demo(
    services: Services,
    settings: Settings,
    *,
    size: str = DEMO_SIZE,
    seed: int = DEMO_SEED,
    progress: Progress | None = None,
) -> list[str]:
    """Seed the demo data and return lines for the operator to read."""
    lines: list[str] = []
    retailer = generate_retailer(seed, size)
    report = seed_retailer(services, retailer, progress=progress)
    state = "seeded now" if report.changed else "already there"
    lines.append(
        f"demo retailer ({size}, seed {seed}, {state}): {report.locations} locations, "
        f"{report.items} items; added {report.locations_added} locations, "
        f"{report.items_added} items, {report.positions_added} stock positions, "
        f"{report.supply_added} supply lines"
    )
    deployed = services.fulfillment_processes.deploy_defaults(deployed_by="demo")
    lines.append(
        "default processes: "
        + ", ".join(f"{d.definition.key} v{d.definition.version}" for d in deployed)
    )
    key_file = settings.data_dir / "demo-admin.key"
    existing = {key.name for key in services.access.list_keys() if key.revoked_at is None}
    if "demo admin" not in existing or not key_file.exists():
        created = services.access.create_key(name="demo admin", role=Role.ADMIN)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(created.secret + "\n")
        key_file.chmod(0o600)
    lines.append(f"demo admin API key (also in {key_file}): {key_file.read_text().strip()}")
    lines.append(
        f'try: curl -H "X-API-Key: $(cat {key_file})" '
        f"http://{settings.host}:{settings.port}/locations"
    )
    return lines
