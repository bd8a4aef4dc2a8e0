"""Locations of the fulfillment network: what they are, what they can do and when they work."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from oms.domain.errors import Conflict, Invalid, NotFound

E = TypeVar("E", bound=StrEnum)


class LocationType(StrEnum):
    DC = "dc"
    STORE = "store"
    DARK_STORE = "dark_store"
    VENDOR = "vendor"
    THIRD_PARTY_LOGISTICS = "3pl"
    LOCKER = "locker"


class Capability(StrEnum):
    SHIP = "ship"
    PICKUP = "pickup"
    CURBSIDE = "curbside"
    RECEIVE_TRANSFER = "receive_transfer"
    ACCEPT_RETURNS = "accept_returns"


class LocationStatus(StrEnum):
    ACTIVE = "active"
    OFFLINE = "offline"
    """Fulfills nothing (system down, stock count, flood)."""
    DARK = "dark"
    """Fulfills orders but serves no walk-in customers (no pickup or curbside)."""
    CLOSED = "closed"

    @property
    def fulfills(self) -> bool:
        return self in (LocationStatus.ACTIVE, LocationStatus.DARK)

    @property
    def serves_customers(self) -> bool:
        return self is LocationStatus.ACTIVE


class CapacityUnit(StrEnum):
    ORDERS = "orders"
    UNITS = "units"


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

OpeningHours = Mapping[str, Sequence[tuple[time, time]]]
"""Per weekday (``mon`` .. ``sun``), the local opening intervals; a missing day is closed."""


class LocationNotFound(NotFound):
    slug = "location-not-found"
    title = "No such location"


class LocationExists(Conflict):
    slug = "location-exists"
    title = "A location with this code exists already"


class LocationUnavailable(Conflict):
    """The location's status or capabilities do not allow this (offline, closed, no pickup...)."""

    slug = "location-unavailable"
    title = "The location cannot do this now"


class CapacityExhausted(Conflict):
    slug = "capacity-exhausted"
    title = "The location has no capacity left on that day"


def parse_clock_time(value: str, *, pointer: str) -> time:
    match = _HHMM.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise Invalid(
            f"'{value}' is not a time of day HH:MM",
            errors=[{"pointer": pointer, "detail": "HH:MM"}],
        )
    return time(int(match.group(1)), int(match.group(2)))


def parse_opening_hours(raw: Mapping[str, Any] | None) -> dict[str, list[tuple[time, time]]]:
    """``{"mon": [["09:00", "18:00"]], ...}`` (or ``"09:00-18:00"`` strings) into times."""
    hours: dict[str, list[tuple[time, time]]] = {}
    for day, intervals in (raw or {}).items():
        key = str(day).strip().lower()[:3]
        if key not in WEEKDAYS:
            raise Invalid(
                f"unknown weekday '{day}' in opening hours; use mon..sun",
                errors=[{"pointer": f"#/opening_hours/{day}", "detail": "unknown weekday"}],
            )
        if isinstance(intervals, str):
            intervals = [part.split("-") for part in intervals.split(",") if part.strip()]
        parsed: list[tuple[time, time]] = []
        for index, interval in enumerate(intervals or []):
            pointer = f"#/opening_hours/{day}/{index}"
            if len(interval) != 2:
                raise Invalid(
                    "an opening interval is [open, close]",
                    errors=[{"pointer": pointer, "detail": "expected [HH:MM, HH:MM]"}],
                )
            opens = parse_clock_time(str(interval[0]), pointer=pointer)
            closes = parse_clock_time(str(interval[1]), pointer=pointer)
            if closes <= opens:
                raise Invalid(
                    f"opening interval {opens:%H:%M}-{closes:%H:%M} closes before it opens",
                    errors=[{"pointer": pointer, "detail": "closes before it opens"}],
                )
            parsed.append((opens, closes))
        hours[key] = sorted(parsed)
    return hours


def opening_hours_json(hours: OpeningHours) -> dict[str, list[list[str]]]:
    return {
        day: [[f"{o:%H:%M}", f"{c:%H:%M}"] for o, c in hours[day]]
        for day in WEEKDAYS
        if day in hours
    }


@dataclass(frozen=True)
class Location:
    code: str
    name: str
    type: LocationType
    latitude: float
    longitude: float
    timezone: str = "UTC"
    status: LocationStatus = LocationStatus.ACTIVE
    capabilities: frozenset[Capability] = frozenset({Capability.SHIP})
    address: Mapping[str, str] = field(default_factory=dict)
    daily_capacity: int | None = None
    """None: unlimited."""
    capacity_unit: CapacityUnit = CapacityUnit.ORDERS
    handling_cost: Decimal = Decimal("0")
    currency: str = "USD"
    pick_minutes: int = 60
    cutoff_time: time | None = None
    """Local time after which today's orders ship the next working day; None: no cut-off."""
    opening_hours: OpeningHours = field(default_factory=dict)
    """Empty: always open (a DC working around the clock)."""

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def holds_stock(self) -> bool:
        return self.type is not LocationType.LOCKER


def validate_location(location: Location) -> Location:
    """Raise :class:`Invalid` listing every bad field; return the location when it is sound."""
    errors: list[dict[str, str]] = []
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}", location.code or ""):
        errors.append({"pointer": "#/code", "detail": "1-64 letters, digits, '.', '_' or '-'"})
    if not location.name.strip():
        errors.append({"pointer": "#/name", "detail": "empty"})
    if not -90 <= location.latitude <= 90 or math.isnan(location.latitude):
        errors.append({"pointer": "#/latitude", "detail": "must be between -90 and 90"})
    if not -180 <= location.longitude <= 180 or math.isnan(location.longitude):
        errors.append({"pointer": "#/longitude", "detail": "must be between -180 and 180"})
    try:
        ZoneInfo(location.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(
            {"pointer": "#/timezone", "detail": f"unknown time zone '{location.timezone}'"}
        )
    if location.daily_capacity is not None and location.daily_capacity < 0:
        errors.append({"pointer": "#/daily_capacity", "detail": "must be >= 0"})
    if location.handling_cost < 0:
        errors.append({"pointer": "#/handling_cost", "detail": "must be >= 0"})
    if not re.fullmatch(r"[A-Z]{3}", location.currency):
        errors.append({"pointer": "#/currency", "detail": "ISO 4217 code, e.g. USD"})
    if not 0 <= location.pick_minutes <= 7 * 24 * 60:
        errors.append({"pointer": "#/pick_minutes", "detail": "between 0 and 10080"})
    if location.type is LocationType.LOCKER and (
        location.can(Capability.SHIP) or location.can(Capability.CURBSIDE)
    ):
        errors.append({"pointer": "#/capabilities", "detail": "a locker holds no stock to ship"})
    if errors:
        raise Invalid(f"location '{location.code}' is not valid", errors=errors)
    return location


def parse_enum(enum: type[E], value: Any, *, pointer: str) -> E:
    try:
        return enum(str(value).strip().lower())
    except ValueError:
        raise Invalid(
            f"'{value}' is not one of {', '.join(e.value for e in enum)}",
            errors=[{"pointer": pointer, "detail": f"one of {', '.join(e.value for e in enum)}"}],
        ) from None


def parse_capabilities(values: Iterable[Any]) -> frozenset[Capability]:
    return frozenset(
        parse_enum(Capability, value, pointer=f"#/capabilities/{index}")
        for index, value in enumerate(values)
    )


EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlambda = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


GeoPoints = npt.NDArray[np.float64]
"""Points prepared for :func:`distances_km`: rows of latitudes in radians, their cosines and
longitudes in radians."""


def geo_points(coordinates: Iterable[tuple[float, float]]) -> GeoPoints:
    latitudes, longitudes = np.array(list(coordinates), dtype=np.float64).reshape(-1, 2).T
    phi = np.radians(latitudes)
    return np.stack([phi, np.cos(phi), np.radians(longitudes)])


def distance_array_km(latitude: float, longitude: float, points: GeoPoints) -> GeoPoints:
    """:func:`haversine_km` from one point to many prepared ones, computed for all at once:
    availability measures the distance to every candidate location on every call."""
    phi1 = math.radians(latitude)
    half_sines = np.sin((points[0] - phi1) / 2) ** 2 + math.cos(phi1) * points[1] * (
        np.sin((points[2] - math.radians(longitude)) / 2) ** 2
    )
    distances: GeoPoints = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(half_sines)))
    return distances


def distances_km(latitude: float, longitude: float, points: GeoPoints) -> list[float]:
    """:func:`distance_array_km` as a list of floats."""
    listed: list[float] = distance_array_km(latitude, longitude, points).tolist()
    return listed
