"""Fulfillment network and real-time inventory: locations, items, stock, ATP, holds, feeds.

Using stock from another use case (order capture, sourcing, fulfillment)
------------------------------------------------------------------------
The repository methods work inside *your* unit of work, so stock moves in the same transaction
as your order (and their ``inventory.changed`` / ``availability.*`` events reach the outbox in the
same commit)::

    from oms.domain.inventory import InsufficientStock, StockLine

    with self._uow() as uow:
        now = self._clock.now()
        # sourcing input: sku -> {location code: ATP}, positive ATP only, channel buffer applied
        atp = uow.inventory.atp(["LAMP-01", "MUG-02"], at=now, channel="web")
        locations = uow.locations.get_many(list(atp["LAMP-01"]))      # code -> Location
        item = uow.items.require("LAMP-01")                           # or ItemNotFound
        # all or nothing; InsufficientStock(Conflict) carries sku, location, requested, available
        uow.inventory.allocate([StockLine("LAMP-01", "DC-EAST", 2)], at=now, channel="web")
        lines = uow.inventory.confirm_reservation(reservation_id, at=now)  # a hold -> allocation
        uow.inventory.deallocate([StockLine("LAMP-01", "DC-EAST", 1)], at=now)  # cancel
        uow.inventory.consume([StockLine("LAMP-01", "DC-EAST", 1)], at=now, reference="SHIP-9")
        uow.locations.consume_capacity("DC-EAST", on=now.date())  # or CapacityExhausted
        uow.commit()

If ``allocate`` raises, let the exception leave the ``with`` block (the unit of work rolls back)
or re-plan in a new unit of work: a failed conditional update never leaves a partial allocation
behind once the transaction is rolled back.

The worker frees expired holds with :meth:`InventoryService.release_expired_reservations`; even
before it runs, an expired hold never counts in ATP (reads subtract it using the clock).
"""

from __future__ import annotations

import logging
import time as monotonic
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from oms.domain.errors import Invalid
from oms.domain.inventory import (
    ChannelBuffer,
    DeltaKind,
    InsufficientStock,
    Position,
    PositionChange,
    Reservation,
    ReservationNotFound,
    StockLine,
    SupplyLine,
)
from oms.domain.items import Item, ItemNotFound
from oms.domain.locations import (
    Capability,
    GeoPoints,
    Location,
    LocationNotFound,
    LocationStatus,
    LocationType,
    distance_array_km,
    distances_km,
    geo_points,
    haversine_km,
)
from oms.domain.promising import (
    BoolArray,
    Candidates,
    DeliveryMethod,
    DistanceTransitModel,
    Promise,
    TransitModel,
    earliest_promise,
    rank_sources,
    whole_basket_slots,
)
from oms.services.ports import (
    Clock,
    DeltaLine,
    FeedOutcome,
    Ids,
    SnapshotLine,
    UnitOfWork,
    UnitOfWorkFactory,
)
from oms.services.records import (
    FieldErrors,
    _Collector,
    item_from_record,
    location_from_record,
    parse_all,
    read_records,
)

log = logging.getLogger("oms.inventory")

StockListener = Callable[[Sequence[str]], None]
"""Told which SKUs gained on-hand stock, after the commit."""

Progress = Callable[[int, int], None]
"""Called with (rows done, rows in total) while an import is applied."""

MAX_RESERVATION_TTL = timedelta(days=7)
DEFAULT_RESERVATION_TTL = timedelta(minutes=15)
LOCATION_CACHE_SECONDS = 5.0
NETWORK_RETRIES = 3


class ImportRejected(Invalid):
    """The file has invalid rows; nothing was applied. ``rows`` lists every bad row and why."""

    slug = "import-rejected"
    title = "The import was rejected: some rows are not valid"


@dataclass(frozen=True)
class ImportSummary:
    kind: str
    rows: int
    created: int = 0
    updated: int = 0
    applied: int = 0
    unchanged: int = 0
    stale: list[dict[str, object]] = field(default_factory=list)
    duplicates: list[dict[str, object]] = field(default_factory=list)
    superseded: list[dict[str, object]] = field(default_factory=list)


@dataclass(frozen=True)
class BasketLine:
    sku: str
    quantity: int


@dataclass(frozen=True)
class LineSource:
    location_code: str
    atp: int
    distance_km: float | None
    promise: Promise


@dataclass(frozen=True)
class LineAvailability:
    sku: str
    quantity: int
    available: int
    """Network ATP over the locations that may serve this line."""
    fulfillable: bool
    sources: list[LineSource]
    reason: str | None = None


@dataclass(frozen=True)
class BasketAvailability:
    method: DeliveryMethod
    lines: list[LineAvailability]
    fulfillable: bool
    single_locations: list[str]
    """Locations that can serve the whole basket on their own (no split), best first."""
    earliest_promise: date | None


@dataclass(frozen=True)
class NearbyStore:
    location: Location
    distance_km: float
    atp: dict[str, int]
    has_all: bool
    promise: Promise


@dataclass(frozen=True)
class ReservationRequestLine:
    sku: str
    quantity: int
    location_code: str | None = None
    """None: anywhere in the network (chosen by ATP, then distance to ``near``)."""


@dataclass(frozen=True)
class ItemAvailability:
    sku: str
    positions: list[Position]
    atp: dict[str, int]
    total_atp: int
    supply: list[SupplyLine]


class InventoryService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        ids: Ids,
        transit: TransitModel | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._ids = ids
        self._transit = transit or DistanceTransitModel()
        self._locations: list[Location] | None = None
        self._locations_loaded = 0.0
        self._candidates_of: list[Location] | None = None
        self._candidate_cache: dict[DeliveryMethod, tuple[Candidates, GeoPoints]] = {}
        self._stock_listeners: list[StockListener] = []
        self._status_listeners: list[Callable[[str, str, str], object]] = []
        self._supply_listeners: list[StockListener] = []

    # -- listeners ----------------------------------------------------------------------------

    def on_stock_increase(self, listener: StockListener) -> None:
        """Call ``listener(skus)`` after a committed feed raised on hand of these SKUs
        (receipts, returns, upward corrections and counts): the seam for allocating backorders.
        A failing listener is logged; the feed stays applied."""
        self._stock_listeners.append(listener)

    def on_supply_delayed(self, listener: StockListener) -> None:
        """Call ``listener(skus)`` after committed supply of these SKUs moved to a later date or
        was cancelled: the seam for updating the promises of the lines waiting for it. A
        failing listener is logged; the supply stays recorded."""
        self._supply_listeners.append(listener)

    def on_location_status_change(self, listener: Callable[[str, str, str], object]) -> None:
        """Call ``listener(code, old_status, new_status)`` after a committed location update
        changed its status: the seam for re-planning orders when a location goes offline,
        dark or closed. A failing listener is logged; the update stays."""
        self._status_listeners.append(listener)

    def _increased(self, outcome: FeedOutcome) -> None:
        skus = sorted(
            outcome.raised | {c.sku for c in outcome.changes if c.after.on_hand > c.before.on_hand}
        )
        if not skus:
            return
        for listener in self._stock_listeners:
            try:
                listener(skus)
            except Exception:
                log.exception("a stock listener failed", extra={"skus": skus[:20]})

    # -- locations ----------------------------------------------------------------------------

    def _forget_locations(self) -> None:
        self._locations = None

    def network(self) -> list[Location]:
        """All locations, cached for a few seconds for availability reads (writes re-check)."""
        if self._locations is None or (
            monotonic.monotonic() - self._locations_loaded > LOCATION_CACHE_SECONDS
        ):
            with self._uow(read_only=True) as uow:
                self._locations = uow.locations.list()
            self._locations_loaded = monotonic.monotonic()
        return self._locations

    def create_location(self, record: Mapping[str, Any]) -> Location:
        location = location_from_record(record)
        with self._uow() as uow:
            uow.locations.add(location, at=self._clock.now())
            uow.commit()
        self._forget_locations()
        return location

    def update_location(self, code: str, changes: Mapping[str, Any]) -> Location:
        if "code" in changes and changes["code"] not in (None, code):
            raise Invalid(
                "a location's code cannot change",
                errors=[{"pointer": "#/code", "detail": "read-only"}],
            )
        with self._uow() as uow:
            current = uow.locations.require(code)
            location = location_from_record({**changes, "code": code}, current=current)
            uow.locations.update(location, at=self._clock.now())
            uow.commit()
        self._forget_locations()
        if location.status is not current.status:
            for listener in self._status_listeners:
                try:
                    listener(code, current.status.value, location.status.value)
                except Exception:
                    log.exception("a location status listener failed", extra={"location": code})
        return location

    def get_location(self, code: str) -> Location:
        with self._uow(read_only=True) as uow:
            return uow.locations.require(code)

    def list_locations(
        self,
        *,
        type: LocationType | None = None,
        status: LocationStatus | None = None,
        capability: Capability | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Location]:
        with self._uow(read_only=True) as uow:
            return uow.locations.list(
                type=type, status=status, capability=capability, after=after, limit=limit
            )

    def import_locations(
        self, records: Sequence[Mapping[str, Any]], *, progress: Progress | None = None
    ) -> ImportSummary:
        parsed, bad = parse_all(records, location_from_record)
        if not bad:
            _reject_duplicates(parsed, lambda loc: loc.code, "code", bad)
        if bad:
            raise _rejected("locations", len(records), bad)
        with self._uow() as uow:
            created, updated = uow.locations.upsert_many(parsed, at=self._clock.now())
            uow.commit()
        if progress:
            progress(len(records), len(records))
        self._forget_locations()
        return ImportSummary("locations", len(records), created=created, updated=updated)

    # -- items --------------------------------------------------------------------------------

    def create_item(self, record: Mapping[str, Any]) -> Item:
        item = item_from_record(record)
        with self._uow() as uow:
            uow.items.add(item, at=self._clock.now())
            uow.commit()
        return item

    def update_item(self, sku: str, changes: Mapping[str, Any]) -> Item:
        if "sku" in changes and changes["sku"] not in (None, sku):
            raise Invalid(
                "an item's SKU cannot change", errors=[{"pointer": "#/sku", "detail": "read-only"}]
            )
        with self._uow() as uow:
            item = item_from_record({**changes, "sku": sku}, current=uow.items.require(sku))
            uow.items.update(item, at=self._clock.now())
            uow.commit()
        return item

    def get_item(self, sku: str) -> Item:
        with self._uow(read_only=True) as uow:
            return uow.items.require(sku)

    def list_items(self, *, after: str | None = None, limit: int = 100) -> list[Item]:
        with self._uow(read_only=True) as uow:
            return uow.items.list(after=after, limit=limit)

    def import_items(
        self, records: Sequence[Mapping[str, Any]], *, progress: Progress | None = None
    ) -> ImportSummary:
        parsed, bad = parse_all(records, item_from_record)
        if not bad:
            _reject_duplicates(parsed, lambda item: item.sku, "sku", bad)
        if bad:
            raise _rejected("items", len(records), bad)
        with self._uow() as uow:
            created, updated = uow.items.upsert_many(parsed, at=self._clock.now())
            uow.commit()
        if progress:
            progress(len(records), len(records))
        return ImportSummary("items", len(records), created=created, updated=updated)

    # -- stock keeping --------------------------------------------------------------------------

    def item_availability(
        self,
        sku: str,
        *,
        location_codes: Sequence[str] | None = None,
        channel: str | None = None,
    ) -> ItemAvailability:
        now = self._clock.now()
        with self._uow(read_only=True) as uow:
            uow.items.require(sku)
            if location_codes:
                missing = set(location_codes) - set(uow.locations.get_many(location_codes))
                if missing:
                    raise LocationNotFound(f"no location {', '.join(sorted(missing))}")
            positions = uow.inventory.positions([sku], at=now, location_codes=location_codes)
            atp = uow.inventory.atp([sku], at=now, location_codes=location_codes, channel=channel)
            supply = uow.inventory.supply([sku], location_codes=location_codes)
        return ItemAvailability(
            sku=sku,
            positions=positions,
            atp=atp[sku],
            total_atp=sum(atp[sku].values()),
            supply=supply,
        )

    def set_blocked(self, sku: str, location_code: str, *, blocked: int, reason: str) -> Position:
        with self._uow() as uow:
            change = uow.inventory.set_blocked(
                sku, location_code, blocked=blocked, at=self._clock.now(), reason=reason
            )
            uow.commit()
        return change.after

    def set_safety_stock(self, sku: str, location_code: str, *, quantity: int | None) -> Position:
        with self._uow() as uow:
            change = uow.inventory.set_safety_stock(
                sku, location_code, quantity=quantity, at=self._clock.now()
            )
            uow.commit()
        return change.after

    def set_safety_stock_default(self, location_type: LocationType, quantity: int) -> int:
        with self._uow() as uow:
            updated = uow.inventory.set_safety_stock_default(
                location_type, quantity, at=self._clock.now()
            )
            uow.commit()
        return updated

    def safety_stock_defaults(self) -> Mapping[LocationType, int]:
        with self._uow(read_only=True) as uow:
            return uow.inventory.safety_stock_defaults()

    def set_channel_buffer(self, channel: str, *, percent: int, units: int) -> ChannelBuffer:
        buffer = ChannelBuffer(channel=channel.strip().lower(), percent=percent, units=units)
        if not buffer.channel:
            raise Invalid("a channel buffer needs a channel name")
        with self._uow() as uow:
            uow.inventory.set_channel_buffer(buffer)
            uow.commit()
        return buffer

    def add_supply(self, lines: Sequence[SupplyLine]) -> None:
        for line in lines:
            if line.quantity <= 0:
                raise Invalid(f"supply {line.reference} of {line.sku}: quantity must be > 0")
            if line.kind not in ("purchase_order", "transfer"):
                raise Invalid("supply kind is purchase_order or transfer")
            if line.status not in ("open", "in_transit", "received", "cancelled"):
                raise Invalid("supply status is open, in_transit, received or cancelled")
        with self._uow() as uow:
            skus = sorted({line.sku for line in lines})
            before = {
                (found.reference, found.sku, found.location_code): found
                for found in (uow.inventory.supply(skus) if skus else [])
            }
            uow.inventory.add_supply(lines, at=self._clock.now())
            uow.commit()
        delayed = sorted(
            {
                line.sku
                for line in lines
                if (old := before.get((line.reference, line.sku, line.location_code))) is not None
                and (line.status in ("cancelled",) or line.expected_on > old.expected_on)
            }
        )
        if delayed:
            for listener in self._supply_listeners:
                try:
                    listener(delayed)
                except Exception:
                    log.exception("a supply listener failed", extra={"skus": delayed})

    # -- feeds ----------------------------------------------------------------------------------

    def apply_snapshot(
        self,
        lines: Sequence[SnapshotLine],
        *,
        as_of: datetime,
        source: str,
        sequence: int | None = None,
    ) -> FeedOutcome:
        """An absolute count as of ``as_of`` (source time) or ``sequence``. Older than the last
        applied: ignored and reported in ``stale``. Movements after ``as_of`` (sales, shipments)
        are re-applied on top, so nothing is counted twice or lost."""
        if as_of.tzinfo is None:
            raise Invalid("as_of needs a time zone")
        if as_of > self._clock.now() + timedelta(minutes=5):
            raise Invalid(f"as_of {as_of.isoformat()} is in the future")
        _check_snapshot_lines(lines)
        with self._uow() as uow:
            outcome = uow.inventory.apply_snapshot(
                lines, as_of=as_of, sequence=sequence, source=source, at=self._clock.now()
            )
            uow.commit()
        self._increased(outcome)
        return outcome

    def apply_deltas(self, deltas: Sequence[DeltaLine]) -> FeedOutcome:
        """Receipts, sales, shrink, corrections; a replayed (source, message id) changes nothing
        and is reported in ``duplicates``."""
        seen: set[tuple[str, str]] = set()
        for delta in deltas:
            if (delta.source, delta.message_id) in seen:
                raise Invalid(f"message {delta.source}/{delta.message_id} appears twice")
            seen.add((delta.source, delta.message_id))
            if delta.occurred_at.tzinfo is None:
                raise Invalid("occurred_at needs a time zone")
        with self._uow() as uow:
            outcome = uow.inventory.apply_deltas(deltas, at=self._clock.now())
            uow.commit()
        self._increased(outcome)
        return outcome

    def import_stock(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        source: str,
        as_of: datetime | None = None,
        sequence: int | None = None,
        progress: Progress | None = None,
        chunk_size: int = 5000,
    ) -> ImportSummary:
        """A snapshot file: every row checked first; any bad row rejects the whole file (with
        every bad row and why); otherwise it is applied in one transaction."""
        now = self._clock.now()
        default_as_of = as_of or now
        parsed: list[tuple[datetime, SnapshotLine]] = []
        checked: list[tuple[int, str | None, str | None, FieldErrors]] = []
        seen: dict[tuple[str, str, datetime], int] = {}
        for number, record in enumerate(records, start=1):
            c = _Collector(record)
            sku = c.text("sku", required=True)
            code = c.text("location", default=c.text("location_code"))
            if code is None:
                c.errors.append({"pointer": "#/location", "detail": "required"})
            on_hand = c.integer("on_hand")
            if c.raw("on_hand") is None:
                c.errors.append({"pointer": "#/on_hand", "detail": "required"})
            blocked = c.integer("blocked")
            row_as_of = c.timestamp("as_of", default=default_as_of) or default_as_of
            if row_as_of > now + timedelta(minutes=5):
                c.errors.append({"pointer": "#/as_of", "detail": "in the future"})
            if sku is not None and code is not None:
                key = (sku, code, row_as_of)
                if key in seen:
                    c.errors.append({"pointer": "#", "detail": f"same position as row {seen[key]}"})
                seen.setdefault(key, number)
            checked.append((number, sku, code, c.errors))
            if not c.errors and sku is not None and code is not None and on_hand is not None:
                parsed.append((row_as_of, SnapshotLine(sku, code, on_hand, blocked)))
        with self._uow() as uow:
            known_skus = set(uow.items.get_many([sku for _, sku, _, _ in checked if sku]))
            known_codes = set(uow.locations.get_many([code for _, _, code, _ in checked if code]))
            bad: list[dict[str, Any]] = []
            for number, sku, code, errors in checked:
                if sku is not None and sku not in known_skus:
                    errors.append({"pointer": "#/sku", "detail": f"unknown SKU '{sku}'"})
                if code is not None and code not in known_codes:
                    errors.append({"pointer": "#/location", "detail": f"unknown location '{code}'"})
                if errors:
                    bad.append({"row": number, "errors": errors})
            if bad:
                raise _rejected("stock", len(records), bad)
            summary = self._apply_stock(uow, parsed, source, sequence, progress, chunk_size)
            uow.commit()
        self._increased(summary)
        return ImportSummary(
            "stock",
            len(records),
            applied=summary.applied,
            unchanged=summary.unchanged,
            stale=summary.stale,
        )

    def _apply_stock(
        self,
        uow: UnitOfWork,
        parsed: list[tuple[datetime, SnapshotLine]],
        source: str,
        sequence: int | None,
        progress: Progress | None,
        chunk_size: int,
    ) -> FeedOutcome:
        total = FeedOutcome()
        groups: dict[datetime, list[SnapshotLine]] = defaultdict(list)
        for row_as_of, line in parsed:
            groups[row_as_of].append(line)
        done = 0
        now = self._clock.now()
        if progress:
            progress(0, len(parsed))
        for row_as_of in sorted(groups):
            lines = groups[row_as_of]
            for start in range(0, len(lines), chunk_size):
                chunk = lines[start : start + chunk_size]
                outcome = uow.inventory.apply_snapshot(
                    chunk, as_of=row_as_of, sequence=sequence, source=source, at=now
                )
                total.applied += outcome.applied
                total.unchanged += outcome.unchanged
                total.stale.extend(outcome.stale)
                total.raised |= outcome.raised
                done += len(chunk)
                if progress:
                    progress(done, len(parsed))
        return total

    def import_file(
        self,
        path: Path,
        *,
        kind: str = "stock",
        source: str = "import",
        as_of: datetime | None = None,
        progress: Progress | None = None,
    ) -> ImportSummary:
        records = read_records(path)
        if kind == "stock":
            return self.import_stock(records, source=source, as_of=as_of, progress=progress)
        if kind == "locations":
            return self.import_locations(records, progress=progress)
        if kind == "items":
            return self.import_items(records, progress=progress)
        raise Invalid(f"unknown import kind '{kind}': stock, locations or items")

    # -- reservations -------------------------------------------------------------------------

    def reserve(
        self,
        lines: Sequence[ReservationRequestLine],
        *,
        reference: str,
        channel: str = "web",
        ttl: timedelta = DEFAULT_RESERVATION_TTL,
        near: tuple[float, float] | None = None,
    ) -> Reservation:
        """Hold stock for a while (a cart, click-and-reserve). Lines with a location hold there;
        lines without are placed in the network: fewest locations, nearest to ``near`` first.
        All or nothing: InsufficientStock says what is available."""
        if not lines:
            raise Invalid("a reservation needs at least one line")
        if not timedelta(seconds=1) <= ttl <= MAX_RESERVATION_TTL:
            raise Invalid(f"the time to live must be between 1 second and {MAX_RESERVATION_TTL}")
        for line in lines:
            if line.quantity <= 0:
                raise Invalid(f"quantity of {line.sku} must be positive")
        reservation_id = self._ids.new_id()
        line = lines[0]
        if len(lines) == 1 and line.location_code:
            # The common cart hold, one item at one store: one statement where the database
            # allows it (a hot item sees many at once), the general way below otherwise.
            now = self._clock.now()
            with self._uow(single_statement=True) as uow:
                held = uow.inventory.reserve_at_once(
                    StockLine(line.sku, line.location_code, line.quantity),
                    reservation_id=reservation_id,
                    reference=reference,
                    channel=channel,
                    expires_at=now + ttl,
                    at=now,
                )
                uow.commit()
            if held is not None:
                return held
        for attempt in range(NETWORK_RETRIES):
            now = self._clock.now()
            try:
                with self._uow() as uow:
                    placed = self._place(uow, lines, now=now, channel=channel, near=near)
                    reservation = uow.inventory.reserve(
                        placed,
                        reservation_id=reservation_id,
                        reference=reference,
                        channel=channel,
                        expires_at=now + ttl,
                        at=now,
                    )
                    uow.commit()
                return reservation
            except InsufficientStock:
                # A network line lost a race between planning and the conditional update:
                # plan again on fresh ATP. Lines pinned to a location fail at once.
                if attempt == NETWORK_RETRIES - 1 or all(line.location_code for line in lines):
                    raise
        raise AssertionError("unreachable")

    def _place(
        self,
        uow: UnitOfWork,
        lines: Sequence[ReservationRequestLine],
        *,
        now: datetime,
        channel: str,
        near: tuple[float, float] | None,
    ) -> list[StockLine]:
        placed = [
            StockLine(line.sku, line.location_code, line.quantity)
            for line in lines
            if line.location_code
        ]
        open_lines = [line for line in lines if not line.location_code]
        if not open_lines:
            return placed
        fulfilling = {
            loc.code: loc for loc in self.network() if loc.status.fulfills and loc.holds_stock
        }
        atp = uow.inventory.atp(
            sorted({line.sku for line in open_lines}),
            at=now,
            location_codes=sorted(fulfilling),
            channel=channel,
        )
        taken: dict[tuple[str, str], int] = defaultdict(int)
        for stock_line in placed:
            taken[(stock_line.sku, stock_line.location_code)] += stock_line.quantity
        for line in open_lines:
            options = []
            for code, units in atp[line.sku].items():
                left = units - taken[(line.sku, code)]
                if left <= 0:
                    continue
                location = fulfilling[code]
                distance = (
                    haversine_km(near[0], near[1], location.latitude, location.longitude)
                    if near
                    else 0.0
                )
                options.append((-(left >= line.quantity), distance, -left, code, left))
            options.sort()
            needed = line.quantity
            for _, _, _, code, left in options:
                use = min(left, needed)
                placed.append(StockLine(line.sku, code, use))
                taken[(line.sku, code)] += use
                needed -= use
                if needed == 0:
                    break
            if needed:
                raise InsufficientStock(
                    sku=line.sku,
                    location=None,
                    requested=line.quantity,
                    available=line.quantity - needed,
                )
        return placed

    def get_reservation(self, reservation_id: str) -> tuple[Reservation, str]:
        """The reservation and its status now (an unfreed expired hold reads ``expired``)."""
        with self._uow(read_only=True) as uow:
            found = uow.inventory.get_reservation(reservation_id)
        if found is None:
            raise ReservationNotFound(
                f"no reservation '{reservation_id}'", reservation_id=reservation_id
            )
        return found, found.effective_status(self._clock.now()).value

    def confirm_reservation(self, reservation_id: str) -> list[StockLine]:
        with self._uow() as uow:
            lines = uow.inventory.confirm_reservation(reservation_id, at=self._clock.now())
            uow.commit()
        return lines

    def release_reservation(self, reservation_id: str) -> Reservation:
        with self._uow() as uow:
            reservation = uow.inventory.release_reservation(reservation_id, at=self._clock.now())
            uow.commit()
        return reservation

    def release_expired_reservations(self, *, batch_size: int = 500) -> int:
        """For the worker's periodic job: free every hold past its expiry, in batches of one
        transaction each; returns how many reservations were freed. Safe to run concurrently
        with everything else (and with itself)."""
        freed = 0
        while True:
            with self._uow() as uow:
                count = uow.inventory.release_expired(at=self._clock.now(), limit=batch_size)
                uow.commit()
            freed += count
            if count < batch_size:
                return freed

    # -- allocation (standalone use; orders call the repository inside their own unit of work) --

    def allocate(
        self, lines: Sequence[StockLine], *, channel: str | None = None
    ) -> list[PositionChange]:
        with self._uow() as uow:
            changes = uow.inventory.allocate(lines, at=self._clock.now(), channel=channel)
            uow.commit()
        return changes

    def deallocate(self, lines: Sequence[StockLine]) -> list[PositionChange]:
        with self._uow() as uow:
            changes = uow.inventory.deallocate(lines, at=self._clock.now())
            uow.commit()
        return changes

    def consume(self, lines: Sequence[StockLine], *, reference: str) -> list[PositionChange]:
        with self._uow() as uow:
            changes = uow.inventory.consume(lines, at=self._clock.now(), reference=reference)
            uow.commit()
        return changes

    # -- availability ---------------------------------------------------------------------------

    def _candidates(self, method: DeliveryMethod) -> tuple[Candidates, GeoPoints]:
        """The locations that may serve ``method`` (status, capabilities, type), with their
        points prepared for distances: derived once per load of the network, not per call."""
        network = self.network()
        if self._candidates_of is not network:
            self._candidates_of = network
            self._candidate_cache = {}
        cached = self._candidate_cache.get(method)
        if cached is None:
            chosen = tuple(location for location in network if _may_serve(location, method))
            cached = (
                Candidates(chosen),
                geo_points((loc.latitude, loc.longitude) for loc in chosen),
            )
            self._candidate_cache[method] = cached
        return cached

    def _eligible(
        self,
        method: DeliveryMethod,
        *,
        destination: tuple[float, float] | None,
        radius_km: float | None,
    ) -> dict[str, tuple[Location, float | None]]:
        candidates, points = self._candidates(method)
        if destination is None:
            return {location.code: (location, None) for location in candidates.locations}
        distances = distances_km(destination[0], destination[1], points)
        return {
            location.code: (location, distance)
            for location, distance in zip(candidates.locations, distances, strict=True)
            if radius_km is None or distance <= radius_km
        }

    def basket_availability(
        self,
        lines: Sequence[BasketLine],
        *,
        method: DeliveryMethod,
        destination: tuple[float, float] | None = None,
        radius_km: float | None = None,
        channel: str | None = None,
        max_sources: int = 10,
    ) -> BasketAvailability:
        """Which locations can serve which lines, with quantities and promise dates."""
        if not lines:
            raise Invalid("a basket needs at least one line")
        if method.is_collection and destination is None:
            raise Invalid(f"{method.value} needs a destination (the customer's position)")
        now = self._clock.now()
        skus = sorted({line.sku for line in lines})
        # One slot per candidate location in every array: distances, what may serve, units.
        candidates, points = self._candidates(method)
        slots = len(candidates.codes)
        if destination is None:
            distances = None
            nearest = np.zeros(slots, dtype=np.float64)
            usable = np.ones(slots, dtype=np.bool_)
        else:
            distances = nearest = distance_array_km(destination[0], destination[1], points)
            usable = (
                nearest <= radius_km if radius_km is not None else np.ones(slots, dtype=np.bool_)
            )
        with self._uow(read_only=True) as uow:
            stock = uow.inventory.basket_stock(
                skus, at=now, codes=candidates.codes, channel=channel
            )
            known, atp = stock.items, stock.atp
            missing = sorted(set(skus) - set(known))
            if missing:
                raise ItemNotFound(f"no item {', '.join(missing)}", skus=missing)
            capped = [slot for slot in candidates.capped if usable[slot]]
            if capped:
                codes = [candidates.codes[slot] for slot in capped]
                used = uow.locations.capacity_used(codes, on=now.date())
                for slot, code in zip(capped, codes, strict=True):
                    if used[code] >= (candidates.locations[slot].daily_capacity or 0):
                        usable[slot] = False
        promises: dict[int, Promise] = {}

        def source(slot: int, units: int) -> LineSource:
            if slot not in promises:
                promises[slot] = earliest_promise(
                    candidates.locations[slot],
                    now=now,
                    method=method,
                    transit=self._transit,
                    distance_km=None if distances is None else float(distances[slot]),
                )
            return LineSource(
                location_code=candidates.codes[slot],
                atp=units,
                distance_km=None if distances is None else float(distances[slot]),
                promise=promises[slot],
            )

        results: list[LineAvailability] = []
        # Per line, the slots that may serve it: none when the item refuses the method, no
        # store when the item may not ship from one.
        serving_by_line: list[BoolArray] = []
        for line in lines:
            item = known[line.sku]
            reason = _item_refuses(item, method)
            available = 0
            sources: list[LineSource] = []
            serving = np.zeros_like(usable)
            if not reason:
                serving = usable
                if method is DeliveryMethod.SHIP and not item.ship_from_store_allowed:
                    serving = usable & ~candidates.is_store
                units = atp[line.sku]
                available, best = rank_sources(
                    units,
                    usable=serving,
                    distances=nearest,
                    code_rank=candidates.code_rank,
                    quantity=line.quantity,
                    limit=max_sources,
                )
                sources = [source(slot, int(units[slot])) for slot in best.tolist()]
            serving_by_line.append(serving)
            results.append(
                LineAvailability(
                    sku=line.sku,
                    quantity=line.quantity,
                    available=available,
                    fulfillable=available >= line.quantity,
                    sources=sources,
                    reason=reason or (None if available >= line.quantity else "not enough stock"),
                )
            )
        singles = whole_basket_slots(
            [atp[line.sku] for line in lines],
            [line.quantity for line in lines],
            serving=serving_by_line,
            distances=nearest,
            code_rank=candidates.code_rank,
            limit=max_sources,
        )
        fulfillable = all(line.fulfillable for line in results)
        # Per line: the earliest date one location can bring it all (or, split, the latest of
        # the sources listed); the basket: the latest of its lines.
        dates = []
        for result in results if fulfillable else []:
            whole_line = [s.promise.deliver_on for s in result.sources if s.atp >= result.quantity]
            dates.append(
                min(whole_line) if whole_line else max(s.promise.deliver_on for s in result.sources)
            )
        return BasketAvailability(
            method=method,
            lines=results,
            fulfillable=fulfillable,
            single_locations=[candidates.codes[slot] for slot in singles.tolist()],
            earliest_promise=max(dates) if dates else None,
        )

    def stores_near(
        self,
        *,
        latitude: float,
        longitude: float,
        radius_km: float,
        skus: Sequence[BasketLine] = (),
        method: DeliveryMethod = DeliveryMethod.PICKUP,
        channel: str | None = None,
        limit: int = 20,
    ) -> list[NearbyStore]:
        """Stores within ``radius_km`` that can serve pickup (or curbside), nearest first."""
        if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
            raise Invalid("latitude is -90..90 and longitude -180..180")
        if not 0 < radius_km <= 1000:
            raise Invalid("the radius is between 0 and 1000 km")
        if not method.is_collection:
            raise Invalid("near-me search is for pickup, curbside or reserve_and_collect")
        eligible = self._eligible(method, destination=(latitude, longitude), radius_km=radius_km)
        now = self._clock.now()
        atp: dict[str, dict[str, int]] = {}
        if skus:
            with self._uow(read_only=True) as uow:
                known = uow.items.get_many([line.sku for line in skus])
                missing = sorted({line.sku for line in skus} - set(known))
                if missing:
                    raise ItemNotFound(f"no item {', '.join(missing)}", skus=missing)
                atp = uow.inventory.atp(
                    [line.sku for line in skus],
                    at=now,
                    location_codes=sorted(eligible),
                    channel=channel,
                )
                for line in skus:
                    if not known[line.sku].pickup_allowed:
                        atp[line.sku] = {}
        stores = []
        for code, (location, distance) in eligible.items():
            units = {line.sku: atp.get(line.sku, {}).get(code, 0) for line in skus}
            has_all = all(units[line.sku] >= line.quantity for line in skus)
            stores.append(
                NearbyStore(
                    location=location,
                    distance_km=round(distance or 0.0, 3),
                    atp=units,
                    has_all=has_all,
                    promise=earliest_promise(
                        location,
                        now=now,
                        method=method,
                        transit=self._transit,
                        distance_km=distance,
                    ),
                )
            )
        stores.sort(key=lambda s: (not s.has_all, s.distance_km, s.location.code))
        return stores[:limit]

    def promise(
        self, location_code: str, *, method: DeliveryMethod, destination: tuple[float, float] | None
    ) -> Promise:
        with self._uow(read_only=True) as uow:
            location = uow.locations.require(location_code)
        distance = (
            haversine_km(destination[0], destination[1], location.latitude, location.longitude)
            if destination
            else None
        )
        return earliest_promise(
            location,
            now=self._clock.now(),
            method=method,
            transit=self._transit,
            distance_km=distance,
        )


def _may_serve(location: Location, method: DeliveryMethod) -> bool:
    """Whether a location may serve a delivery method at all (before stock and distance)."""
    if not location.holds_stock or not location.status.fulfills:
        return False
    if method.is_collection:
        needed = Capability.CURBSIDE if method is DeliveryMethod.CURBSIDE else Capability.PICKUP
        return location.status.serves_customers and location.can(needed)
    if method is DeliveryMethod.DROPSHIP:
        return location.type is LocationType.VENDOR
    if method is DeliveryMethod.SHIP_TO_STORE:
        return location.type in (LocationType.DC, LocationType.THIRD_PARTY_LOGISTICS)
    return location.can(Capability.SHIP) and location.type is not LocationType.VENDOR


def _item_refuses(item: Item, method: DeliveryMethod) -> str | None:
    if method.is_collection and not item.pickup_allowed:
        return f"{item.sku} cannot be picked up"
    return None


def _check_snapshot_lines(lines: Sequence[SnapshotLine]) -> None:
    # The common case, a valid count, in a few passes at C speed; the loop below says what
    # is wrong (with every bad line's pointer) only when something is.
    if (
        len({(line.sku, line.location_code) for line in lines}) == len(lines)
        and min((line.on_hand for line in lines), default=0) >= 0
        and min((line.blocked or 0 for line in lines), default=0) >= 0
    ):
        return
    errors = []
    seen: set[tuple[str, str]] = set()
    for index, line in enumerate(lines):
        if line.on_hand < 0:
            errors.append({"pointer": f"#/lines/{index}/on_hand", "detail": "must be >= 0"})
        if line.blocked is not None and line.blocked < 0:
            errors.append({"pointer": f"#/lines/{index}/blocked", "detail": "must be >= 0"})
        if (line.sku, line.location_code) in seen:
            errors.append({"pointer": f"#/lines/{index}", "detail": "position given twice"})
        seen.add((line.sku, line.location_code))
    if errors:
        raise Invalid("the snapshot is not valid", errors=errors)


def _reject_duplicates(
    parsed: Sequence[Any], key: Callable[[Any], str], name: str, bad: list[dict[str, Any]]
) -> None:
    first: dict[str, int] = {}
    for number, value in enumerate(parsed, start=1):
        k = key(value)
        if k in first:
            bad.append(
                {
                    "row": number,
                    "errors": [
                        {"pointer": f"#/{name}", "detail": f"same {name} as row {first[k]}"}
                    ],
                }
            )
        first.setdefault(k, number)


def _rejected(kind: str, rows: int, bad: list[dict[str, Any]]) -> ImportRejected:
    return ImportRejected(
        f"{len(bad)} of {rows} {kind} rows are not valid; nothing was imported",
        rows=bad,
    )


__all__ = [
    "BasketAvailability",
    "BasketLine",
    "DeltaKind",
    "ImportRejected",
    "ImportSummary",
    "InventoryService",
    "ReservationRequestLine",
]
