"""What the sourcing engine reads: a snapshot of candidate locations and the lines to source.

The engine takes plain data so that it can run at order capture, in a batch wave, in a "what if"
simulation and in the benchmark alike. :class:`Network` compiles the snapshot into arrays (one
slot per location) so that a decision over 500 locations stays well under a millisecond; the
arrays are the engine's working copy: planning an order takes its units and capacity from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from oms.domain.errors import Invalid

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

EARTH_RADIUS_KM = 6371.0088


class LocationType(StrEnum):
    DC = "dc"
    STORE = "store"
    DARK_STORE = "dark_store"
    VENDOR = "vendor"
    THIRD_PARTY = "3pl"
    LOCKER = "locker"


class LocationStatus(StrEnum):
    ACTIVE = "active"
    OFFLINE = "offline"
    DARK = "dark"
    CLOSED = "closed"


class Capability(StrEnum):
    SHIP = "ship"
    PICKUP = "pickup"
    CURBSIDE = "curbside"
    RECEIVE_TRANSFER = "receive_transfer"
    ACCEPT_RETURNS = "accept_returns"


class DeliveryMethod(StrEnum):
    SHIP = "ship"
    PICKUP = "pickup"
    CURBSIDE = "curbside"
    RESERVE_AND_COLLECT = "reserve_and_collect"
    SHIP_TO_STORE = "ship_to_store"
    DROPSHIP = "dropship"


COLLECTED_AT_LOCATION = frozenset(
    {DeliveryMethod.PICKUP, DeliveryMethod.CURBSIDE, DeliveryMethod.RESERVE_AND_COLLECT}
)
"""The customer collects at the chosen location itself: it is the only possible source."""

WALK_IN = frozenset(
    {DeliveryMethod.PICKUP, DeliveryMethod.CURBSIDE, DeliveryMethod.RESERVE_AND_COLLECT}
)
"""Methods that serve the customer at the location; a ``dark`` location serves no customers
(as ``LocationStatus.serves_customers`` in :mod:`oms.domain.locations` says), only ships."""

REQUIRED_CAPABILITY: Mapping[DeliveryMethod, Capability] = {
    DeliveryMethod.SHIP: Capability.SHIP,
    DeliveryMethod.DROPSHIP: Capability.SHIP,
    DeliveryMethod.SHIP_TO_STORE: Capability.SHIP,
    DeliveryMethod.PICKUP: Capability.PICKUP,
    DeliveryMethod.RESERVE_AND_COLLECT: Capability.PICKUP,
    DeliveryMethod.CURBSIDE: Capability.CURBSIDE,
}

DEFAULT_TYPES: Mapping[DeliveryMethod, frozenset[LocationType]] = {
    DeliveryMethod.SHIP: frozenset(
        {LocationType.DC, LocationType.STORE, LocationType.DARK_STORE, LocationType.THIRD_PARTY}
    ),
    DeliveryMethod.DROPSHIP: frozenset({LocationType.VENDOR}),
    DeliveryMethod.SHIP_TO_STORE: frozenset({LocationType.DC, LocationType.THIRD_PARTY}),
    DeliveryMethod.PICKUP: frozenset({LocationType.STORE, LocationType.DARK_STORE}),
    DeliveryMethod.RESERVE_AND_COLLECT: frozenset({LocationType.STORE, LocationType.DARK_STORE}),
    DeliveryMethod.CURBSIDE: frozenset({LocationType.STORE, LocationType.DARK_STORE}),
}
"""Location types that can serve a method when a profile does not name its own."""


class SourcingInputInvalid(Invalid):
    slug = "sourcing-input-invalid"
    title = "The sourcing input is not valid"


@dataclass(frozen=True, slots=True)
class GeoPoint:
    latitude: float
    longitude: float

    def __post_init__(self) -> None:
        if not (-90.0 <= self.latitude <= 90.0 and -180.0 <= self.longitude <= 180.0):
            raise SourcingInputInvalid(f"({self.latitude}, {self.longitude}) is not on Earth")


@dataclass(frozen=True, slots=True)
class CandidateLocation:
    """One location as the engine sees it at the moment of the decision."""

    code: str
    type: LocationType
    status: LocationStatus
    capabilities: frozenset[Capability]
    point: GeoPoint
    atp: Mapping[str, int]
    """Available to promise per SKU, after safety stock and other buffers."""
    remaining_capacity: int | None = None
    """Units the location can still fulfill today (None: no limit)."""
    handling_cost: Decimal = Decimal("0")
    """Cost of picking and packing one unit there."""
    pick_hours: float = 2.0
    cut_off_hour: float = 24.0
    """Hour of day (UTC) by which a picked parcel must be ready to leave the same day."""
    priority: int = 0
    """Store ranking: 0 is the most wanted, higher numbers cost more (store_priority term)."""
    region: str = ""


@dataclass(frozen=True, slots=True)
class SourcingLine:
    line_id: str
    sku: str
    quantity: int
    delivery_method: DeliveryMethod
    destination: GeoPoint | None = None
    pickup_location: str | None = None
    """The store the customer collects at (pickup, curbside, reserve and collect, ship to store)."""
    weight_kg: float = 1.0
    ship_alone: bool = False
    hazmat: bool = False
    pickup_allowed: bool = True
    ship_from_store_allowed: bool = True

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise SourcingInputInvalid(f"line {self.line_id}: quantity must be positive")
        if self.weight_kg < 0:
            raise SourcingInputInvalid(f"line {self.line_id}: weight must not be negative")
        needs_store = self.delivery_method in COLLECTED_AT_LOCATION or (
            self.delivery_method is DeliveryMethod.SHIP_TO_STORE
        )
        if needs_store and not self.pickup_location:
            raise SourcingInputInvalid(
                f"line {self.line_id}: {self.delivery_method} needs a pickup location"
            )
        if not needs_store and self.destination is None:
            raise SourcingInputInvalid(
                f"line {self.line_id}: {self.delivery_method} needs a destination"
            )


@dataclass(frozen=True, slots=True)
class SourcingOrder:
    order_id: str
    channel: str
    lines: tuple[SourcingLine, ...]
    placed_at: datetime
    order_value: Decimal = Decimal("0")
    promise_on: date | None = None
    destination_region: str = ""
    refused: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Re-planning input: line id -> locations that refused (rejected, short-picked) it."""

    def __post_init__(self) -> None:
        if not self.lines:
            raise SourcingInputInvalid(f"order {self.order_id} has no lines to source")
        if self.placed_at.tzinfo is None:
            raise SourcingInputInvalid("placed_at must be timezone-aware")
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise SourcingInputInvalid(f"order {self.order_id} repeats a line id")


_TYPE_CODES = {t: i for i, t in enumerate(LocationType)}
_STATUS_CODES = {s: i for i, s in enumerate(LocationStatus)}


class Network:
    """The candidate locations compiled into arrays; the planner's working copy of ATP/capacity."""

    def __init__(self, locations: Iterable[CandidateLocation]) -> None:
        self.locations: tuple[CandidateLocation, ...] = tuple(locations)
        codes = [location.code for location in self.locations]
        if len(set(codes)) != len(codes):
            raise SourcingInputInvalid("a location code appears twice in the snapshot")
        self.codes: tuple[str, ...] = tuple(codes)
        self.index: dict[str, int] = {code: i for i, code in enumerate(codes)}
        n = len(codes)
        self.size = n
        self.latitude_rad: FloatArray = np.radians([loc.point.latitude for loc in self.locations])
        self.longitude_rad: FloatArray = np.radians([loc.point.longitude for loc in self.locations])
        self.cos_latitude: FloatArray = np.cos(self.latitude_rad)
        self.type_code: IntArray = np.array(
            [_TYPE_CODES[loc.type] for loc in self.locations], dtype=np.int64
        )
        self.status_code: IntArray = np.array(
            [_STATUS_CODES[loc.status] for loc in self.locations], dtype=np.int64
        )
        self.capable: dict[Capability, BoolArray] = {
            capability: np.array(
                [capability in loc.capabilities for loc in self.locations], dtype=np.bool_
            )
            for capability in Capability
        }
        self.handling_cost: FloatArray = np.array(
            [float(loc.handling_cost) for loc in self.locations], dtype=np.float64
        )
        self.pick_hours: FloatArray = np.array(
            [loc.pick_hours for loc in self.locations], dtype=np.float64
        )
        self.cut_off_hour: FloatArray = np.array(
            [loc.cut_off_hour for loc in self.locations], dtype=np.float64
        )
        self.priority: FloatArray = np.array(
            [loc.priority for loc in self.locations], dtype=np.float64
        )
        self.capacity: FloatArray = np.array(
            [
                math.inf if loc.remaining_capacity is None else loc.remaining_capacity
                for loc in self.locations
            ],
            dtype=np.float64,
        )
        skus = sorted({sku for loc in self.locations for sku in loc.atp})
        self._atp: dict[str, FloatArray] = {}
        for sku in skus:
            self._atp[sku] = np.array(
                [max(0, loc.atp.get(sku, 0)) for loc in self.locations], dtype=np.float64
            )
        self._initial_atp = {sku: values.copy() for sku, values in self._atp.items()}
        self._zeros: FloatArray = np.zeros(n, dtype=np.float64)
        self._zeros.setflags(write=False)
        self._type_masks: dict[frozenset[LocationType], BoolArray] = {}
        self._bid_prices: dict[str, FloatArray] = {}
        self._bid_price_default: FloatArray = self._zeros

    # -- the opportunity cost of stock ---------------------------------------------------------

    def set_bid_prices(
        self,
        stock: Mapping[str, Mapping[str, float]],
        capacity: Mapping[str, float] | None = None,
    ) -> None:
        """The opportunity cost of one unit: per SKU and location code (``stock``) plus per
        location whatever SKU (``capacity``: a unit of today's remaining capacity), see
        :mod:`oms.domain.sourcing.bid_prices`. Replaces the previous table; unknown codes are
        ignored; copies made before keep theirs."""
        per_location = np.zeros(self.size, dtype=np.float64)
        for code, price in (capacity or {}).items():
            index = self.index.get(code)
            if index is not None and price > 0:
                per_location[index] = float(price)
        table: dict[str, FloatArray] = {}
        for sku, by_code in stock.items():
            values = per_location.copy()
            for code, price in by_code.items():
                index = self.index.get(code)
                if index is not None and price > 0:
                    values[index] += float(price)
            if values.any():
                values.setflags(write=False)
                table[sku] = values
        per_location.setflags(write=False)
        self._bid_prices = table
        self._bid_price_default = per_location if per_location.any() else self._zeros

    def bid_price(self, sku: str) -> FloatArray:
        """What one unit of ``sku`` is worth to later orders, per location (0: not scarce)."""
        return self._bid_prices.get(sku, self._bid_price_default)

    @property
    def has_bid_prices(self) -> bool:
        return bool(self._bid_prices) or self._bid_price_default is not self._zeros

    # -- reading -------------------------------------------------------------------------------

    def atp(self, sku: str) -> FloatArray:
        """Current ATP of ``sku`` per location (read-only view for unknown SKUs)."""
        return self._atp.get(sku, self._zeros)

    def initial_atp(self, sku: str) -> FloatArray:
        return self._initial_atp.get(sku, self._zeros)

    def skus(self) -> Sequence[str]:
        return list(self._atp)

    def types_mask(self, types: frozenset[LocationType]) -> BoolArray:
        mask = self._type_masks.get(types)
        if mask is None:
            codes = [_TYPE_CODES[t] for t in types]
            mask = np.isin(self.type_code, codes)
            self._type_masks[types] = mask
        return mask

    def is_type(self, location_type: LocationType) -> BoolArray:
        return self.types_mask(frozenset({location_type}))

    def status_is(self, status: LocationStatus) -> BoolArray:
        result: BoolArray = self.status_code == _STATUS_CODES[status]
        return result

    def distance_km(self, point: GeoPoint) -> FloatArray:
        """Great-circle (haversine) distance from every location to ``point``."""
        lat = math.radians(point.latitude)
        lon = math.radians(point.longitude)
        half_dlat = (self.latitude_rad - lat) * 0.5
        half_dlon = (self.longitude_rad - lon) * 0.5
        a = np.sin(half_dlat) ** 2 + self.cos_latitude * math.cos(lat) * np.sin(half_dlon) ** 2
        result: FloatArray = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))
        return result

    # -- the working copy ---------------------------------------------------------------------

    def take(self, location_index: int, sku: str, quantity: int) -> None:
        """Consume ATP and capacity for an allocation the planner made."""
        values = self._atp.get(sku)
        if values is None or values[location_index] < quantity:
            raise SourcingInputInvalid(
                f"{self.codes[location_index]} has not {quantity} of {sku} left to take"
            )
        values[location_index] -= quantity
        self.capacity[location_index] -= quantity

    def set_available(self, location_index: int, sku: str, units: float) -> None:
        """Overwrite the working ATP of ``sku`` at one location (kept in step with another
        network planned on the same stock, e.g. one per channel buffer)."""
        values = self._atp.get(sku)
        if values is not None:
            values[location_index] = max(0.0, units)

    def copy(self) -> Network:
        clone = Network.__new__(Network)
        clone.__dict__.update(self.__dict__)
        clone._atp = {sku: values.copy() for sku, values in self._atp.items()}
        clone.capacity = self.capacity.copy()
        return clone

    def adopt(self, other: Network) -> None:
        """Take over the working state (ATP, capacity) of a copy that was planned on."""
        for sku, values in other._atp.items():
            self._atp[sku][:] = values
        self.capacity[:] = other.capacity

    def with_status(self, changes: Mapping[str, LocationStatus]) -> Network:
        """A copy in which some locations have another status (outage simulations)."""
        unknown = sorted(set(changes) - set(self.index))
        if unknown:
            raise SourcingInputInvalid(f"unknown location(s) {', '.join(unknown)}")
        clone = self.copy()
        clone.status_code = self.status_code.copy()
        for code, status in changes.items():
            clone.status_code[self.index[code]] = _STATUS_CODES[status]
        return clone
