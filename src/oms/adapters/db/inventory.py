"""SQL repositories for locations, items and stock (see :mod:`oms.services.ports`).

How stock stays honest on SQLite and PostgreSQL alike:

* Allocations, reservations, releases and consumption are single conditional ``UPDATE``s whose
  ``WHERE`` checks the available quantity; the database decides, never a read in Python.
* A transaction that touches several positions touches them in (item id, location id) order, and
  for each position its reservation lines before the position row, so none can deadlock.
* ``reserved`` on a position is the sum of its *active* holds, including holds that expired but
  were not freed yet. Readers subtract those with the clock; a writer that finds too little
  stock first frees the expired holds of that position (under the row lock), then retries.
* Feeds (snapshots, deltas) lock the positions they set (``SELECT ... FOR UPDATE`` on
  PostgreSQL; SQLite writers hold the database lock from ``BEGIN IMMEDIATE``), because an
  absolute count has to be combined with the movements recorded after its source time.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Insert,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from oms.adapters.db.bulk import array_rows, keys_in
from oms.adapters.db.engine import READ_ONLY
from oms.adapters.db.reference import LOCATIONS, PerEngine, ReferenceView
from oms.adapters.db.tables import (
    channel_buffers,
    feed_messages,
    inventory_movements,
    inventory_positions,
    items,
    location_capacity_usage,
    locations,
    reservation_lines,
    reservations,
    safety_stock_defaults,
    supply_lines,
)
from oms.domain.errors import Invalid
from oms.domain.inventory import (
    DEFAULT_SAFETY_STOCK,
    NO_BUFFER,
    ChannelBuffer,
    InsufficientStock,
    NotAllocated,
    Position,
    PositionChange,
    Reservation,
    ReservationLine,
    ReservationNotActive,
    ReservationNotFound,
    ReservationStatus,
    StockLine,
    SupplyLine,
    UnknownStock,
    change_events,
    delta_change,
    snapshot_events,
)
from oms.domain.items import DEFAULT_LOW_STOCK_THRESHOLD, Item, ItemExists, ItemNotFound
from oms.domain.locations import (
    Capability,
    CapacityExhausted,
    CapacityUnit,
    Location,
    LocationExists,
    LocationNotFound,
    LocationStatus,
    LocationType,
    LocationUnavailable,
    opening_hours_json,
    parse_clock_time,
    parse_opening_hours,
)
from oms.domain.promising import IntArray
from oms.services.ports import BasketStock, DeltaLine, FeedOutcome, SnapshotLine

Record = Callable[..., None]
T = TypeVar("T")
CHUNK = 500

P = inventory_positions.c


def insert_ignoring_conflicts(connection: Connection, table: Any) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the connection's dialect."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def _chunks(values: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# --- locations --------------------------------------------------------------------------------


def _location_values(location: Location) -> dict[str, Any]:
    return {
        "code": location.code,
        "name": location.name,
        "type": location.type.value,
        "status": location.status.value,
        "capabilities": sorted(c.value for c in location.capabilities),
        "address": dict(location.address),
        "latitude": location.latitude,
        "longitude": location.longitude,
        "timezone": location.timezone,
        "daily_capacity": location.daily_capacity,
        "capacity_unit": location.capacity_unit.value,
        "handling_cost": location.handling_cost,
        "currency": location.currency,
        "pick_minutes": location.pick_minutes,
        "cutoff_time": f"{location.cutoff_time:%H:%M}" if location.cutoff_time else None,
        "opening_hours": opening_hours_json(location.opening_hours),
    }


def location_of(row: Any) -> Location:
    cutoff: time | None = (
        parse_clock_time(row["cutoff_time"], pointer="#/cutoff_time")
        if row["cutoff_time"]
        else None
    )
    return Location(
        code=row["code"],
        name=row["name"],
        type=LocationType(row["type"]),
        status=LocationStatus(row["status"]),
        capabilities=frozenset(Capability(c) for c in row["capabilities"]),
        address=dict(row["address"] or {}),
        latitude=float(row["latitude"]),
        longitude=float(row["longitude"]),
        timezone=row["timezone"],
        daily_capacity=row["daily_capacity"],
        capacity_unit=CapacityUnit(row["capacity_unit"]),
        handling_cost=Decimal(row["handling_cost"]),
        currency=row["currency"],
        pick_minutes=row["pick_minutes"],
        cutoff_time=cutoff,
        opening_hours=parse_opening_hours(row["opening_hours"]),
    )


_LOCATIONS_BY_CODE = select(locations).order_by(locations.c.code)
"""Built once: every capture reads the network."""


class SqlLocationRepository:
    def __init__(self, connection: Connection, *, reference: ReferenceView | None = None) -> None:
        self._connection = connection
        self._reference = reference

    def _wrote(self) -> None:
        if self._reference is not None:
            self._reference.wrote()

    def add(self, location: Location, *, at: datetime) -> None:
        self._wrote()
        try:
            with self._connection.begin_nested():
                self._connection.execute(
                    insert(locations).values(
                        **_location_values(location), created_at=at, updated_at=at
                    )
                )
        except IntegrityError:
            raise LocationExists(f"a location '{location.code}' exists already") from None

    def update(self, location: Location, *, at: datetime) -> None:
        self._wrote()
        result = self._connection.execute(
            update(locations)
            .where(locations.c.code == location.code)
            .values(
                **_location_values(location),
                updated_at=at,
                revision=locations.c.revision + 1,
            )
        )
        if result.rowcount == 0:
            raise LocationNotFound(f"no location '{location.code}'", location=location.code)

    def upsert_many(self, batch: Sequence[Location], *, at: datetime) -> tuple[int, int]:
        existing = set(self.get_many([loc.code for loc in batch]))
        new = [loc for loc in batch if loc.code not in existing]
        old = [loc for loc in batch if loc.code in existing]
        self._wrote()
        if new:
            self._connection.execute(
                insert(locations),
                [{**_location_values(loc), "created_at": at, "updated_at": at} for loc in new],
            )
        for loc in old:
            self.update(loc, at=at)
        return len(new), len(old)

    def get(self, code: str) -> Location | None:
        row = self._connection.execute(select(locations).where(locations.c.code == code)).first()
        return location_of(row._mapping) if row else None

    def require(self, code: str) -> Location:
        location = self.get(code)
        if location is None:
            raise LocationNotFound(f"no location '{code}'", location=code)
        return location

    def get_many(self, codes: Sequence[str]) -> dict[str, Location]:
        found: dict[str, Location] = {}
        for chunk in _chunks(sorted(set(codes))):
            for row in self._connection.execute(
                select(locations).where(locations.c.code.in_(chunk))
            ):
                found[row.code] = location_of(row._mapping)
        return found

    def list(
        self,
        *,
        type: LocationType | None = None,
        status: LocationStatus | None = None,
        capability: Capability | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Location]:
        if (type, status, capability, after, limit) == (None, None, None, None, None) and (
            self._reference is not None
        ):
            # the whole network, read by every capture: cached behind the reference signature
            return list(self._reference.read("locations", LOCATIONS, self._all))
        query = _LOCATIONS_BY_CODE
        if type is not None:
            query = query.where(locations.c.type == type.value)
        if status is not None:
            query = query.where(locations.c.status == status.value)
        if after is not None:
            query = query.where(locations.c.code > after)
        found = [location_of(row._mapping) for row in self._connection.execute(query)]
        if capability is not None:
            found = [loc for loc in found if loc.can(capability)]
        return found[:limit] if limit is not None else found

    def _all(self) -> tuple[Location, ...]:
        return tuple(
            location_of(row._mapping) for row in self._connection.execute(_LOCATIONS_BY_CODE)
        )

    def _location_id(self, code: str) -> tuple[int, int | None]:
        row = self._connection.execute(
            select(locations.c.id, locations.c.daily_capacity).where(locations.c.code == code)
        ).first()
        if row is None:
            raise LocationNotFound(f"no location '{code}'", location=code)
        return int(row.id), row.daily_capacity

    def consume_capacity(self, code: str, *, on: date, amount: int = 1) -> int:
        location_id, capacity = self._location_id(code)
        self._connection.execute(
            insert_ignoring_conflicts(self._connection, location_capacity_usage).values(
                location_id=location_id, on_date=on, used=0
            )
        )
        usage = location_capacity_usage.c
        condition = [usage.location_id == location_id, usage.on_date == on]
        if capacity is not None:
            condition.append(usage.used + amount <= capacity)
        row = self._connection.execute(
            update(location_capacity_usage)
            .where(*condition)
            .values(used=usage.used + amount)
            .returning(usage.used)
        ).first()
        if row is None:
            used = self.capacity_used([code], on=on)[code]
            raise CapacityExhausted(
                f"{code} has {max(0, (capacity or 0) - used)} of {capacity} left on {on}",
                location=code,
                on=on.isoformat(),
                remaining=max(0, (capacity or 0) - used),
            )
        return -1 if capacity is None else capacity - int(row.used)

    def release_capacity(self, code: str, *, on: date, amount: int = 1) -> None:
        location_id, _ = self._location_id(code)
        usage = location_capacity_usage.c
        self._connection.execute(
            update(location_capacity_usage)
            .where(usage.location_id == location_id, usage.on_date == on)
            .values(used=func.max(usage.used - amount, 0))
            if self._connection.dialect.name == "sqlite"
            else update(location_capacity_usage)
            .where(usage.location_id == location_id, usage.on_date == on)
            .values(used=func.greatest(usage.used - amount, 0))
        )

    def use_capacity(self, amounts: Mapping[str, int], *, on: date) -> None:
        usage = location_capacity_usage.c
        wanted = {code: amount for code, amount in amounts.items() if amount}
        if not wanted:
            return
        ids = {
            row.code: int(row.id)
            for row in self._connection.execute(
                select(locations.c.id, locations.c.code).where(locations.c.code.in_(list(wanted)))
            )
        }
        rows = [
            {"location_id": ids[code], "on_date": on, "used": 0} for code in wanted if code in ids
        ]
        if not rows:
            return
        self._connection.execute(
            insert_ignoring_conflicts(self._connection, location_capacity_usage), rows
        )
        floor = func.max if self._connection.dialect.name == "sqlite" else func.greatest
        self._connection.execute(
            update(location_capacity_usage)
            .where(usage.location_id == bindparam("k_location"), usage.on_date == bindparam("k_on"))
            .values(used=floor(usage.used + bindparam("k_amount", type_=Integer), 0)),
            [
                {"k_location": ids[code], "k_on": on, "k_amount": amount}
                for code, amount in wanted.items()
                if code in ids
            ],
        )

    def capacity_used(self, codes: Sequence[str], *, on: date) -> dict[str, int]:
        usage = location_capacity_usage.c
        rows = self._connection.execute(
            select(locations.c.code, usage.used)
            .join(location_capacity_usage, usage.location_id == locations.c.id)
            .where(locations.c.code.in_(list(codes)), usage.on_date == on)
        )
        used = {code: 0 for code in codes}
        used.update({row.code: int(row.used) for row in rows})
        return used


# --- items ------------------------------------------------------------------------------------


def _item_values(item: Item) -> dict[str, Any]:
    return {
        "sku": item.sku,
        "gtin": item.gtin,
        "name": item.name,
        "weight_grams": item.weight_grams,
        "length_mm": item.length_mm,
        "width_mm": item.width_mm,
        "height_mm": item.height_mm,
        "ship_alone": item.ship_alone,
        "hazmat": item.hazmat,
        "pickup_allowed": item.pickup_allowed,
        "ship_from_store_allowed": item.ship_from_store_allowed,
        "low_stock_threshold": item.low_stock_threshold,
    }


def item_of(row: Any) -> Item:
    return Item(
        sku=row["sku"],
        gtin=row["gtin"],
        name=row["name"],
        weight_grams=row["weight_grams"],
        length_mm=row["length_mm"],
        width_mm=row["width_mm"],
        height_mm=row["height_mm"],
        ship_alone=bool(row["ship_alone"]),
        hazmat=bool(row["hazmat"]),
        pickup_allowed=bool(row["pickup_allowed"]),
        ship_from_store_allowed=bool(row["ship_from_store_allowed"]),
        low_stock_threshold=row["low_stock_threshold"],
    )


_ITEMS_BY_SKU = {
    postgres: select(items).where(keys_in(items.c.sku, "k_skus", postgres=postgres))
    for postgres in (False, True)
}
"""Built once, per database kind (True: PostgreSQL): every capture reads its items."""


class SqlItemRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, item: Item, *, at: datetime) -> None:
        try:
            with self._connection.begin_nested():
                self._connection.execute(
                    insert(items).values(**_item_values(item), created_at=at, updated_at=at)
                )
        except IntegrityError:
            raise ItemExists(
                f"an item with SKU '{item.sku}' or GTIN '{item.gtin}' exists already", sku=item.sku
            ) from None

    def update(self, item: Item, *, at: datetime) -> None:
        try:
            with self._connection.begin_nested():
                result = self._connection.execute(
                    update(items)
                    .where(items.c.sku == item.sku)
                    .values(**_item_values(item), updated_at=at)
                )
        except IntegrityError:
            raise ItemExists(f"another item has GTIN '{item.gtin}'", gtin=item.gtin) from None
        if result.rowcount == 0:
            raise ItemNotFound(f"no item '{item.sku}'", sku=item.sku)

    def upsert_many(self, batch: Sequence[Item], *, at: datetime) -> tuple[int, int]:
        existing = set(self.get_many([item.sku for item in batch]))
        new = [item for item in batch if item.sku not in existing]
        old = [item for item in batch if item.sku in existing]
        try:
            with self._connection.begin_nested():
                for chunk in _chunks(new, 5000):
                    self._connection.execute(
                        insert(items),
                        [{**_item_values(i), "created_at": at, "updated_at": at} for i in chunk],
                    )
        except IntegrityError as error:
            raise ItemExists(f"a GTIN is used by another item: {error.orig}") from None
        for item in old:
            self.update(item, at=at)
        return len(new), len(old)

    def get(self, sku: str) -> Item | None:
        row = self._connection.execute(select(items).where(items.c.sku == sku)).first()
        return item_of(row._mapping) if row else None

    def require(self, sku: str) -> Item:
        item = self.get(sku)
        if item is None:
            raise ItemNotFound(f"no item '{sku}'", sku=sku)
        return item

    def get_many(self, skus: Sequence[str]) -> dict[str, Item]:
        found: dict[str, Item] = {}
        for chunk in _chunks(sorted(set(skus))):
            statement = _ITEMS_BY_SKU[self._connection.dialect.name == "postgresql"]
            for row in self._connection.execute(statement, {"k_skus": list(chunk)}):
                found[row.sku] = item_of(row._mapping)
        return found

    def list(self, *, after: str | None = None, limit: int | None = None) -> list[Item]:
        query = select(items).order_by(items.c.sku)
        if after is not None:
            query = query.where(items.c.sku > after)
        if limit is not None:
            query = query.limit(limit)
        return [item_of(row._mapping) for row in self._connection.execute(query)]


# --- stock ------------------------------------------------------------------------------------

_AVAILABLE = P.on_hand - P.allocated - P.reserved - P.blocked - P.safety_stock
_RETURNED = (P.on_hand, P.allocated, P.reserved, P.blocked, P.safety_stock)
_LOCKED = (
    P.item_id,
    P.location_id,
    *_RETURNED,
    P.snapshot_as_of,
    P.snapshot_sequence,
    P.last_movement_at,
)
# PostgreSQL locks many positions by joining their keys passed as arrays (bulk.array_rows).
_LOCKED_KEYS = array_rows("k", item_id=Integer, location_id=Integer)
_LOCK_BY_KEYS = (
    select(*_LOCKED)
    .join_from(
        inventory_positions,
        _LOCKED_KEYS,
        and_(P.item_id == _LOCKED_KEYS.c.item_id, P.location_id == _LOCKED_KEYS.c.location_id),
    )
    .order_by(P.item_id, P.location_id)
    .with_for_update(of=inventory_positions)
)


# The statements of the capture path, built once: building SQLAlchemy expressions on every call
# costs more client CPU than the database spends running them. Values go in as bound parameters.
_TAKE_WHERE = and_(P.item_id == bindparam("k_item"), P.location_id == bindparam("k_location"))
_TAKE_VALUES = {"updated_at": bindparam("k_at", type_=P.updated_at.type)}
_TAKE_QUANTITY = bindparam("k_quantity", type_=P.allocated.type)
_TAKE: dict[tuple[str, bool], Any] = {
    (column, buffered): update(inventory_positions)
    .where(
        _TAKE_WHERE,
        (
            _AVAILABLE * (100 - bindparam("k_percent", type_=P.allocated.type))
            >= (_TAKE_QUANTITY + bindparam("k_units", type_=P.allocated.type)) * 100
        )
        if buffered
        else _TAKE_QUANTITY <= _AVAILABLE,
    )
    .values({column: getattr(P, column) + _TAKE_QUANTITY, **_TAKE_VALUES})
    .returning(*_RETURNED)
    for column in ("allocated", "reserved")
    for buffered in (False, True)
}
_ADD_ALLOCATED = (
    update(inventory_positions)
    .where(_TAKE_WHERE)
    .values({"allocated": P.allocated + _TAKE_QUANTITY, **_TAKE_VALUES})
)
"""Bulk change of the allocated units of positions locked and checked just before (SQLite:
executemany)."""
_CHANGES = array_rows("c", item_id=Integer, location_id=Integer, quantity=Integer)
_ADD_ALLOCATED_BY_KEYS = (
    update(inventory_positions)
    .where(P.item_id == _CHANGES.c.item_id, P.location_id == _CHANGES.c.location_id)
    .values({"allocated": P.allocated + _CHANGES.c.quantity, **_TAKE_VALUES})
)
"""The same on PostgreSQL: one statement over the changes passed as arrays."""
BULK_POSITIONS = 50
"""An allocation of at least this many positions is checked and written in bulk."""
BULK_POSITIONS_POSTGRES = 3
"""The same on PostgreSQL, where the bulk path is two statements whatever the number of
positions (lock and read them in order, one UPDATE over arrays): from three positions on (a
3-line order's capture) that is fewer round trips than one conditional UPDATE each."""
# Units that arrived for a known order (a ship-to-store transfer) are the customer's already:
# the safety-stock buffer protects walk-in stock, not goods that were bought and sent here.
_TAKE_EARMARKED = (
    update(inventory_positions)
    .where(
        _TAKE_WHERE,
        P.on_hand - P.allocated - P.reserved - P.blocked >= _TAKE_QUANTITY,
    )
    .values({"allocated": P.allocated + _TAKE_QUANTITY, **_TAKE_VALUES})
    .returning(*_RETURNED)
)
_ATP_SELECT = select(
    items.c.sku,
    locations.c.code,
    _AVAILABLE,
    P.reserved,
    P.item_id,
    P.location_id,
    items.c.low_stock_threshold,
    locations.c.status,
).select_from(
    inventory_positions.join(items, items.c.id == P.item_id).join(
        locations, locations.c.id == P.location_id
    )
)


def _atp_statements(*, postgres: bool) -> dict[bool, Any]:
    query = _ATP_SELECT.where(
        keys_in(items.c.sku, "k_skus", postgres=postgres), or_(_AVAILABLE > 0, P.reserved > 0)
    )
    return {
        False: query,
        True: query.where(keys_in(locations.c.code, "k_codes", postgres=postgres)),
    }


_ATP = {postgres: _atp_statements(postgres=postgres) for postgres in (False, True)}
"""Per database kind (True: PostgreSQL), then whether the read is limited to location codes."""
_PACKED_ROW = "\x1f"
_PACKED_FIELD = "\x1e"
_ATP_PACKED_QUERY = (
    select(
        items.c.sku,
        items.c.id,
        func.count(),
        func.sum(case((P.reserved > 0, 1), else_=0)),
        func.aggregate_strings(
            locations.c.code.concat(_PACKED_FIELD).concat(cast(_AVAILABLE, String)),
            _PACKED_ROW,
        ),
    )
    .select_from(
        inventory_positions.join(items, items.c.id == P.item_id).join(
            locations, locations.c.id == P.location_id
        )
    )
    .where(
        items.c.sku.in_(bindparam("k_skus", expanding=True)), or_(_AVAILABLE > 0, P.reserved > 0)
    )
    .group_by(items.c.id, items.c.sku)
)
_ATP_PACKED = {
    False: _ATP_PACKED_QUERY,
    True: _ATP_PACKED_QUERY.where(locations.c.code.in_(bindparam("k_codes", expanding=True))),
}
"""The same figures, one row per SKU: ``code<RS>atp`` of its positions joined by ``<US>``."""
_ATP_SQL_RAW = "(p.on_hand - p.allocated - p.reserved - p.blocked - p.safety_stock)"
_BASKET_STOCK_POSTGRES = f"""
SELECT {", ".join(f"i.{column.name}" for column in items.c)}, s.holding, s.packed
FROM items AS i
LEFT JOIN LATERAL (
  SELECT bool_or(p.reserved > 0) AS holding,
    string_agg(int8send(p.location_id) || int4send({_ATP_SQL_RAW}), ''::bytea) AS packed
  FROM inventory_positions AS p
  WHERE p.item_id = i.id AND ({_ATP_SQL_RAW} > 0 OR p.reserved > 0)
) AS s ON true
WHERE i.sku = ANY(%(skus)s)
"""  # noqa: S608 (built from constants; every value is a bound parameter)
""":meth:`SqlInventoryRepository.basket_stock` on PostgreSQL, one round trip: each item's row
with its positions as binary (location id, ATP) pairs that numpy reads as they come, without a
join to the locations (their ids map to slots in Python) nor a Python object per position."""
_SLOT_PAIR = np.dtype([("location_id", ">i8"), ("atp", ">i4")])


class _LocationSlots:
    """Location ids -> slots of a list of location codes, for one engine. A location's code
    never changes and its row is never deleted, so an id read once keeps its code: only a code
    not seen yet makes it read the ids again."""

    _MAX_LISTS = 32

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, int] = {}
        self._lookups: dict[tuple[str, ...], IntArray] = {}

    def lookup(self, connection: Connection, codes: tuple[str, ...]) -> IntArray:
        """An array indexed by location id: the slot of that location in ``codes``, or -1."""
        found = self._lookups.get(codes)
        if found is not None:
            return found
        ids = self._ids
        if any(code not in ids for code in codes):
            read = connection.execute(select(locations.c.code, locations.c.id))
            ids = {str(code): int(location_id) for code, location_id in read}
        lookup = np.full(max(ids.values(), default=0) + 1, -1, dtype=np.int64)
        complete = True
        for slot, code in enumerate(codes):
            location_id = ids.get(code)
            if location_id is None:
                complete = False  # unknown here: not remembered, it may be created later
            else:
                lookup[location_id] = slot
        with self._lock:
            self._ids = ids
            if complete:
                if len(self._lookups) >= self._MAX_LISTS:
                    self._lookups.clear()
                self._lookups[codes] = lookup
        return lookup


_location_slots: PerEngine[_LocationSlots] = PerEngine(_LocationSlots)


def _slots_of(lookup: IntArray, location_ids: IntArray) -> IntArray:
    """The slots of ``location_ids`` (-1: not in the list, a location newer than the lookup
    included)."""
    inside = location_ids < len(lookup)
    return np.where(inside, lookup[np.where(inside, location_ids, 0)], -1)


"""Available to promise per position (all locations, or the codes given), empty ones left out."""
_CHANNEL_BUFFER = select(channel_buffers.c.percent, channel_buffers.c.units).where(
    channel_buffers.c.channel == bindparam("k_channel")
)
_KEYS_PARTS = (
    select(
        literal("item").label("kind"),
        items.c.id,
        items.c.sku.label("name"),
        items.c.low_stock_threshold.label("threshold"),
        literal("").label("status"),
    ).where(items.c.sku.in_(bindparam("k_skus", expanding=True))),
    select(
        literal("location"),
        locations.c.id,
        locations.c.code,
        literal(0),
        locations.c.status,
    ).where(locations.c.code.in_(bindparam("k_codes", expanding=True))),
)
_KEYS = union_all(*_KEYS_PARTS)
"""Item and location ids of a few positions in one round trip."""
_KEYS_AND_BUFFER = union_all(
    *_KEYS_PARTS,
    select(
        literal("buffer"),
        channel_buffers.c.percent,
        channel_buffers.c.channel,
        channel_buffers.c.units,
        literal(""),
    ).where(channel_buffers.c.channel == bindparam("k_channel")),
)
"""The same, plus the channel's buffer: a hold or an allocation needs both."""
_INSERT_RESERVATION = insert(reservations)
_INSERT_RESERVATION_LINE = insert(reservation_lines)

_FULFILLING = ", ".join(f"'{status.value}'" for status in LocationStatus if status.fulfills)
_ATP_SQL = "GREATEST(0, p.on_hand - p.allocated - p.reserved - p.blocked - p.safety_stock)"
_HOLD_POSTGRES = f"""
WITH taken AS (
  UPDATE inventory_positions AS p
  SET reserved = p.reserved + %(quantity)s, updated_at = %(at)s
  FROM items AS i CROSS JOIN locations AS l
    LEFT JOIN channel_buffers AS b ON b.channel = %(channel)s
  WHERE i.sku = %(sku)s AND l.code = %(code)s AND l.status IN ({_FULFILLING})
    AND p.item_id = i.id AND p.location_id = l.id
    AND (p.on_hand - p.allocated - p.reserved - p.blocked - p.safety_stock)
        * (100 - COALESCE(b.percent, 0)) >= (%(quantity)s + COALESCE(b.units, 0)) * 100
  RETURNING p.item_id, p.location_id, p.on_hand, p.allocated, p.reserved, p.blocked,
    p.safety_stock, i.low_stock_threshold AS threshold, {_ATP_SQL} AS atp,
    GREATEST(0, p.on_hand - p.allocated - p.reserved + %(quantity)s - p.blocked
      - p.safety_stock) AS previous_atp
), hold AS (
  INSERT INTO reservations (id, reference, channel, status, expires_at, created_at, updated_at)
  SELECT %(id)s, %(reference)s, %(channel)s, 'active', %(expires_at)s, %(at)s, %(at)s
  FROM taken
), hold_line AS (
  INSERT INTO reservation_lines (reservation_id, item_id, location_id, quantity, status,
    expires_at)
  SELECT %(id)s, item_id, location_id, %(quantity)s, 'active', %(expires_at)s FROM taken
), events AS (
  INSERT INTO outbox_events (event_id, type, source, subject, time, data)
  SELECT e.event_id, e.type, %(source)s, %(subject)s, %(at)s, e.data
  FROM taken, LATERAL (VALUES
    (1, %(changed_id)s, 'inventory.changed', jsonb_build_object(
      'sku', %(sku)s::text, 'location', %(code)s::text, 'reason', 'reserved',
      'on_hand', on_hand, 'allocated', allocated, 'reserved', reserved, 'blocked', blocked,
      'safety_stock', safety_stock, 'atp', atp, 'previous_atp', previous_atp)),
    (2, %(crossed_id)s, 'availability.out',
      jsonb_build_object('sku', %(sku)s::text, 'location', %(code)s::text)),
    (3, %(crossed_id)s, 'availability.low', jsonb_build_object(
      'sku', %(sku)s::text, 'location', %(code)s::text, 'atp', atp, 'threshold', threshold))
  ) AS e (n, event_id, type, data)
  WHERE e.n = 1
    OR (e.n = 2 AND atp = 0 AND previous_atp > 0)
    OR (e.n = 3 AND 0 < atp AND atp <= threshold AND threshold < previous_atp)
  ORDER BY e.n
)
SELECT on_hand, allocated, reserved, blocked, safety_stock FROM taken
"""  # noqa: S608 (built from constants; every value is a bound parameter)
_HOLD_SQLITE = f"""
UPDATE inventory_positions
SET reserved = reserved + :quantity, updated_at = :at
WHERE item_id = (SELECT id FROM items WHERE sku = :sku)
  AND location_id = (SELECT id FROM locations WHERE code = :code AND status IN ({_FULFILLING}))
  AND (on_hand - allocated - reserved - blocked - safety_stock)
      * (100 - COALESCE((SELECT percent FROM channel_buffers WHERE channel = :channel), 0))
      >= (:quantity + COALESCE((SELECT units FROM channel_buffers WHERE channel = :channel), 0))
      * 100
RETURNING item_id, location_id, on_hand, allocated, reserved, blocked, safety_stock,
  (SELECT low_stock_threshold FROM items WHERE id = item_id)
"""  # noqa: S608 (built from constants; every value is a bound parameter)
"""The same conditional update on SQLite (no writable CTEs): the hold's rows follow in the same
transaction, which holds the database's write lock from BEGIN IMMEDIATE."""
_HOLD_SQLITE_RESERVATION = (
    "INSERT INTO reservations (id, reference, channel, status, expires_at, created_at,"
    " updated_at) VALUES (:id, :reference, :channel, 'active', :expires_at, :at, :at)"
)
_HOLD_SQLITE_LINE = (
    "INSERT INTO reservation_lines (reservation_id, item_id, location_id, quantity, status,"
    " expires_at) VALUES (:id, :item_id, :location_id, :quantity, 'active', :expires_at)"
)
_SQLITE_TIME = reservations.c.expires_at.type.bind_processor(sqlite.dialect())
"""How SQLite stores a UTC time (as SQLAlchemy binds it), for statements run on the driver."""
"""A one-line hold on PostgreSQL as one statement, run in autocommit: the conditional update
(channel buffer included), the hold's rows and its events (those of :func:`change_events`, built
in SQL) commit together, and the position's row lock lasts only while the statement runs.
It changes nothing when the position is short, unknown, at a location that fulfills nothing or
has expired holds to free: then the general path decides and says why."""


_SNAPSHOT_STAGE = Table(
    "oms_snapshot_stage",
    MetaData(),  # not part of the schema: a temporary table per connection (see _stage)
    Column("sku", String(64), nullable=False),
    Column("code", String(64), nullable=False),
    Column("on_hand", Integer, nullable=False),
    Column("blocked", Integer),
    Column("item_id", BigInteger),
    Column("location_id", BigInteger),
    Column("stale", Integer),
    Column("old_on_hand", Integer),
    Column("old_blocked", Integer),
    Column("new_on_hand", Integer),
    Column("new_blocked", Integer),
    Column("created", Integer),
)
"""A snapshot batch while it is applied: the count, then the resolved ids, then before and
after per position, all computed in SQL (``created``: the position is new, made by this batch
with its count)."""
_STAGE_COLUMNS = (
    "sku VARCHAR(64) NOT NULL, code VARCHAR(64) NOT NULL, on_hand INTEGER NOT NULL,"
    " blocked INTEGER, item_id BIGINT, location_id BIGINT, stale INTEGER,"
    " old_on_hand INTEGER, old_blocked INTEGER, new_on_hand INTEGER, new_blocked INTEGER,"
    " created INTEGER"
)
_STAGE_DDL_POSTGRES = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS oms_snapshot_stage ({_STAGE_COLUMNS})"
    " ON COMMIT DELETE ROWS"
)
_STAGE_DDL_SQLITE = f"CREATE TEMPORARY TABLE IF NOT EXISTS oms_snapshot_stage ({_STAGE_COLUMNS})"
_RESOLVE_STAGE = (
    update(_SNAPSHOT_STAGE)
    .values(item_id=items.c.id, location_id=locations.c.id)
    .where(items.c.sku == _SNAPSHOT_STAGE.c.sku, locations.c.code == _SNAPSHOT_STAGE.c.code)
)
"""The ids of the staged positions, in one join (rows of unknown SKUs or locations keep none)."""


_COUNTED = (
    P.item_id,
    P.location_id,
    P.on_hand,
    P.blocked,
    P.snapshot_as_of,
    P.snapshot_sequence,
    P.last_movement_at,
)
"""What a count needs of the positions it sets."""
_CREATED_COLUMNS = [
    "item_id",
    "location_id",
    "on_hand",
    "allocated",
    "reserved",
    "blocked",
    "safety_stock",
    "safety_stock_set",
    "snapshot_as_of",
    "snapshot_sequence",
    "updated_at",
]


class _Key:
    """A resolved (item, location) pair, ordered by ids: the lock order."""

    __slots__ = ("item_id", "location_code", "location_id", "location_status", "sku", "threshold")

    def __init__(
        self,
        *,
        item_id: int,
        location_id: int,
        sku: str,
        location_code: str,
        threshold: int,
        location_status: str,
    ) -> None:
        self.item_id = item_id
        self.location_id = location_id
        self.sku = sku
        self.location_code = location_code
        self.threshold = threshold
        self.location_status = location_status

    @property
    def order(self) -> tuple[int, int]:
        return (self.item_id, self.location_id)


def _position(key: _Key, row: Any, *, expired: int = 0) -> Position:
    return Position(
        sku=key.sku,
        location_code=key.location_code,
        on_hand=int(row.on_hand),
        allocated=int(row.allocated),
        reserved=int(row.reserved) - expired,
        blocked=int(row.blocked),
        safety_stock=int(row.safety_stock),
    )


def _one_line_hold(
    line: StockLine,
    *,
    reservation_id: str,
    reference: str,
    channel: str,
    expires_at: datetime,
    at: datetime,
) -> Reservation:
    return Reservation(
        id=reservation_id,
        reference=reference,
        channel=channel,
        status=ReservationStatus.ACTIVE,
        expires_at=expires_at,
        created_at=at,
        lines=(
            ReservationLine(
                sku=line.sku,
                location_code=line.location_code,
                quantity=line.quantity,
                status=ReservationStatus.ACTIVE,
            ),
        ),
    )


class SqlInventoryRepository:
    def __init__(
        self,
        connection: Connection,
        *,
        record: Record,
        new_id: Callable[[], str] | None = None,
        event_source: str = "",
        reference: ReferenceView | None = None,
    ) -> None:
        self._connection = connection
        self._reference = reference
        """The unit of work's reference view: the order channels' buffers come with its
        signature (no read of their own)."""
        self._record = record
        self._new_id = new_id
        self._event_source = event_source
        self._is_postgres = connection.dialect.name == "postgresql"
        self._read_only = bool(connection.get_execution_options().get(READ_ONLY))
        self._known_keys: dict[tuple[str, str], _Key] = {}
        """Positions resolved earlier in this unit of work (by :meth:`atp` or :meth:`_keys`):
        an allocation right after an availability read needs no second lookup."""
        self._buffers: dict[str, ChannelBuffer] = {}
        self._seen_rows: dict[tuple[str, str], Any] = {}
        """Rows of :data:`_ATP` read in this unit of work, by (sku, location code)."""
        """Channel buffers read in this unit of work (with the keys, in the same round trip)."""

    # -- resolving skus and codes ------------------------------------------------------------------

    def _keys(
        self, pairs: Iterable[tuple[str, str]], *, channel: str | None = None
    ) -> dict[tuple[str, str], _Key]:
        """Resolve (sku, location code) pairs; with ``channel``, read its buffer in the same
        round trip (then :meth:`channel_buffer` needs none)."""
        pairs = set(pairs)
        known: dict[tuple[str, str], _Key] = {}
        for pair in pairs:
            key = self._known_keys.get(pair)
            if key is None and pair in self._seen_rows:
                sku, code, _, _, item_id, location_id, threshold, status = self._seen_rows[pair]
                key = self._known_keys[pair] = _Key(
                    item_id=int(item_id),
                    location_id=int(location_id),
                    sku=sku,
                    location_code=code,
                    threshold=int(threshold),
                    location_status=status,
                )
            if key is not None:
                known[pair] = key
        if len(known) == len(pairs):
            return known
        skus = sorted({sku for sku, _ in pairs})
        codes = sorted({code for _, code in pairs})
        item_rows: dict[str, tuple[int, int]] = {}
        location_rows: dict[str, tuple[int, str]] = {}
        if len(skus) <= CHUNK and len(codes) <= CHUNK:
            # The common case (an order, a hold, a feed chunk): one round trip for both, with
            # a statement built once (building it costs more than the database spends on it).
            read_buffer = bool(channel) and channel not in self._buffers
            found: Sequence[Any] = self._connection.execute(
                _KEYS_AND_BUFFER if read_buffer else _KEYS,
                {"k_skus": skus, "k_codes": codes, "k_channel": channel}
                if read_buffer
                else {"k_skus": skus, "k_codes": codes},
            ).all()
            if read_buffer:
                assert channel
                self._buffers[channel] = ChannelBuffer(channel=channel)
                for kind, percent, name, units, _ in found:
                    if kind == "buffer":
                        self._buffers[channel] = ChannelBuffer(
                            channel=name, percent=int(percent), units=int(units)
                        )
                found = [row for row in found if row[0] != "buffer"]
        else:
            found = [
                ("item", row.id, row.sku, row.low_stock_threshold, "")
                for chunk in _chunks(skus)
                for row in self._connection.execute(
                    select(items.c.id, items.c.sku, items.c.low_stock_threshold).where(
                        items.c.sku.in_(chunk)
                    )
                )
            ] + [
                ("location", row.id, row.code, 0, row.status)
                for chunk in _chunks(codes)
                for row in self._connection.execute(
                    select(locations.c.id, locations.c.code, locations.c.status).where(
                        locations.c.code.in_(chunk)
                    )
                )
            ]
        for kind, row_id, name, threshold, status in found:
            if kind == "item":
                item_rows[name] = (int(row_id), int(threshold))
            else:
                location_rows[name] = (int(row_id), status)
        missing_skus = sorted(set(skus) - set(item_rows))
        missing_codes = sorted(set(codes) - set(location_rows))
        if missing_skus or missing_codes:
            parts = []
            if missing_skus:
                parts.append(f"unknown SKU {', '.join(missing_skus[:10])}")
            if missing_codes:
                parts.append(f"unknown location {', '.join(missing_codes[:10])}")
            raise UnknownStock("; ".join(parts), skus=missing_skus, locations=missing_codes)
        resolved = {
            (sku, code): _Key(
                item_id=item_rows[sku][0],
                location_id=location_rows[code][0],
                sku=sku,
                location_code=code,
                threshold=item_rows[sku][1],
                location_status=location_rows[code][1],
            )
            for sku, code in pairs
        }
        self._known_keys.update(resolved)
        return resolved

    def _ordered(
        self, lines: Sequence[StockLine], *, channel: str | None = None
    ) -> list[tuple[_Key, int]]:
        """Merge lines per position and order them by (item, location): the lock order."""
        quantities: dict[tuple[str, str], int] = defaultdict(int)
        for line in lines:
            quantities[(line.sku, line.location_code)] += line.quantity
        keys = self._keys(quantities, channel=channel)
        return sorted(
            ((keys[pair], qty) for pair, qty in quantities.items()), key=lambda kq: kq[0].order
        )

    def _where(self, key: _Key) -> ColumnElement[bool]:
        return and_(P.item_id == key.item_id, P.location_id == key.location_id)

    def _changed(self, key: _Key, reason: str, before: Position, after: Position) -> PositionChange:
        change = PositionChange(
            sku=key.sku,
            location_code=key.location_code,
            reason=reason,
            before=before,
            after=after,
            low_stock_threshold=key.threshold,
        )
        self._record(*change_events(change))
        return change

    def _free_expired(self, key: _Key, *, at: datetime) -> int:
        """Expire this position's holds that are past their time; the units freed."""
        lines = reservation_lines.c
        freed = self._connection.execute(
            update(reservation_lines)
            .where(
                lines.item_id == key.item_id,
                lines.location_id == key.location_id,
                lines.status == ReservationStatus.ACTIVE.value,
                lines.expires_at <= at,
            )
            .values(status=ReservationStatus.EXPIRED.value)
            .returning(lines.quantity)
        ).all()
        total = sum(int(row.quantity) for row in freed)
        if total:
            self._connection.execute(
                update(inventory_positions)
                .where(self._where(key))
                .values(reserved=P.reserved - total, updated_at=at)
            )
        return total

    def _available(self, key: _Key, *, at: datetime, buffer: ChannelBuffer) -> int:
        row = self._connection.execute(select(*_RETURNED).where(self._where(key))).first()
        if row is None:
            return 0
        return buffer.apply(_position(key, row).atp)

    def _take(
        self,
        key: _Key,
        quantity: int,
        *,
        column: str,
        at: datetime,
        buffer: ChannelBuffer,
        reason: str,
        earmarked: bool = False,
    ) -> PositionChange:
        """Add ``quantity`` to ``allocated`` or ``reserved`` if that many are available
        (``earmarked``: allocated without the safety-stock buffer, see _TAKE_EARMARKED)."""
        if not LocationStatus(key.location_status).fulfills:
            raise LocationUnavailable(
                f"location {key.location_code} is {key.location_status} and fulfills nothing",
                location=key.location_code,
                location_status=key.location_status,
            )
        buffered = (buffer.percent != 0 or buffer.units != 0) and not earmarked
        statement = _TAKE_EARMARKED if earmarked else _TAKE[(column, buffered)]
        parameters = {
            "k_item": key.item_id,
            "k_location": key.location_id,
            "k_quantity": quantity,
            "k_at": at,
            "k_percent": buffer.percent,
            "k_units": buffer.units,
        }
        if not buffered:
            del parameters["k_percent"], parameters["k_units"]
        row = self._connection.execute(statement, parameters).first()
        if row is None and self._free_expired(key, at=at):
            row = self._connection.execute(statement, parameters).first()
        if row is None:
            raise InsufficientStock(
                sku=key.sku,
                location=key.location_code,
                requested=quantity,
                available=self._available(key, at=at, buffer=buffer),
            )
        after = _position(key, row)
        before = Position(
            sku=key.sku,
            location_code=key.location_code,
            on_hand=after.on_hand,
            allocated=after.allocated - (quantity if column == "allocated" else 0),
            reserved=after.reserved - (quantity if column == "reserved" else 0),
            blocked=after.blocked,
            safety_stock=after.safety_stock,
        )
        return self._changed(key, reason, before, after)

    # -- allocation --------------------------------------------------------------------------------

    def channel_buffer(self, channel: str | None) -> ChannelBuffer:
        if not channel:
            return NO_BUFFER
        if channel in self._buffers:
            return self._buffers[channel]
        known, stored = (
            self._reference.channel_buffer(channel) if self._reference else (False, None)
        )
        if not known:
            row = self._connection.execute(_CHANNEL_BUFFER, {"k_channel": channel}).first()
            stored = None if row is None else (int(row.percent), int(row.units))
        if stored is None:
            buffer = ChannelBuffer(channel=channel)
        else:
            buffer = ChannelBuffer(channel=channel, percent=stored[0], units=stored[1])
        self._buffers[channel] = buffer
        return buffer

    def set_channel_buffer(self, buffer: ChannelBuffer) -> None:
        if not 0 <= buffer.percent <= 100 or buffer.units < 0:
            raise Invalid("a channel buffer is 0-100 percent and a non-negative number of units")
        self._buffers.pop(buffer.channel, None)
        if self._reference is not None:
            # the signature read before no longer holds for this unit of work: buffers (and
            # reference data) are read from their tables from now on
            self._reference.wrote()
        self._connection.execute(
            insert_ignoring_conflicts(self._connection, channel_buffers).values(
                channel=buffer.channel, percent=0, units=0
            )
        )
        self._connection.execute(
            update(channel_buffers)
            .where(channel_buffers.c.channel == buffer.channel)
            .values(percent=buffer.percent, units=buffer.units)
        )

    def allocate(
        self,
        lines: Sequence[StockLine],
        *,
        at: datetime,
        channel: str | None = None,
        reason: str = "allocated",
        earmarked: bool = False,
    ) -> list[PositionChange]:
        ordered = self._ordered(lines, channel=channel)
        buffer = self.channel_buffer(channel)
        bulk_from = BULK_POSITIONS_POSTGRES if self._is_postgres else BULK_POSITIONS
        if len(ordered) >= bulk_from and not earmarked:
            changes = self._allocate_in_bulk(ordered, at=at, buffer=buffer, reason=reason)
            if changes is not None:
                return changes
        return [
            self._take(
                key,
                quantity,
                column="allocated",
                at=at,
                buffer=buffer,
                reason=reason,
                earmarked=earmarked,
            )
            for key, quantity in ordered
        ]

    def _allocate_in_bulk(
        self,
        ordered: Sequence[tuple[_Key, int]],
        *,
        at: datetime,
        buffer: ChannelBuffer,
        reason: str,
    ) -> list[PositionChange] | None:
        """Many positions at once (a bulk re-plan): lock and read them in a few statements, check
        every one, then one executemany. None when a position lacks the units (or does not
        exist yet): the caller then takes them one by one, which frees expired holds first and
        says which position fell short."""
        rows = self._lock([key for key, _ in ordered])
        befores: list[Position] = []
        for key, quantity in ordered:
            if not LocationStatus(key.location_status).fulfills:
                return None
            row = rows.get(key.order)
            if row is None:
                return None
            before = _position(key, row)
            if buffer.apply(before.atp) < quantity:
                return None
            befores.append(before)
        self._add_allocated(ordered, at=at)
        return [
            self._changed(key, reason, before, replace(before, allocated=before.allocated + q))
            for (key, q), before in zip(ordered, befores, strict=True)
        ]

    def _deallocate_in_bulk(
        self, ordered: Sequence[tuple[_Key, int]], *, at: datetime, reason: str
    ) -> list[PositionChange] | None:
        """Many positions at once (a bulk re-plan), as :meth:`_allocate_in_bulk`. None when a
        position has fewer units allocated: the caller gives them back one by one, which says
        which position fell short."""
        rows = self._lock([key for key, _ in ordered])
        befores: list[Position] = []
        for key, quantity in ordered:
            row = rows.get(key.order)
            if row is None or int(row.allocated) < quantity:
                return None
            befores.append(_position(key, row))
        self._add_allocated([(key, -q) for key, q in ordered], at=at)
        return [
            self._changed(key, reason, before, replace(before, allocated=before.allocated - q))
            for (key, q), before in zip(ordered, befores, strict=True)
        ]

    def _add_allocated(self, changes: Sequence[tuple[_Key, int]], *, at: datetime) -> None:
        """Add (or, negative, remove) allocated units of positions locked and checked."""
        if self._is_postgres:
            self._connection.execute(
                _ADD_ALLOCATED_BY_KEYS,
                {
                    "c_item_id": [key.item_id for key, _ in changes],
                    "c_location_id": [key.location_id for key, _ in changes],
                    "c_quantity": [q for _, q in changes],
                    "k_at": at,
                },
            )
            return
        self._connection.execute(
            _ADD_ALLOCATED,
            [
                {"k_item": key.item_id, "k_location": key.location_id, "k_quantity": q, "k_at": at}
                for key, q in changes
            ],
        )

    def _give_back(
        self,
        key: _Key,
        quantity: int,
        *,
        at: datetime,
        reason: str,
        consume: bool,
        reference: str | None = None,
    ) -> PositionChange:
        values: dict[str, Any] = {"allocated": P.allocated - quantity, "updated_at": at}
        condition = [self._where(key), P.allocated >= quantity]
        if consume:
            values["on_hand"] = P.on_hand - quantity
            values["last_movement_at"] = at
            condition.append(P.on_hand >= quantity)
        row = self._connection.execute(
            update(inventory_positions).where(*condition).values(values).returning(*_RETURNED)
        ).first()
        if row is None:
            current = self._connection.execute(
                select(P.allocated, P.on_hand).where(self._where(key))
            ).first()
            allocated = int(current.allocated) if current else 0
            raise NotAllocated(
                f"{quantity} x {key.sku} at {key.location_code} asked for but only "
                f"{allocated} allocated",
                sku=key.sku,
                location=key.location_code,
                requested=quantity,
                allocated=allocated,
            )
        after = _position(key, row)
        before = Position(
            sku=key.sku,
            location_code=key.location_code,
            on_hand=after.on_hand + (quantity if consume else 0),
            allocated=after.allocated + quantity,
            reserved=after.reserved,
            blocked=after.blocked,
            safety_stock=after.safety_stock,
        )
        if consume:
            self._movements(
                [
                    {
                        "item_id": key.item_id,
                        "location_id": key.location_id,
                        "kind": "shipment",
                        "on_hand_change": -quantity,
                        "reason": reason,
                        "source": "oms",
                        "message_id": reference,
                        "occurred_at": at,
                        "recorded_at": at,
                    }
                ]
            )
        return self._changed(key, reason, before, after)

    def deallocate(
        self, lines: Sequence[StockLine], *, at: datetime, reason: str = "deallocated"
    ) -> list[PositionChange]:
        ordered = self._ordered(lines)
        if len(ordered) >= BULK_POSITIONS:
            changes = self._deallocate_in_bulk(ordered, at=at, reason=reason)
            if changes is not None:
                return changes
        return [
            self._give_back(key, quantity, at=at, reason=reason, consume=False)
            for key, quantity in ordered
        ]

    def consume(
        self, lines: Sequence[StockLine], *, at: datetime, reference: str
    ) -> list[PositionChange]:
        return [
            self._give_back(
                key,
                quantity,
                at=at,
                reason=f"shipped {reference}",
                consume=True,
                reference=reference,
            )
            for key, quantity in self._ordered(lines)
        ]

    # -- reading -----------------------------------------------------------------------------------

    def _position_rows(
        self, skus: Sequence[str], *, at: datetime, location_codes: Sequence[str] | None
    ) -> list[Any]:
        query = (
            select(
                items.c.sku,
                items.c.id.label("item_id"),
                locations.c.code,
                locations.c.id.label("location_id"),
                *_RETURNED,
            )
            .select_from(
                inventory_positions.join(items, items.c.id == P.item_id).join(
                    locations, locations.c.id == P.location_id
                )
            )
            .where(items.c.sku.in_(list(skus)))
        )
        if location_codes is not None:
            query = query.where(locations.c.code.in_(list(location_codes)))
        rows = list(self._connection.execute(query))
        held = [int(row.item_id) for row in rows if row.reserved]
        expired = self._expired_holds(held, at=at) if held else {}
        return [(row, expired.get((int(row.item_id), int(row.location_id)), 0)) for row in rows]

    def positions(
        self,
        skus: Sequence[str],
        *,
        at: datetime,
        location_codes: Sequence[str] | None = None,
    ) -> list[Position]:
        found = []
        for row, expired in self._position_rows(skus, at=at, location_codes=location_codes):
            found.append(
                Position(
                    sku=row.sku,
                    location_code=row.code,
                    on_hand=int(row.on_hand),
                    allocated=int(row.allocated),
                    reserved=int(row.reserved) - expired,
                    blocked=int(row.blocked),
                    safety_stock=int(row.safety_stock),
                )
            )
        if found:
            in_transit: dict[tuple[str, str], int] = defaultdict(int)
            for line in self.supply(skus, location_codes=location_codes):
                if line.status == "in_transit":
                    in_transit[(line.sku, line.location_code)] += line.quantity
            if in_transit:
                found = [
                    Position(
                        **{
                            **p.__dict__,
                            "in_transit": in_transit.get((p.sku, p.location_code), 0),
                        }
                    )
                    for p in found
                ]
        return sorted(found, key=lambda p: (p.sku, p.location_code))

    def _expired_holds(
        self, item_ids: Sequence[int], *, at: datetime
    ) -> dict[tuple[int, int], int]:
        """Units of active holds past their expiry (not freed yet), per (item id, location id)."""
        lines = reservation_lines.c
        return {
            (int(row.item_id), int(row.location_id)): int(row.units)
            for row in self._connection.execute(
                select(lines.item_id, lines.location_id, func.sum(lines.quantity).label("units"))
                .where(
                    lines.item_id.in_(sorted(set(item_ids))),
                    lines.status == ReservationStatus.ACTIVE.value,
                    lines.expires_at <= at,
                )
                .group_by(lines.item_id, lines.location_id)
            )
        }

    def atp(
        self,
        skus: Sequence[str],
        *,
        at: datetime,
        location_codes: Sequence[str] | None = None,
        channel: str | None = None,
    ) -> dict[str, dict[str, int]]:
        # The hot read of availability: ATP computed in SQL, empty positions never leave the
        # database, and the expired-hold correction only runs where something is held.
        buffer = self.channel_buffer(channel)
        parameters: dict[str, Any] = {"k_skus": list(skus)}
        if location_codes is not None:
            parameters["k_codes"] = list(location_codes)
        if self._read_only:
            packed = self._atp_packed(skus, parameters, at=at, buffer=buffer)
            if packed is not None:
                return packed
        statement = _ATP[self._is_postgres][location_codes is not None]
        rows = self._connection.execute(statement, parameters).all()
        held = [row[4] for row in rows if row[3]]
        expired = self._expired_holds(held, at=at) if held else {}
        plain = buffer.percent == 0 and buffer.units == 0
        result: dict[str, dict[str, int]] = {sku: {} for sku in skus}
        # Kept as rows: a _Key is built only for a position this unit of work then writes.
        self._seen_rows.update(((row[0], row[1]), row) for row in rows)
        if plain and not expired:
            for sku, code, raw, *_ in rows:
                if raw > 0:
                    result[sku][code] = raw
            return result
        for sku, code, raw, _reserved, item_id, location_id, _threshold, _status in rows:
            if expired:
                raw += expired.get((item_id, location_id), 0)
            available = raw if plain else buffer.apply(raw)
            if available > 0:
                result[sku][code] = available
        return result

    def _atp_packed(
        self,
        skus: Sequence[str],
        parameters: dict[str, Any],
        *,
        at: datetime,
        buffer: ChannelBuffer,
    ) -> dict[str, dict[str, int]] | None:
        """:meth:`atp` for a read-only unit of work: one row per SKU, its positions packed into
        one string by the database, so that a basket over hundreds of locations costs a few
        rows, not a Python row per position. None if a location code holds a separator (then
        the caller reads row by row)."""
        rows = self._connection.execute(_ATP_PACKED["k_codes" in parameters], parameters).all()
        result: dict[str, dict[str, int]] = {sku: {} for sku in skus}
        held: list[int] = []
        for sku, item_id, count, holding, packed in rows:
            found: dict[str, int] = {}
            for entry in packed.split(_PACKED_ROW):
                code, _, raw = entry.rpartition(_PACKED_FIELD)
                found[code] = int(raw)
            if len(found) != count:
                return None
            result[sku] = found
            if holding:
                held.append(int(item_id))
        if held:
            for (sku, code), units in self._expired_holds_by_code(held, at=at).items():
                if code in result[sku]:
                    result[sku][code] += units
        plain = buffer.percent == 0 and buffer.units == 0
        for sku, found in result.items():
            if held or not plain:
                result[sku] = {
                    code: available
                    for code, raw in found.items()
                    if (available := raw if plain else buffer.apply(raw)) > 0
                }
            else:
                # Without holds the database kept positive figures only.
                result[sku] = found
        return result

    def basket_stock(
        self,
        skus: Sequence[str],
        *,
        at: datetime,
        codes: Sequence[str],
        channel: str | None = None,
    ) -> BasketStock:
        buffer = self.channel_buffer(channel)
        if not (self._is_postgres and self._read_only):
            found = self.atp(skus, at=at, channel=channel)
            return BasketStock(
                items=SqlItemRepository(self._connection).get_many(skus),
                atp={
                    sku: np.fromiter(
                        (found[sku].get(code, 0) for code in codes),
                        dtype=np.int64,
                        count=len(codes),
                    )
                    for sku in skus
                },
            )
        lookup = _location_slots(self._connection.engine).lookup(self._connection, tuple(codes))
        cursor = self._connection.connection.cursor()
        try:
            cursor.execute(_BASKET_STOCK_POSTGRES, {"skus": list(skus)})
            names = [column[0] for column in cursor.description or ()]
            rows = cursor.fetchall()
        finally:
            cursor.close()
        known: dict[str, Item] = {}
        result = {sku: np.zeros(len(codes), dtype=np.int64) for sku in skus}
        held: dict[int, str] = {}
        for row in rows:
            record = dict(zip(names, row, strict=True))
            item = known[record["sku"]] = item_of(record)
            if record["packed"] is None:
                continue  # no position with stock or holds
            pairs = np.frombuffer(record["packed"], dtype=_SLOT_PAIR)
            slots = _slots_of(lookup, pairs["location_id"].astype(np.int64))
            listed = slots >= 0
            result[item.sku][slots[listed]] = pairs["atp"][listed]
            if record["holding"]:
                held[int(record["id"])] = item.sku
        if held:
            # Holds past their expiry count as available until the worker frees them.
            for (item_id, location_id), freed in self._expired_holds(list(held), at=at).items():
                slot = int(_slots_of(lookup, np.array([location_id], dtype=np.int64))[0])
                if slot >= 0:
                    result[held[item_id]][slot] += freed
        # Negative figures come only with held positions: nothing available there.
        return BasketStock(
            items=known, atp={sku: buffer.apply_all(figures) for sku, figures in result.items()}
        )

    def _expired_holds_by_code(
        self, item_ids: Sequence[int], *, at: datetime
    ) -> dict[tuple[str, str], int]:
        """:meth:`_expired_holds` by (sku, location code)."""
        lines = reservation_lines.c
        return {
            (row.sku, row.code): int(row.units)
            for row in self._connection.execute(
                select(items.c.sku, locations.c.code, func.sum(lines.quantity).label("units"))
                .select_from(
                    reservation_lines.join(items, items.c.id == lines.item_id).join(
                        locations, locations.c.id == lines.location_id
                    )
                )
                .where(
                    lines.item_id.in_(sorted(set(item_ids))),
                    lines.status == ReservationStatus.ACTIVE.value,
                    lines.expires_at <= at,
                )
                .group_by(items.c.sku, locations.c.code)
            )
        }

    # -- reservations ------------------------------------------------------------------------------

    def reserve(
        self,
        lines: Sequence[StockLine],
        *,
        reservation_id: str,
        reference: str,
        channel: str,
        expires_at: datetime,
        at: datetime,
    ) -> Reservation:
        ordered = self._ordered(lines, channel=channel)
        buffer = self.channel_buffer(channel)
        # The hold's rows first, the stock last: the position row stays locked (PostgreSQL)
        # for as short a time as possible. A refusal rolls the whole unit of work back.
        self._connection.execute(
            _INSERT_RESERVATION,
            {
                "id": reservation_id,
                "reference": reference,
                "channel": channel,
                "status": ReservationStatus.ACTIVE.value,
                "expires_at": expires_at,
                "created_at": at,
                "updated_at": at,
            },
        )
        held = [
            {
                "reservation_id": reservation_id,
                "item_id": key.item_id,
                "location_id": key.location_id,
                "quantity": quantity,
                "status": ReservationStatus.ACTIVE.value,
                "expires_at": expires_at,
            }
            for key, quantity in ordered
        ]
        self._connection.execute(_INSERT_RESERVATION_LINE, held[0] if len(held) == 1 else held)
        for key, quantity in ordered:
            self._take(key, quantity, column="reserved", at=at, buffer=buffer, reason="reserved")
        return Reservation(
            id=reservation_id,
            reference=reference,
            channel=channel,
            status=ReservationStatus.ACTIVE,
            expires_at=expires_at,
            created_at=at,
            lines=tuple(
                ReservationLine(
                    sku=key.sku,
                    location_code=key.location_code,
                    quantity=quantity,
                    status=ReservationStatus.ACTIVE,
                )
                for key, quantity in ordered
            ),
        )

    def reserve_at_once(
        self,
        line: StockLine,
        *,
        reservation_id: str,
        reference: str,
        channel: str,
        expires_at: datetime,
        at: datetime,
    ) -> Reservation | None:
        """A one-line hold at a location in as few round trips as the database allows. On
        PostgreSQL one statement (:data:`_HOLD_POSTGRES`) in an autocommit unit of work; None
        when it held nothing, and the caller takes the general path (which frees expired holds
        or says why it refuses). On SQLite a few prebuilt statements in the unit of work's
        transaction (events recorded as usual)."""
        if not self._is_postgres:
            return self._reserve_at_once_sqlite(
                line,
                reservation_id=reservation_id,
                reference=reference,
                channel=channel,
                expires_at=expires_at,
                at=at,
            )
        if self._new_id is None:
            raise RuntimeError("a hold in one statement needs event ids from its unit of work")
        cursor = self._connection.connection.cursor()
        try:
            cursor.execute(
                _HOLD_POSTGRES,
                {
                    "sku": line.sku,
                    "code": line.location_code,
                    "quantity": line.quantity,
                    "channel": channel,
                    "id": reservation_id,
                    "reference": reference,
                    "expires_at": expires_at,
                    "at": at,
                    "source": self._event_source,
                    "subject": f"inventory/{line.sku}@{line.location_code}",
                    "changed_id": self._new_id(),
                    "crossed_id": self._new_id(),
                },
            )
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row is None:
            return None
        return _one_line_hold(
            line,
            reservation_id=reservation_id,
            reference=reference,
            channel=channel,
            expires_at=expires_at,
            at=at,
        )

    def _reserve_at_once_sqlite(
        self,
        line: StockLine,
        *,
        reservation_id: str,
        reference: str,
        channel: str,
        expires_at: datetime,
        at: datetime,
    ) -> Reservation | None:
        assert _SQLITE_TIME is not None
        stored_at, stored_expiry = _SQLITE_TIME(at), _SQLITE_TIME(expires_at)
        cursor = self._connection.connection.cursor()
        try:
            row = cursor.execute(
                _HOLD_SQLITE,
                {
                    "sku": line.sku,
                    "code": line.location_code,
                    "quantity": line.quantity,
                    "channel": channel,
                    "at": stored_at,
                },
            ).fetchone()
            if row is None:
                return None
            item_id, location_id, *figures, threshold = row
            cursor.execute(
                _HOLD_SQLITE_RESERVATION,
                {
                    "id": reservation_id,
                    "reference": reference,
                    "channel": channel,
                    "expires_at": stored_expiry,
                    "at": stored_at,
                },
            )
            cursor.execute(
                _HOLD_SQLITE_LINE,
                {
                    "id": reservation_id,
                    "item_id": item_id,
                    "location_id": location_id,
                    "quantity": line.quantity,
                    "expires_at": stored_expiry,
                },
            )
        finally:
            cursor.close()
        after = Position(line.sku, line.location_code, *figures)
        self._record(
            *change_events(
                PositionChange(
                    sku=line.sku,
                    location_code=line.location_code,
                    reason="reserved",
                    before=replace(after, reserved=after.reserved - line.quantity),
                    after=after,
                    low_stock_threshold=int(threshold),
                )
            )
        )
        return _one_line_hold(
            line,
            reservation_id=reservation_id,
            reference=reference,
            channel=channel,
            expires_at=expires_at,
            at=at,
        )

    def get_reservation(self, reservation_id: str) -> Reservation | None:
        header = self._connection.execute(
            select(reservations).where(reservations.c.id == reservation_id)
        ).first()
        if header is None:
            return None
        lines = reservation_lines.c
        rows = self._connection.execute(
            select(items.c.sku, locations.c.code, lines.quantity, lines.status)
            .select_from(
                reservation_lines.join(items, items.c.id == lines.item_id).join(
                    locations, locations.c.id == lines.location_id
                )
            )
            .where(lines.reservation_id == reservation_id)
            .order_by(lines.id)
        )
        return Reservation(
            id=header.id,
            reference=header.reference,
            channel=header.channel,
            status=ReservationStatus(header.status),
            expires_at=header.expires_at,
            created_at=header.created_at,
            lines=tuple(
                ReservationLine(
                    sku=row.sku,
                    location_code=row.code,
                    quantity=int(row.quantity),
                    status=ReservationStatus(row.status),
                )
                for row in rows
            ),
        )

    def _active_lines(self, reservation_id: str) -> list[tuple[_Key, int, int]]:
        """(key, line id, quantity) of the reservation's active lines, in lock order."""
        lines = reservation_lines.c
        rows = self._connection.execute(
            select(lines.id, items.c.sku, locations.c.code, lines.quantity)
            .select_from(
                reservation_lines.join(items, items.c.id == lines.item_id).join(
                    locations, locations.c.id == lines.location_id
                )
            )
            .where(
                lines.reservation_id == reservation_id,
                lines.status == ReservationStatus.ACTIVE.value,
            )
        ).all()
        keys = self._keys((row.sku, row.code) for row in rows)
        return sorted(
            ((keys[(row.sku, row.code)], int(row.id), int(row.quantity)) for row in rows),
            key=lambda entry: (entry[0].order, entry[1]),
        )

    def _end_line(
        self, key: _Key, line_id: int, quantity: int, *, status: ReservationStatus, at: datetime
    ) -> PositionChange | None:
        """Move one active line to ``status``; the hold leaves ``reserved`` (and goes to
        ``allocated`` when confirmed). None when another transaction ended it first."""
        ended = self._connection.execute(
            update(reservation_lines)
            .where(
                reservation_lines.c.id == line_id,
                reservation_lines.c.status == ReservationStatus.ACTIVE.value,
            )
            .values(status=status.value)
        ).rowcount
        if not ended:
            return None
        values: dict[str, Any] = {"reserved": P.reserved - quantity, "updated_at": at}
        if status is ReservationStatus.CONFIRMED:
            values["allocated"] = P.allocated + quantity
        row = self._connection.execute(
            update(inventory_positions).where(self._where(key)).values(values).returning(*_RETURNED)
        ).one()
        after = _position(key, row)
        before = Position(
            sku=key.sku,
            location_code=key.location_code,
            on_hand=after.on_hand,
            allocated=after.allocated - (quantity if status is ReservationStatus.CONFIRMED else 0),
            reserved=after.reserved + quantity,
            blocked=after.blocked,
            safety_stock=after.safety_stock,
        )
        return self._changed(key, f"reservation {status.value}", before, after)

    def _require_active(self, reservation_id: str, *, at: datetime) -> Reservation:
        found = self.get_reservation(reservation_id)
        if found is None:
            raise ReservationNotFound(
                f"no reservation '{reservation_id}'", reservation_id=reservation_id
            )
        status = found.effective_status(at)
        if status is not ReservationStatus.ACTIVE:
            raise ReservationNotActive(
                f"reservation '{reservation_id}' is {status.value}",
                reservation_id=reservation_id,
                reservation_status=status.value,
            )
        return found

    def _set_status(self, reservation_id: str, status: ReservationStatus, at: datetime) -> None:
        self._connection.execute(
            update(reservations)
            .where(
                reservations.c.id == reservation_id,
                reservations.c.status == ReservationStatus.ACTIVE.value,
            )
            .values(status=status.value, updated_at=at)
        )

    def confirm_reservation(
        self, reservation_id: str, *, at: datetime, reason: str = "reservation confirmed"
    ) -> list[StockLine]:
        self._require_active(reservation_id, at=at)
        confirmed: list[StockLine] = []
        for key, line_id, quantity in self._active_lines(reservation_id):
            if self._end_line(key, line_id, quantity, status=ReservationStatus.CONFIRMED, at=at):
                confirmed.append(StockLine(key.sku, key.location_code, quantity))
            else:
                # Freed by the worker or a writer between our check and the update: too late.
                raise ReservationNotActive(
                    f"reservation '{reservation_id}' expired while being confirmed",
                    reservation_id=reservation_id,
                    reservation_status=ReservationStatus.EXPIRED.value,
                )
        self._set_status(reservation_id, ReservationStatus.CONFIRMED, at)
        return confirmed

    def release_reservation(self, reservation_id: str, *, at: datetime) -> Reservation:
        self._require_active(reservation_id, at=at)
        for key, line_id, quantity in self._active_lines(reservation_id):
            self._end_line(key, line_id, quantity, status=ReservationStatus.RELEASED, at=at)
        self._set_status(reservation_id, ReservationStatus.RELEASED, at)
        found = self.get_reservation(reservation_id)
        assert found is not None
        return found

    def release_expired(self, *, at: datetime, limit: int) -> int:
        due = [
            row.id
            for row in self._connection.execute(
                select(reservations.c.id)
                .where(
                    reservations.c.status == ReservationStatus.ACTIVE.value,
                    reservations.c.expires_at <= at,
                )
                .order_by(reservations.c.expires_at, reservations.c.id)
                .limit(limit)
            )
        ]
        # All holds of the batch in one lock order, not reservation by reservation.
        work: list[tuple[_Key, int, int]] = []
        for reservation_id in due:
            work.extend(self._active_lines(reservation_id))
        for key, line_id, quantity in sorted(work, key=lambda e: (e[0].order, e[1])):
            self._end_line(key, line_id, quantity, status=ReservationStatus.EXPIRED, at=at)
        for reservation_id in due:
            self._set_status(reservation_id, ReservationStatus.EXPIRED, at)
        return len(due)

    # -- feeds -------------------------------------------------------------------------------------

    def safety_stock_defaults(self) -> Mapping[LocationType, int]:
        defaults = dict(DEFAULT_SAFETY_STOCK)
        for row in self._connection.execute(select(safety_stock_defaults)):
            defaults[LocationType(row.location_type)] = int(row.quantity)
        return defaults

    def set_safety_stock_default(
        self, location_type: LocationType, quantity: int, *, at: datetime
    ) -> int:
        if quantity < 0:
            raise Invalid("a safety stock default must be >= 0")
        self._connection.execute(
            insert_ignoring_conflicts(self._connection, safety_stock_defaults).values(
                location_type=location_type.value, quantity=quantity
            )
        )
        self._connection.execute(
            update(safety_stock_defaults)
            .where(safety_stock_defaults.c.location_type == location_type.value)
            .values(quantity=quantity)
        )
        location_ids = select(locations.c.id).where(locations.c.type == location_type.value)
        result = self._connection.execute(
            update(inventory_positions)
            .where(P.location_id.in_(location_ids), P.safety_stock_set.is_(False))
            .values(safety_stock=quantity, updated_at=at)
        )
        return int(result.rowcount)

    def _lock(self, keys: Sequence[_Key]) -> dict[tuple[int, int], Any]:
        """Current rows of these positions, locked for this transaction in (item, location)
        order (PostgreSQL locks rows in the ORDER BY order; SQLite writers hold the database)."""
        ordered = sorted({key.order for key in keys})
        if self._is_postgres:
            rows = self._connection.execute(
                _LOCK_BY_KEYS,
                {
                    "k_item_id": [item for item, _ in ordered],
                    "k_location_id": [location for _, location in ordered],
                },
            )
            return {(int(row.item_id), int(row.location_id)): row for row in rows}
        found: dict[tuple[int, int], Any] = {}
        for chunk in _chunks(ordered, 1000):
            query = (
                select(*_LOCKED)
                .where(tuple_(P.item_id, P.location_id).in_(list(chunk)))
                .order_by(P.item_id, P.location_id)
            )
            for row in self._connection.execute(query):
                found[(int(row.item_id), int(row.location_id))] = row
        return found

    def _create_positions(self, keys: Sequence[_Key], *, at: datetime) -> None:
        if not keys:
            return
        defaults = self.safety_stock_defaults()
        types = dict(
            self._connection.execute(
                select(locations.c.id, locations.c.type).where(
                    locations.c.id.in_(sorted({k.location_id for k in keys}))
                )
            ).all()
        )
        rows = [
            {
                "item_id": key.item_id,
                "location_id": key.location_id,
                "on_hand": 0,
                "allocated": 0,
                "reserved": 0,
                "blocked": 0,
                "safety_stock": defaults[LocationType(types[key.location_id])],
                "safety_stock_set": False,
                "updated_at": at,
            }
            for key in sorted(keys, key=lambda k: k.order)
        ]
        for chunk in _chunks(rows, 5000):
            self._connection.execute(
                insert_ignoring_conflicts(self._connection, inventory_positions), list(chunk)
            )

    def _movements(self, rows: list[dict[str, Any]]) -> None:
        for chunk in _chunks(rows, 5000):
            self._connection.execute(insert(inventory_movements), list(chunk))

    def apply_snapshot(
        self,
        lines: Sequence[SnapshotLine],
        *,
        as_of: datetime,
        sequence: int | None,
        source: str,
        at: datetime,
        record_events: bool = True,
    ) -> FeedOutcome:
        """Set-based: the batch goes into a temporary staging table (COPY on PostgreSQL, one
        ``executemany`` of plain tuples on SQLite) and a handful of statements compute, in SQL,
        which positions are stale, what each new on hand is (the count plus the movements
        recorded after ``as_of``), the positions, the journal and the changed rows."""
        outcome = FeedOutcome()
        wanted: dict[tuple[str, str], SnapshotLine] = {}
        for line in lines:
            wanted[(line.sku, line.location_code)] = line
        if not wanted:
            return outcome
        connection = self._connection
        self._stage(
            [(line.sku, line.location_code, line.on_hand, line.blocked) for line in wanted.values()]
        )
        s = _SNAPSHOT_STAGE.c
        position_of_stage = and_(P.item_id == s.item_id, P.location_id == s.location_id)
        # Unknown SKUs or locations refuse the whole batch (the unit of work rolls back).
        connection.execute(_RESOLVE_STAGE)
        unknown = connection.execute(select(s.sku, s.code).where(s.item_id.is_(None))).all()
        if unknown:
            skus = {row.sku for row in unknown}
            codes = {row.code for row in unknown}
            missing_skus = sorted(skus - set(self._existing(items.c.sku, skus)))
            missing_codes = sorted(codes - set(self._existing(locations.c.code, codes)))
            parts = []
            if missing_skus:
                parts.append(f"unknown SKU {', '.join(missing_skus[:10])}")
            if missing_codes:
                parts.append(f"unknown location {', '.join(missing_codes[:10])}")
            raise UnknownStock("; ".join(parts), skus=missing_skus, locations=missing_codes)
        if self._is_postgres:
            # A temporary table has no statistics: without them (taken once the ids are in)
            # the planner guesses how the batch joins the positions.
            connection.exec_driver_sql("ANALYZE oms_snapshot_stage")
        # Positions that exist are counted (locked, before and after), the others created
        # with their count. On PostgreSQL a position another transaction created in between
        # is not created twice: it is counted as an existing one on a second pass.
        counted = self._count_existing(as_of=as_of, sequence=sequence)
        created = self._create_counted(as_of=as_of, sequence=sequence, at=at)
        if counted + created < len(wanted):
            self._count_existing(as_of=as_of, sequence=sequence)
        fresh = s.stale == 0
        stale_rows = connection.execute(
            select(s.sku, s.code, P.snapshot_as_of, P.snapshot_sequence)
            .select_from(_SNAPSHOT_STAGE.join(inventory_positions, position_of_stage))
            .where(s.stale == 1)
            .order_by(s.item_id, s.location_id)
        ).all()
        for row in stale_rows:
            outcome.stale.append(
                {
                    "sku": row.sku,
                    "location": row.code,
                    "as_of": as_of.isoformat(),
                    "sequence": sequence,
                    "last_applied_as_of": row.snapshot_as_of.isoformat()
                    if row.snapshot_as_of
                    else None,
                    "last_applied_sequence": row.snapshot_sequence,
                }
            )
        # What each changed position reports: (item, location) for the order, then
        # SNAPSHOT_EVENT_FIELDS, old on hand and the item's low-stock threshold. Allocated,
        # reserved and safety stock are what they were: a count changes neither.
        kept = P.allocated + P.reserved + P.safety_stock
        atp_after = s.new_on_hand - s.new_blocked - kept
        atp_before = s.old_on_hand - s.old_blocked - kept
        report = (
            s.item_id,
            s.location_id,
            s.sku,
            s.code,
            s.new_on_hand,
            s.new_blocked,
            case((atp_after > 0, atp_after), else_=0),
            case((atp_before > 0, atp_before), else_=0),
            s.old_on_hand,
            items.c.low_stock_threshold,
            s.old_blocked,
        )
        set_counts = (
            update(inventory_positions)
            .where(position_of_stage, s.created.is_(None), fresh)
            .values(
                on_hand=s.new_on_hand,
                blocked=s.new_blocked,
                snapshot_as_of=as_of,
                snapshot_sequence=sequence,
                updated_at=at,
            )
        )
        reported = select(*report).select_from(
            _SNAPSHOT_STAGE.join(inventory_positions, position_of_stage).join(
                items, items.c.id == s.item_id
            )
        )
        if self._is_postgres:
            # The updated rows report themselves (RETURNING may name the joined tables); the
            # created ones are read.
            rows = list(
                connection.execute(
                    set_counts.where(items.c.id == s.item_id).returning(*report)
                ).all()
            )
            if created:
                rows.extend(connection.execute(reported.where(s.created == 1)).all())
            changed = sorted(
                (row for row in rows if row[4] != row[8] or row[5] != row[10]),
                key=lambda row: (row[0], row[1]),
            )
        else:
            connection.execute(set_counts)
            changed = list(
                connection.execute(
                    reported.where(
                        fresh, or_(s.new_on_hand != s.old_on_hand, s.new_blocked != s.old_blocked)
                    ).order_by(s.item_id, s.location_id)
                ).all()
            )
        moves = inventory_movements.c
        connection.execute(
            insert(inventory_movements).from_select(
                [
                    "item_id",
                    "location_id",
                    "kind",
                    "on_hand_change",
                    "reason",
                    "source",
                    "occurred_at",
                    "recorded_at",
                ],
                select(
                    s.item_id,
                    s.location_id,
                    literal("snapshot"),
                    s.new_on_hand - s.old_on_hand,
                    literal(f"count as of {as_of.isoformat()}"),
                    literal(source),
                    literal(as_of, type_=moves.occurred_at.type),
                    literal(at, type_=moves.recorded_at.type),
                )
                .where(fresh, s.new_on_hand != s.old_on_hand)
                .order_by(s.item_id, s.location_id),
            )
        )
        outcome.applied = len(changed)
        outcome.unchanged = len(wanted) - len(stale_rows) - len(changed)
        outcome.raised = {row[2] for row in changed if row[4] > row[8]}
        if record_events and changed:
            self._record(
                *snapshot_events(
                    [list(row[2:8]) for row in changed],
                    [int(row[9]) for row in changed],
                    source=source,
                    as_of=as_of,
                    sequence=sequence,
                )
            )
        return outcome

    def _count_existing(self, *, as_of: datetime, sequence: int | None) -> int:
        """Before and after, in the staging table, for the staged positions that exist and
        were not counted yet; returns how many. A count is stale when it is older than (or as
        old as) the last one applied: sequences decide when both sides have one, source times
        otherwise (domain.inventory.snapshot_is_stale)."""
        s = _SNAPSHOT_STAGE.c
        waiting = s.stale.is_(None)
        current: Any = inventory_positions
        if self._is_postgres:
            # Lock the positions in (item, location) order, as every other writer does, in
            # the statement that reads them.
            current = (
                select(*_COUNTED)
                .join(
                    _SNAPSHOT_STAGE,
                    and_(P.item_id == s.item_id, P.location_id == s.location_id, waiting),
                )
                .order_by(P.item_id, P.location_id)
                .with_for_update(of=inventory_positions)
                .subquery("current")
            )
        c = current.c
        older_time = and_(c.snapshot_as_of.is_not(None), c.snapshot_as_of >= as_of)
        stale = (
            older_time
            if sequence is None
            else or_(
                and_(c.snapshot_sequence.is_not(None), c.snapshot_sequence >= sequence),
                and_(c.snapshot_sequence.is_(None), older_time),
            )
        )
        moves = inventory_movements.c
        later = (
            select(func.coalesce(func.sum(moves.on_hand_change), 0))
            .where(
                moves.item_id == s.item_id,
                moves.location_id == s.location_id,
                moves.occurred_at > as_of,
                moves.kind != "snapshot",
            )
            .correlate(_SNAPSHOT_STAGE)
            .scalar_subquery()
        )
        counted = s.on_hand + case(
            (and_(c.last_movement_at.is_not(None), c.last_movement_at > as_of), later), else_=0
        )
        return self._connection.execute(
            update(_SNAPSHOT_STAGE)
            .where(c.item_id == s.item_id, c.location_id == s.location_id, waiting)
            .values(
                stale=case((stale, 1), else_=0),
                old_on_hand=c.on_hand,
                old_blocked=c.blocked,
                new_on_hand=case((counted < 0, 0), else_=counted),
                new_blocked=func.coalesce(s.blocked, c.blocked),
            )
        ).rowcount

    def _existing(self, column: Any, values: set[str]) -> list[str]:
        """Which of these SKUs or location codes exist (``column`` says which)."""
        found: list[str] = []
        for chunk in _chunks(sorted(values), 1000):
            found.extend(self._connection.scalars(select(column).where(column.in_(chunk))))
        return found

    def _create_counted(self, *, as_of: datetime, sequence: int | None, at: datetime) -> int:
        """The staged positions that do not exist (not counted by :meth:`_count_existing`)
        are created in lock order with their count and marked ``created``, with nothing
        before: they are not written twice, and their foreign keys are checked once. Returns
        how many."""
        connection = self._connection
        s = _SNAPSHOT_STAGE.c
        defaults = self.safety_stock_defaults()
        counted = {
            "created": 1,
            "stale": 0,
            "old_on_hand": 0,
            "old_blocked": 0,
            "new_on_hand": s.on_hand,
            "new_blocked": func.coalesce(s.blocked, 0),
        }
        rows = (
            select(
                s.item_id,
                s.location_id,
                s.on_hand,
                literal(0),
                literal(0),
                func.coalesce(s.blocked, 0),
                case(
                    {kind.value: quantity for kind, quantity in defaults.items()},
                    value=locations.c.type,
                    else_=0,
                ),
                false(),
                literal(as_of, type_=P.snapshot_as_of.type),
                literal(sequence, type_=P.snapshot_sequence.type),
                literal(at, type_=P.updated_at.type),
            )
            .select_from(_SNAPSHOT_STAGE.join(locations, locations.c.id == s.location_id))
            .where(s.stale.is_(None))
            .order_by(s.item_id, s.location_id)
        )
        create = insert_ignoring_conflicts(connection, inventory_positions)
        if self._is_postgres:
            # Only what this statement inserted is marked: a position another transaction
            # created meanwhile stays to be counted as an existing one.
            inserted = (
                create.from_select(_CREATED_COLUMNS, rows)
                .returning(P.item_id, P.location_id)
                .cte("inserted")
            )
            return connection.execute(
                update(_SNAPSHOT_STAGE)
                .add_cte(inserted)
                .where(s.item_id == inserted.c.item_id, s.location_id == inserted.c.location_id)
                .values(counted)
            ).rowcount
        # SQLite: this transaction holds the write lock, nobody else creates positions.
        connection.execute(create.from_select(_CREATED_COLUMNS, rows))
        return connection.execute(
            update(_SNAPSHOT_STAGE).where(s.stale.is_(None)).values(counted)
        ).rowcount

    def _stage(self, rows: list[tuple[str, str, int, int | None]]) -> None:
        """Load (sku, location code, on hand, blocked) rows into the empty staging table."""
        connection = self._connection
        dbapi = connection.connection.dbapi_connection
        assert dbapi is not None
        if self._is_postgres:
            connection.exec_driver_sql(_STAGE_DDL_POSTGRES)
            connection.exec_driver_sql("TRUNCATE oms_snapshot_stage")
            copy_in = "COPY oms_snapshot_stage (sku, code, on_hand, blocked) FROM STDIN"
            with dbapi.cursor() as cursor, cursor.copy(copy_in) as copy:  # type: ignore[attr-defined]
                for row in rows:
                    copy.write_row(row)
        else:
            connection.exec_driver_sql(_STAGE_DDL_SQLITE)
            cursor = dbapi.cursor()
            try:
                cursor.execute("DELETE FROM oms_snapshot_stage")
                cursor.executemany(
                    "INSERT INTO oms_snapshot_stage (sku, code, on_hand, blocked)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                )
            finally:
                cursor.close()

    def apply_deltas(self, deltas: Sequence[DeltaLine], *, at: datetime) -> FeedOutcome:
        outcome = FeedOutcome()
        keys = self._keys((d.sku, d.location_code) for d in deltas)
        # Claim every message first: a replay (same source and message id) changes nothing.
        fresh: list[DeltaLine] = []
        # Claimed in a fixed order, so two batches sharing messages cannot deadlock.
        for delta in sorted(deltas, key=lambda d: (d.source, d.message_id)):
            claimed = (
                self._connection.execute(
                    insert_ignoring_conflicts(self._connection, feed_messages)
                    .values(
                        source=delta.source,
                        message_id=delta.message_id,
                        kind=delta.kind.value,
                        outcome="applied",
                        received_at=at,
                    )
                    .returning(feed_messages.c.message_id)
                ).first()
                is not None
            )
            if claimed:
                fresh.append(delta)
            else:
                outcome.duplicates.append(
                    {
                        "source": delta.source,
                        "message_id": delta.message_id,
                        "sku": delta.sku,
                        "location": delta.location_code,
                    }
                )
        # Applied in the order the source sent them (clamping at 0 depends on it).
        order = {id(delta): index for index, delta in enumerate(deltas)}
        by_position: dict[tuple[str, str], list[DeltaLine]] = defaultdict(list)
        for delta in sorted(fresh, key=lambda d: order[id(d)]):
            by_position[(delta.sku, delta.location_code)].append(delta)
        touched = sorted({keys[pair] for pair in by_position}, key=lambda k: k.order)
        current = self._lock(touched)
        missing = [k for k in touched if k.order not in current]
        if missing:
            self._create_positions(missing, at=at)
            current.update(self._lock(missing))
        for key in touched:
            row = current[key.order]
            before = _position(key, row)
            on_hand = int(row.on_hand)
            last_movement = row.last_movement_at
            movements: list[dict[str, Any]] = []
            for delta in by_position[(key.sku, key.location_code)]:
                if row.snapshot_as_of is not None and delta.occurred_at <= row.snapshot_as_of:
                    # The count applied already includes this movement.
                    outcome.superseded.append(
                        {
                            "source": delta.source,
                            "message_id": delta.message_id,
                            "sku": delta.sku,
                            "location": delta.location_code,
                            "occurred_at": delta.occurred_at.isoformat(),
                            "snapshot_as_of": row.snapshot_as_of.isoformat(),
                        }
                    )
                    self._connection.execute(
                        update(feed_messages)
                        .where(
                            feed_messages.c.source == delta.source,
                            feed_messages.c.message_id == delta.message_id,
                        )
                        .values(outcome="superseded")
                    )
                    continue
                change = max(-on_hand, delta_change(delta.kind, delta.quantity))
                on_hand += change
                last_movement = (
                    delta.occurred_at
                    if last_movement is None
                    else max(last_movement, delta.occurred_at)
                )
                outcome.applied += 1
                movements.append(
                    {
                        "item_id": key.item_id,
                        "location_id": key.location_id,
                        "kind": delta.kind.value,
                        "on_hand_change": change,
                        "reason": delta.reason,
                        "source": delta.source,
                        "message_id": delta.message_id,
                        "occurred_at": delta.occurred_at,
                        "recorded_at": at,
                    }
                )
            if not movements:
                continue
            self._connection.execute(
                update(inventory_positions)
                .where(self._where(key))
                .values(on_hand=on_hand, last_movement_at=last_movement, updated_at=at)
            )
            self._movements(movements)
            after = Position(**{**before.__dict__, "on_hand": on_hand})
            outcome.changes.append(self._changed(key, "delta", before, after))
        return outcome

    def _locked_position(self, sku: str, location_code: str, *, at: datetime) -> tuple[_Key, Any]:
        key = self._keys([(sku, location_code)])[(sku, location_code)]
        current = self._lock([key])
        if key.order not in current:
            self._create_positions([key], at=at)
            current = self._lock([key])
        return key, current[key.order]

    def set_blocked(
        self, sku: str, location_code: str, *, blocked: int, at: datetime, reason: str
    ) -> PositionChange:
        if blocked < 0:
            raise Invalid("blocked must be >= 0")
        key, row = self._locked_position(sku, location_code, at=at)
        self._connection.execute(
            update(inventory_positions)
            .where(self._where(key))
            .values(blocked=blocked, updated_at=at)
        )
        before = _position(key, row)
        return self._changed(
            key, reason, before, Position(**{**before.__dict__, "blocked": blocked})
        )

    def set_safety_stock(
        self, sku: str, location_code: str, *, quantity: int | None, at: datetime
    ) -> PositionChange:
        if quantity is not None and quantity < 0:
            raise Invalid("safety stock must be >= 0")
        key, row = self._locked_position(sku, location_code, at=at)
        if quantity is None:
            location_type = self._connection.execute(
                select(locations.c.type).where(locations.c.id == key.location_id)
            ).scalar_one()
            value = self.safety_stock_defaults()[LocationType(location_type)]
        else:
            value = quantity
        self._connection.execute(
            update(inventory_positions)
            .where(self._where(key))
            .values(safety_stock=value, safety_stock_set=quantity is not None, updated_at=at)
        )
        before = _position(key, row)
        return self._changed(
            key, "safety stock", before, Position(**{**before.__dict__, "safety_stock": value})
        )

    # -- supply ------------------------------------------------------------------------------------

    def add_supply(self, lines: Sequence[SupplyLine], *, at: datetime) -> None:
        keys = self._keys((line.sku, line.location_code) for line in lines)
        for line in lines:
            key = keys[(line.sku, line.location_code)]
            self._connection.execute(
                insert_ignoring_conflicts(self._connection, supply_lines).values(
                    reference=line.reference,
                    kind=line.kind,
                    item_id=key.item_id,
                    location_id=key.location_id,
                    quantity=line.quantity,
                    expected_on=line.expected_on,
                    status=line.status,
                    created_at=at,
                    updated_at=at,
                )
            )
            self._connection.execute(
                update(supply_lines)
                .where(
                    supply_lines.c.reference == line.reference,
                    supply_lines.c.item_id == key.item_id,
                    supply_lines.c.location_id == key.location_id,
                )
                .values(
                    kind=line.kind,
                    quantity=line.quantity,
                    expected_on=line.expected_on,
                    status=line.status,
                    updated_at=at,
                )
            )

    def supply(
        self, skus: Sequence[str], *, location_codes: Sequence[str] | None = None
    ) -> list[SupplyLine]:
        s = supply_lines.c
        query = (
            select(
                s.reference,
                s.kind,
                items.c.sku,
                locations.c.code,
                s.quantity,
                s.expected_on,
                s.status,
            )
            .select_from(
                supply_lines.join(items, items.c.id == s.item_id).join(
                    locations, locations.c.id == s.location_id
                )
            )
            .where(items.c.sku.in_(list(skus)), s.status.in_(["open", "in_transit"]))
            .order_by(s.expected_on, s.reference)
        )
        if location_codes is not None:
            query = query.where(locations.c.code.in_(list(location_codes)))
        return [
            SupplyLine(
                reference=row.reference,
                kind=row.kind,
                sku=row.sku,
                location_code=row.code,
                quantity=int(row.quantity),
                expected_on=row.expected_on,
                status=row.status,
            )
            for row in self._connection.execute(query)
        ]

    def movement_totals(self, skus: Sequence[str]) -> dict[tuple[str, str], int]:
        moves = inventory_movements.c
        rows = self._connection.execute(
            select(items.c.sku, locations.c.code, func.sum(moves.on_hand_change).label("total"))
            .select_from(
                inventory_movements.join(items, items.c.id == moves.item_id).join(
                    locations, locations.c.id == moves.location_id
                )
            )
            .where(items.c.sku.in_(list(skus)))
            .group_by(items.c.sku, locations.c.code)
        )
        return {(row.sku, row.code): int(row.total) for row in rows}


__all__ = [
    "DEFAULT_LOW_STOCK_THRESHOLD",
    "SqlInventoryRepository",
    "SqlItemRepository",
    "SqlLocationRepository",
    "insert_ignoring_conflicts",
]
