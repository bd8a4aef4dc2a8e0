"""Promise dates: when a location can have a line ready, and when it reaches the customer.

The transit model is a port: :class:`DistanceTransitModel` is a simple distance-based stand-in
that a carrier-rate or zone-table model can replace (anything with ``transit_days``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from oms.domain.locations import WEEKDAYS, Location


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
