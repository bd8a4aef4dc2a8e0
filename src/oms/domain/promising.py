"""Promise dates: when a location can have a line ready, and when it reaches the customer.

The transit model is a port: :class:`DistanceTransitModel` is a simple distance-based stand-in
that a carrier-rate or zone-table model can replace (anything with ``transit_days``).

:class:`Candidates` and its functions rank the locations that can serve a basket's lines over
arrays, one slot per candidate location: a basket over 500 locations weighs thousands of
positions, which a loop in Python over dictionaries makes cost milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Protocol

import numpy as np
import numpy.typing as npt

from oms.domain.locations import WEEKDAYS, Location, LocationType

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class DeliveryMethod(StrEnum):
    SHIP = "ship"
    PICKUP = "pickup"
    CURBSIDE = "curbside"
    RESERVE_AND_COLLECT = "reserve_and_collect"
    SHIP_TO_STORE = "ship_to_store"
    DROPSHIP = "dropship"

    @property
    def is_collection(self) -> bool:
        return self in (
            DeliveryMethod.PICKUP,
            DeliveryMethod.CURBSIDE,
            DeliveryMethod.RESERVE_AND_COLLECT,
        )


class TransitModel(Protocol):
    def transit_days(self, *, distance_km: float) -> int: ...


@dataclass(frozen=True)
class DistanceTransitModel:
    """``base_days`` plus one day per ``km_per_day`` started (ground parcel rule of thumb)."""

    base_days: int = 1
    km_per_day: float = 800.0

    def transit_days(self, *, distance_km: float) -> int:
        return self.base_days + int(max(0.0, distance_km) // self.km_per_day)


@dataclass(frozen=True)
class Promise:
    location_code: str
    ready_at: datetime
    """When the units are picked and ready (UTC)."""
    ship_on: date | None
    """Local date the parcel leaves (None for collection)."""
    deliver_on: date
    """Date the customer gets it (ship) or can collect it (pickup), in the location's zone."""
    distance_km: float | None


def _next_open(location: Location, moment: datetime) -> datetime:
    """The first moment at or after ``moment`` (local) when the location is open."""
    if not location.opening_hours:
        return moment
    for day_offset in range(8):
        day = (moment + timedelta(days=day_offset)).date()
        intervals = location.opening_hours.get(WEEKDAYS[day.weekday()], ())
        for opens, closes in intervals:
            start = datetime.combine(day, opens, tzinfo=moment.tzinfo)
            end = datetime.combine(day, closes, tzinfo=moment.tzinfo)
            if day_offset == 0 and moment >= end:
                continue
            return max(start, moment) if day_offset == 0 else start
    return moment  # open on no day at all: treat as always open rather than never


def earliest_promise(
    location: Location,
    *,
    now: datetime,
    method: DeliveryMethod,
    transit: TransitModel,
    distance_km: float | None = None,
) -> Promise:
    local_now = now.astimezone(location.zone)
    start = _next_open(location, local_now)
    if (
        not method.is_collection
        and location.cutoff_time is not None
        and start.date() == local_now.date()
        and start.time() > location.cutoff_time
    ):
        tomorrow = datetime.combine(
            local_now.date() + timedelta(days=1), datetime.min.time(), tzinfo=local_now.tzinfo
        )
        start = _next_open(location, tomorrow)
    ready = start + timedelta(minutes=location.pick_minutes)
    if method.is_collection:
        return Promise(
            location_code=location.code,
            ready_at=ready.astimezone(now.tzinfo),
            ship_on=None,
            deliver_on=ready.date(),
            distance_km=distance_km,
        )
    days = transit.transit_days(distance_km=distance_km or 0.0)
    return Promise(
        location_code=location.code,
        ready_at=ready.astimezone(now.tzinfo),
        ship_on=ready.date(),
        deliver_on=ready.date() + timedelta(days=days),
        distance_km=distance_km,
    )


@dataclass(frozen=True)
class Candidates:
    """The locations that may serve a delivery method, in a fixed order: slot ``i`` of every
    array about them (units, distances, masks) is ``locations[i]``."""

    locations: tuple[Location, ...]
    codes: tuple[str, ...] = field(init=False)
    slots: dict[str, int] = field(init=False)
    code_rank: IntArray = field(init=False)
    """Rank of each slot's code in code order: the last tie-break, as when sorting by code."""
    is_store: BoolArray = field(init=False)
    """Stores and dark stores (an item may be barred from shipping from them)."""
    capped: tuple[int, ...] = field(init=False)
    """Slots of the locations with a daily capacity."""

    def __post_init__(self) -> None:
        codes = tuple(location.code for location in self.locations)
        rank = np.empty(len(codes), dtype=np.int64)
        rank[sorted(range(len(codes)), key=codes.__getitem__)] = np.arange(len(codes))
        stores = (LocationType.STORE, LocationType.DARK_STORE)
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "slots", {code: n for n, code in enumerate(codes)})
        object.__setattr__(self, "code_rank", rank)
        object.__setattr__(
            self,
            "capped",
            tuple(
                n
                for n, location in enumerate(self.locations)
                if location.daily_capacity is not None
            ),
        )
        object.__setattr__(
            self,
            "is_store",
            np.array([location.type in stores for location in self.locations], dtype=np.bool_),
        )


def rank_sources(
    units: IntArray,
    *,
    usable: BoolArray,
    distances: FloatArray,
    code_rank: IntArray,
    quantity: int,
    limit: int,
) -> tuple[int, IntArray]:
    """A line's network ATP over the ``usable`` slots holding stock, and its best ``limit``
    sources (slots), best first: those that can serve the whole quantity, then the nearest,
    then the most units, then by code."""
    slots = np.flatnonzero(usable & (units > 0))
    held = units[slots]
    available = int(held.sum())
    order = np.lexsort((code_rank[slots], -held, distances[slots], held < quantity))
    return available, slots[order[: max(0, limit)]]


def whole_basket_slots(
    units: Sequence[IntArray],
    quantities: Sequence[int],
    *,
    serving: Sequence[BoolArray],
    distances: FloatArray,
    code_rank: IntArray,
    limit: int,
) -> IntArray:
    """The slots that hold every line's quantity on their own and may serve every line
    (``serving``: per line, the slots allowed to serve it), nearest first (then by code), at
    most ``limit``."""
    whole = np.ones(len(code_rank), dtype=np.bool_)
    for line_units, quantity, allowed in zip(units, quantities, serving, strict=True):
        whole &= allowed & (line_units >= quantity) & (line_units > 0)
    slots = np.flatnonzero(whole)
    order = np.lexsort((code_rank[slots], distances[slots]))
    return slots[order[: max(0, limit)]]
