"""Turning loose records (JSON bodies, CSV rows) into locations, items and stock lines.

Every parser collects *all* problems of a record as ``{"pointer", "detail"}`` entries, so that an
import can report every bad row and why, and an API call every bad field.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from oms.domain.errors import Invalid
from oms.domain.items import DEFAULT_LOW_STOCK_THRESHOLD, Item, validate_item
from oms.domain.locations import (
    Capability,
    CapacityUnit,
    Location,
    LocationStatus,
    LocationType,
    parse_clock_time,
    parse_opening_hours,
    validate_location,
)

T = TypeVar("T")
FieldErrors = list[dict[str, str]]


class _Collector:
    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record
        self.errors: FieldErrors = []

    def raw(self, name: str) -> Any:
        value = self.record.get(name)
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    def text(self, name: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                self.errors.append({"pointer": f"#/{name}", "detail": "required"})
            return default
        return str(value)

    def integer(
        self, name: str, *, default: int | None = None, minimum: int | None = 0
    ) -> int | None:
        value = self.raw(name)
        if value is None:
            return default
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            number = int(value)
        except (TypeError, ValueError):
            self.errors.append(
                {"pointer": f"#/{name}", "detail": f"'{value}' is not a whole number"}
            )
            return default
        if minimum is not None and number < minimum:
            self.errors.append({"pointer": f"#/{name}", "detail": f"must be >= {minimum}"})
            return default
        return number

    def number(self, name: str, *, required: bool = False) -> float | None:
        value = self.raw(name)
        if value is None:
            if required:
                self.errors.append({"pointer": f"#/{name}", "detail": "required"})
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            self.errors.append({"pointer": f"#/{name}", "detail": f"'{value}' is not a number"})
            return None

    def decimal(self, name: str, *, default: Decimal) -> Decimal:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, float):
            self.errors.append({"pointer": f"#/{name}", "detail": "give money as a string"})
            return default
        try:
            return Decimal(str(value))
        except InvalidOperation:
            self.errors.append({"pointer": f"#/{name}", "detail": f"'{value}' is not a decimal"})
            return default

    def flag(self, name: str, *, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("1", "true", "yes", "y", "t"):
            return True
        if text in ("0", "false", "no", "n", "f"):
            return False
        self.errors.append({"pointer": f"#/{name}", "detail": f"'{value}' is not true/false"})
        return default

    def choice(self, name: str, enum: type[Any], *, default: Any) -> Any:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return enum(str(value).lower())
        except ValueError:
            options = ", ".join(e.value for e in enum)
            self.errors.append({"pointer": f"#/{name}", "detail": f"'{value}': one of {options}"})
            return default

    def listing(self, name: str) -> list[str] | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, str):
            return [part.strip() for part in value.replace("|", ";").split(";") if part.strip()]
        if isinstance(value, list | tuple):
            return [str(part) for part in value]
        self.errors.append({"pointer": f"#/{name}", "detail": "a list"})
        return None

    def timestamp(self, name: str, *, default: datetime | None = None) -> datetime | None:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, datetime):
            moment = value
        else:
            try:
                moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                self.errors.append({"pointer": f"#/{name}", "detail": f"'{value}' is not ISO 8601"})
                return default
        if moment.tzinfo is None:
            self.errors.append({"pointer": f"#/{name}", "detail": "needs a time zone offset"})
            return default
        return moment.astimezone(UTC)

    def validate(self, check: Callable[[], object]) -> None:
        """Run a whole-object check; keep its findings for fields not already reported."""
        try:
            check()
        except Invalid as error:
            reported = {
                e["pointer"].split("/")[1] if "/" in e["pointer"] else "" for e in self.errors
            }
            for found in error.extensions.get("errors") or []:
                field = found["pointer"].split("/")[1] if "/" in found["pointer"] else ""
                if field not in reported:
                    self.errors.append(found)

    def guarded(self, parse: Callable[[], T]) -> T | None:
        try:
            return parse()
        except Invalid as error:
            self.errors.extend(
                error.extensions.get("errors") or [{"pointer": "#", "detail": error.detail}]
            )
            return None


def _address(record: Mapping[str, Any]) -> dict[str, str]:
    value = record.get("address")
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items() if v is not None}
    found = {
        key.removeprefix("address_").removeprefix("address."): str(v).strip()
        for key, v in record.items()
        if (key.startswith("address_") or key.startswith("address.")) and v not in (None, "")
    }
    if isinstance(value, str) and value.strip():
        found["line1"] = value.strip()
    return found


def _opening_hours(raw: Any) -> Any:
    """JSON mapping, or ``mon=09:00-18:00;tue=09:00-12:00,13:00-18:00`` from a CSV cell."""
    if raw is None or isinstance(raw, Mapping):
        return raw
    text = str(raw).strip()
    if not text:
        return None
    if text.startswith("{"):
        return json.loads(text)
    hours: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        day, _, spans = part.partition("=")
        hours[day.strip()] = spans.strip()
    return hours


def location_from_record(record: Mapping[str, Any], *, current: Location | None = None) -> Location:
    """A location from a record; with ``current``, missing fields keep their current value."""
    c = _Collector(record)
    base = current
    code = c.text("code", required=base is None) or (base.code if base else "")
    capabilities_raw = c.listing("capabilities")
    capabilities: frozenset[Capability] | None = None
    if capabilities_raw is not None:
        parsed: set[Capability] = set()
        for index, value in enumerate(capabilities_raw):
            try:
                parsed.add(Capability(value.lower()))
            except ValueError:
                c.errors.append(
                    {
                        "pointer": f"#/capabilities/{index}",
                        "detail": f"'{value}': one of {', '.join(e.value for e in Capability)}",
                    }
                )
        capabilities = frozenset(parsed)
    cutoff_raw = c.text("cutoff_time")
    cutoff = (
        c.guarded(lambda: parse_clock_time(cutoff_raw, pointer="#/cutoff_time"))
        if cutoff_raw
        else (base.cutoff_time if base else None)
    )
    hours_raw = record.get("opening_hours")
    hours = None
    if hours_raw not in (None, ""):
        try:
            hours = c.guarded(lambda: parse_opening_hours(_opening_hours(hours_raw)))
        except (ValueError, AttributeError, TypeError):
            c.errors.append({"pointer": "#/opening_hours", "detail": "mon=09:00-18:00;... or JSON"})
    latitude = c.number("latitude", required=base is None)
    longitude = c.number("longitude", required=base is None)
    address = _address(record)
    capacity_given = "daily_capacity" in record
    location = Location(
        code=code,
        name=c.text("name", required=base is None) or (base.name if base else ""),
        type=c.choice("type", LocationType, default=base.type if base else None)
        or LocationType.STORE,
        status=c.choice(
            "status", LocationStatus, default=base.status if base else LocationStatus.ACTIVE
        ),
        latitude=latitude if latitude is not None else (base.latitude if base else 0.0),
        longitude=longitude if longitude is not None else (base.longitude if base else 0.0),
        timezone=c.text("timezone", default=base.timezone if base else "UTC") or "UTC",
        capabilities=capabilities
        if capabilities is not None
        else (base.capabilities if base else frozenset({Capability.SHIP})),
        address=address or (dict(base.address) if base else {}),
        daily_capacity=c.integer("daily_capacity")
        if capacity_given
        else (base.daily_capacity if base else None),
        capacity_unit=c.choice(
            "capacity_unit",
            CapacityUnit,
            default=base.capacity_unit if base else CapacityUnit.ORDERS,
        ),
        handling_cost=c.decimal(
            "handling_cost", default=base.handling_cost if base else Decimal("0")
        ),
        currency=(c.text("currency", default=base.currency if base else "USD") or "USD").upper(),
        pick_minutes=c.integer("pick_minutes", default=base.pick_minutes if base else 60) or 0,
        cutoff_time=cutoff,
        opening_hours=hours if hours is not None else (base.opening_hours if base else {}),
    )
    if base is None and c.raw("type") is None:
        c.errors.append({"pointer": "#/type", "detail": "required"})
    c.validate(lambda: validate_location(location))
    if c.errors:
        raise Invalid(f"location '{code}' is not valid", errors=c.errors)
    return location


def item_from_record(record: Mapping[str, Any], *, current: Item | None = None) -> Item:
    c = _Collector(record)
    base = current
    sku = c.text("sku", required=base is None) or (base.sku if base else "")

    def integer(name: str, default: int) -> int:
        value = c.integer(name, default=getattr(base, name) if base else default)
        return default if value is None else value

    gtin = c.text("gtin", default=base.gtin if base else None)
    item = Item(
        sku=sku,
        name=c.text("name", required=base is None) or (base.name if base else ""),
        gtin=gtin,
        weight_grams=integer("weight_grams", 0),
        length_mm=integer("length_mm", 0),
        width_mm=integer("width_mm", 0),
        height_mm=integer("height_mm", 0),
        ship_alone=c.flag("ship_alone", default=base.ship_alone if base else False),
        hazmat=c.flag("hazmat", default=base.hazmat if base else False),
        pickup_allowed=c.flag("pickup_allowed", default=base.pickup_allowed if base else True),
        ship_from_store_allowed=c.flag(
            "ship_from_store_allowed", default=base.ship_from_store_allowed if base else True
        ),
        low_stock_threshold=integer("low_stock_threshold", DEFAULT_LOW_STOCK_THRESHOLD),
    )
    c.validate(lambda: validate_item(item))
    if c.errors:
        raise Invalid(f"item '{sku}' is not valid", errors=c.errors)
    return item


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV file (header line) or a JSON file (a list, or an object with a list)."""
    text = path.read_text(encoding="utf-8-sig")
    return records_from_text(text, json_format=path.suffix.lower() == ".json")


def records_from_text(text: str, *, json_format: bool) -> list[dict[str, Any]]:
    if json_format:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise Invalid(f"the file is not valid JSON: {error}") from None
        if isinstance(document, Mapping):
            for key in ("positions", "locations", "items", "rows", "deltas", "supply"):
                if isinstance(document.get(key), list):
                    defaults = {k: v for k, v in document.items() if not isinstance(v, list)}
                    return [{**defaults, **row} for row in document[key]]
            raise Invalid("a JSON import is a list of rows or an object holding one")
        if not isinstance(document, list) or not all(isinstance(r, Mapping) for r in document):
            raise Invalid("a JSON import is a list of objects")
        return [dict(row) for row in document]
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise Invalid("the CSV file has no header line")
    return [{str(k).strip(): v for k, v in row.items() if k is not None} for row in reader]


def parse_all(
    records: Sequence[Mapping[str, Any]],
    parse: Callable[[Mapping[str, Any]], T],
    *,
    first_row: int = 1,
) -> tuple[list[T], list[dict[str, Any]]]:
    """Parse every record; (parsed, bad rows with every reason)."""
    parsed: list[T] = []
    bad: list[dict[str, Any]] = []
    for number, record in enumerate(records, start=first_row):
        try:
            parsed.append(parse(record))
        except Invalid as error:
            reasons: Iterable[dict[str, str]] = error.extensions.get("errors") or [
                {"pointer": "#", "detail": error.detail}
            ]
            bad.append({"row": number, "errors": list(reasons)})
    return parsed, bad


__all__ = [
    "FieldErrors",
    "item_from_record",
    "location_from_record",
    "parse_all",
    "read_records",
    "records_from_text",
]
