"""Locations and items of the fulfillment network: CRUD and CSV/JSON import."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from oms.api.deps import ServicesDep, require
from oms.api.errors import CONFLICT, NOT_FOUND, PROBLEM_RESPONSES
from oms.domain.access import Permission, Principal
from oms.domain.errors import Invalid
from oms.domain.items import Item
from oms.domain.locations import (
    Capability,
    CapacityUnit,
    Location,
    LocationStatus,
    LocationType,
    opening_hours_json,
)
from oms.services.inventory import ImportSummary
from oms.services.records import records_from_text

router = APIRouter(tags=["network"], responses=PROBLEM_RESPONSES)

LocationsRead = Annotated[Principal, Depends(require(Permission.LOCATIONS_READ))]
LocationsWrite = Annotated[Principal, Depends(require(Permission.LOCATIONS_WRITE))]
ItemsRead = Annotated[Principal, Depends(require(Permission.ITEMS_READ))]
ItemsWrite = Annotated[Principal, Depends(require(Permission.ITEMS_WRITE))]


class LocationPatch(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    type: LocationType | None = None
    status: LocationStatus | None = Field(
        default=None,
        description="active; offline = fulfills nothing; dark = fulfills, no walk-in customers; "
        "closed",
    )
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    timezone: str | None = Field(default=None, examples=["America/New_York"])
    capabilities: list[Capability] | None = None
    address: dict[str, str] | None = Field(
        default=None, examples=[{"line1": "1 Main St", "city": "Boston", "country": "US"}]
    )
    daily_capacity: int | None = Field(default=None, ge=0, description="None: unlimited")
    capacity_unit: CapacityUnit | None = None
    handling_cost: Decimal | None = Field(default=None, ge=0, examples=["1.50"])
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    pick_minutes: int | None = Field(default=None, ge=0, le=10080)
    cutoff_time: str | None = Field(default=None, examples=["15:00"], description="Local HH:MM")
    opening_hours: dict[str, list[tuple[str, str]]] | None = Field(
        default=None,
        examples=[{"mon": [["09:00", "18:00"]], "sat": [["10:00", "16:00"]]}],
        description="Local opening intervals per weekday; a missing day is closed; "
        "empty: always open",
    )


class LocationIn(LocationPatch):
    code: str = Field(min_length=1, max_length=64, examples=["DC-EAST"])
    name: str = Field(min_length=1, max_length=200)  # type: ignore[assignment]
    type: LocationType  # type: ignore[assignment]
    latitude: float = Field(ge=-90, le=90)  # type: ignore[assignment]
    longitude: float = Field(ge=-180, le=180)  # type: ignore[assignment]


class LocationOut(BaseModel):
    code: str
    name: str
    type: LocationType
    status: LocationStatus
    latitude: float
    longitude: float
    timezone: str
    capabilities: list[Capability]
    address: dict[str, str]
    daily_capacity: int | None
    capacity_unit: CapacityUnit
    handling_cost: Decimal
    currency: str
    pick_minutes: int
    cutoff_time: str | None
    opening_hours: dict[str, list[list[str]]]

    @classmethod
    def of(cls, location: Location) -> LocationOut:
        return cls(
            code=location.code,
            name=location.name,
            type=location.type,
            status=location.status,
            latitude=location.latitude,
            longitude=location.longitude,
            timezone=location.timezone,
            capabilities=sorted(location.capabilities),
            address=dict(location.address),
            daily_capacity=location.daily_capacity,
            capacity_unit=location.capacity_unit,
            handling_cost=location.handling_cost,
            currency=location.currency,
            pick_minutes=location.pick_minutes,
            cutoff_time=f"{location.cutoff_time:%H:%M}" if location.cutoff_time else None,
            opening_hours=opening_hours_json(location.opening_hours),
        )


class LocationPage(BaseModel):
    items: list[LocationOut]
    next_after: str | None = Field(description="Pass as 'after' for the next page")


class ItemPatch(BaseModel):
    name: str | None = Field(default=None, max_length=300)
    gtin: str | None = Field(default=None, examples=["4006381333931"])
    weight_grams: int | None = Field(default=None, ge=0)
    length_mm: int | None = Field(default=None, ge=0)
    width_mm: int | None = Field(default=None, ge=0)
    height_mm: int | None = Field(default=None, ge=0)
    ship_alone: bool | None = None
    hazmat: bool | None = None
    pickup_allowed: bool | None = None
    ship_from_store_allowed: bool | None = None
    low_stock_threshold: int | None = Field(
        default=None, ge=0, description="availability.low is emitted at or below this ATP"
    )


class ItemIn(ItemPatch):
    sku: str = Field(min_length=1, max_length=64, examples=["LAMP-01"])
    name: str = Field(min_length=1, max_length=300)  # type: ignore[assignment]


class ItemOut(BaseModel):
    sku: str
    gtin: str | None
    name: str
    weight_grams: int
    length_mm: int
    width_mm: int
    height_mm: int
    ship_alone: bool
    hazmat: bool
    pickup_allowed: bool
    ship_from_store_allowed: bool
    low_stock_threshold: int

    @classmethod
    def of(cls, item: Item) -> ItemOut:
        return cls(**item.__dict__)


class ItemPage(BaseModel):
    items: list[ItemOut]
    next_after: str | None


class ImportOut(BaseModel):
    kind: str
    rows: int
    created: int = 0
    updated: int = 0
    applied: int = 0
    unchanged: int = 0
    stale: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def of(cls, summary: ImportSummary) -> ImportOut:
        return cls(
            kind=summary.kind,
            rows=summary.rows,
            created=summary.created,
            updated=summary.updated,
            applied=summary.applied,
            unchanged=summary.unchanged,
            stale=summary.stale,
        )


IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        },
    }
}


async def import_records(request: Request) -> list[dict[str, Any]]:
    """The rows of a CSV (``text/csv``) or JSON request body."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("text/csv", "application/json"):
        raise Invalid("send the import as text/csv or application/json")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("the import is not UTF-8 text") from None
    return records_from_text(text, json_format=content_type == "application/json")


# --- locations --------------------------------------------------------------------------------


@router.post("/locations", status_code=201, responses=CONFLICT, summary="Create a location")
def create_location(body: LocationIn, services: ServicesDep, _: LocationsWrite) -> LocationOut:
    return LocationOut.of(services.inventory.create_location(body.model_dump(mode="json")))


@router.get("/locations", summary="List locations by code")
def list_locations(
    services: ServicesDep,
    _: LocationsRead,
    type: LocationType | None = None,
    status: LocationStatus | None = None,
    capability: Capability | None = None,
    after: Annotated[str | None, Query(description="Last code of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> LocationPage:
    found = services.inventory.list_locations(
        type=type, status=status, capability=capability, after=after, limit=limit
    )
    return LocationPage(
        items=[LocationOut.of(loc) for loc in found],
        next_after=found[-1].code if len(found) == limit else None,
    )


@router.post(
    "/locations/import",
    openapi_extra=IMPORT_BODY,
    summary="Create or replace locations from CSV or JSON; any bad row rejects all (422)",
)
async def import_locations(request: Request, services: ServicesDep, _: LocationsWrite) -> ImportOut:
    records = await import_records(request)
    summary = await run_in_threadpool(services.inventory.import_locations, records)
    return ImportOut.of(summary)


@router.get("/locations/{code}", responses=NOT_FOUND, summary="Read a location")
def get_location(code: str, services: ServicesDep, _: LocationsRead) -> LocationOut:
    return LocationOut.of(services.inventory.get_location(code))


@router.patch("/locations/{code}", responses=NOT_FOUND, summary="Change a location")
def update_location(
    code: str, body: LocationPatch, services: ServicesDep, _: LocationsWrite
) -> LocationOut:
    changes = body.model_dump(mode="json", exclude_unset=True)
    return LocationOut.of(services.inventory.update_location(code, changes))


@router.delete(
    "/locations/{code}",
    responses={**NOT_FOUND, **CONFLICT},
    summary="Close a location (status closed; its history stays)",
)
def close_location(code: str, services: ServicesDep, _: LocationsWrite) -> LocationOut:
    return LocationOut.of(
        services.inventory.update_location(code, {"status": LocationStatus.CLOSED.value})
    )


# --- items ------------------------------------------------------------------------------------


@router.post("/items", status_code=201, responses=CONFLICT, summary="Create an item")
def create_item(body: ItemIn, services: ServicesDep, _: ItemsWrite) -> ItemOut:
    return ItemOut.of(services.inventory.create_item(body.model_dump(mode="json")))


@router.get("/items", summary="List items by SKU")
def list_items(
    services: ServicesDep,
    _: ItemsRead,
    after: Annotated[str | None, Query(description="Last SKU of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ItemPage:
    found = services.inventory.list_items(after=after, limit=limit)
    return ItemPage(
        items=[ItemOut.of(item) for item in found],
        next_after=found[-1].sku if len(found) == limit else None,
    )


@router.post(
    "/items/import",
    openapi_extra=IMPORT_BODY,
    summary="Create or replace items from CSV or JSON; any bad row rejects all (422)",
)
async def import_items(request: Request, services: ServicesDep, _: ItemsWrite) -> ImportOut:
    records = await import_records(request)
    summary = await run_in_threadpool(services.inventory.import_items, records)
    return ImportOut.of(summary)


@router.get("/items/{sku}", responses=NOT_FOUND, summary="Read an item")
def get_item(sku: str, services: ServicesDep, _: ItemsRead) -> ItemOut:
    return ItemOut.of(services.inventory.get_item(sku))


@router.patch("/items/{sku}", responses=NOT_FOUND, summary="Change an item")
def update_item(sku: str, body: ItemPatch, services: ServicesDep, _: ItemsWrite) -> ItemOut:
    changes = body.model_dump(mode="json", exclude_unset=True)
    return ItemOut.of(services.inventory.update_item(sku, changes))
