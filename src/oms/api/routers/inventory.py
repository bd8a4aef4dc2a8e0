"""Stock: ATP, basket availability, near-me stores, feeds, imports, holds and buffers."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field
from starlette.concurrency import run_in_threadpool

from oms.api.deps import ServicesDep, require
from oms.api.errors import CONFLICT, NOT_FOUND, PROBLEM_RESPONSES
from oms.api.routers.network import IMPORT_BODY, ImportOut, LocationOut, import_records
from oms.domain.access import Permission, Principal
from oms.domain.inventory import DeltaKind, Position, Reservation, SupplyLine
from oms.domain.locations import LocationType
from oms.domain.promising import DeliveryMethod, Promise
from oms.services.inventory import BasketLine, ReservationRequestLine
from oms.services.ports import DeltaLine, FeedOutcome, SnapshotLine

router = APIRouter(tags=["inventory"], responses=PROBLEM_RESPONSES)

Read = Annotated[Principal, Depends(require(Permission.INVENTORY_READ))]
Write = Annotated[Principal, Depends(require(Permission.INVENTORY_WRITE))]
Manage = Annotated[Principal, Depends(require(Permission.LOCATIONS_WRITE))]


class PositionOut(BaseModel):
    sku: str
    location: str
    on_hand: int
    allocated: int
    reserved: int = Field(description="Active holds that have not expired")
    blocked: int
    safety_stock: int
    in_transit: int
    atp: int = Field(description="max(0, on_hand - allocated - reserved - blocked - safety_stock)")

    @classmethod
    def of(cls, position: Position) -> PositionOut:
        return cls(
            sku=position.sku,
            location=position.location_code,
            on_hand=position.on_hand,
            allocated=position.allocated,
            reserved=position.reserved,
            blocked=position.blocked,
            safety_stock=position.safety_stock,
            in_transit=position.in_transit,
            atp=position.atp,
        )


class SupplyOut(BaseModel):
    reference: str
    kind: str
    sku: str
    location: str
    quantity: int
    expected_on: date
    status: str

    @classmethod
    def of(cls, line: SupplyLine) -> SupplyOut:
        return cls(
            reference=line.reference,
            kind=line.kind,
            sku=line.sku,
            location=line.location_code,
            quantity=line.quantity,
            expected_on=line.expected_on,
            status=line.status,
        )


class ItemAvailabilityOut(BaseModel):
    sku: str
    channel: str | None
    total_atp: int = Field(description="Network ATP as this channel sees it")
    atp: dict[str, int] = Field(description="Location code -> ATP (positive only)")
    positions: list[PositionOut]
    supply: list[SupplyOut] = Field(description="Open purchase orders and transfers in transit")


@router.get("/inventory/{sku}", responses=NOT_FOUND, summary="ATP of an item per location")
def item_availability(
    sku: str,
    services: ServicesDep,
    principal: Read,
    location: Annotated[list[str] | None, Query(description="Only these locations")] = None,
    channel: Annotated[str | None, Query(description="Apply this channel's buffer")] = None,
) -> ItemAvailabilityOut:
    found = services.inventory.item_availability(sku, location_codes=location, channel=channel)
    return ItemAvailabilityOut(
        sku=sku,
        channel=channel,
        total_atp=found.total_atp,
        atp=found.atp,
        positions=[PositionOut.of(p) for p in found.positions],
        supply=[SupplyOut.of(s) for s in found.supply],
    )


class Destination(BaseModel):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class BasketLineIn(BaseModel):
    sku: str
    quantity: int = Field(gt=0, le=100_000)


class BasketIn(BaseModel):
    lines: list[BasketLineIn] = Field(min_length=1, max_length=200)
    method: DeliveryMethod = DeliveryMethod.SHIP
    destination: Destination | None = None
    radius_km: float | None = Field(default=None, gt=0, le=1000)
    channel: str | None = None
    max_sources: int = Field(default=10, ge=1, le=100)


class PromiseOut(BaseModel):
    location: str
    ready_at: datetime
    ship_on: date | None
    deliver_on: date
    distance_km: float | None

    @classmethod
    def of(cls, promise: Promise) -> PromiseOut:
        return cls(
            location=promise.location_code,
            ready_at=promise.ready_at,
            ship_on=promise.ship_on,
            deliver_on=promise.deliver_on,
            distance_km=round(promise.distance_km, 3) if promise.distance_km is not None else None,
        )


class SourceOut(BaseModel):
    location: str
    atp: int
    distance_km: float | None
    promise: PromiseOut


class LineAvailabilityOut(BaseModel):
    sku: str
    quantity: int
    available: int
    fulfillable: bool
    reason: str | None
    sources: list[SourceOut]


class BasketOut(BaseModel):
    method: DeliveryMethod
    fulfillable: bool
    single_locations: list[str] = Field(description="Locations that can serve the whole basket")
    earliest_promise: date | None
    lines: list[LineAvailabilityOut]


@router.post("/availability", summary="Network availability of a basket for a delivery method")
def basket_availability(body: BasketIn, services: ServicesDep, _: Read) -> BasketOut:
    result = services.inventory.basket_availability(
        [BasketLine(line.sku, line.quantity) for line in body.lines],
        method=body.method,
        destination=(body.destination.latitude, body.destination.longitude)
        if body.destination
        else None,
        radius_km=body.radius_km,
        channel=body.channel,
        max_sources=body.max_sources,
    )
    return BasketOut(
        method=result.method,
        fulfillable=result.fulfillable,
        single_locations=result.single_locations,
        earliest_promise=result.earliest_promise,
        lines=[
            LineAvailabilityOut(
                sku=line.sku,
                quantity=line.quantity,
                available=line.available,
                fulfillable=line.fulfillable,
                reason=line.reason,
                sources=[
                    SourceOut(
                        location=s.location_code,
                        atp=s.atp,
                        distance_km=round(s.distance_km, 3) if s.distance_km is not None else None,
                        promise=PromiseOut.of(s.promise),
                    )
                    for s in line.sources
                ],
            )
            for line in result.lines
        ],
    )


class NearbyStoreOut(BaseModel):
    location: LocationOut
    distance_km: float
    atp: dict[str, int]
    has_all: bool
    promise: PromiseOut


@router.get("/availability/near", summary="Stores near a point that can serve pickup")
def stores_near(
    services: ServicesDep,
    _: Read,
    latitude: Annotated[float, Query(ge=-90, le=90)],
    longitude: Annotated[float, Query(ge=-180, le=180)],
    radius_km: Annotated[float, Query(gt=0, le=1000)] = 25.0,
    sku: Annotated[
        list[str] | None, Query(description="SKU or SKU:quantity the store should have (repeat)")
    ] = None,
    method: DeliveryMethod = DeliveryMethod.PICKUP,
    channel: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[NearbyStoreOut]:
    wanted = []
    for entry in sku or []:
        name, _colon, quantity = entry.partition(":")
        wanted.append(BasketLine(name, int(quantity) if quantity.isdigit() else 1))
    stores = services.inventory.stores_near(
        latitude=latitude,
        longitude=longitude,
        radius_km=radius_km,
        skus=wanted,
        method=method,
        channel=channel,
        limit=limit,
    )
    return [
        NearbyStoreOut(
            location=LocationOut.of(store.location),
            distance_km=store.distance_km,
            atp=store.atp,
            has_all=store.has_all,
            promise=PromiseOut.of(store.promise),
        )
        for store in stores
    ]


@router.get("/availability/promise", responses=NOT_FOUND, summary="Earliest promise date")
def promise(
    services: ServicesDep,
    _: Read,
    location: str,
    method: DeliveryMethod = DeliveryMethod.SHIP,
    latitude: Annotated[float | None, Query(ge=-90, le=90)] = None,
    longitude: Annotated[float | None, Query(ge=-180, le=180)] = None,
) -> PromiseOut:
    destination = (latitude, longitude) if latitude is not None and longitude is not None else None
    return PromiseOut.of(
        services.inventory.promise(location, method=method, destination=destination)
    )


# --- feeds ------------------------------------------------------------------------------------


class FeedOut(BaseModel):
    applied: int
    unchanged: int = 0
    stale: list[dict[str, Any]] = Field(
        default_factory=list, description="Positions of an older snapshot: ignored"
    )
    duplicates: list[dict[str, Any]] = Field(
        default_factory=list, description="Messages already received: ignored"
    )
    superseded: list[dict[str, Any]] = Field(
        default_factory=list, description="Deltas older than the last count: already counted"
    )

    @classmethod
    def of(cls, outcome: FeedOutcome) -> FeedOut:
        return cls(
            applied=outcome.applied,
            unchanged=outcome.unchanged,
            stale=outcome.stale,
            duplicates=outcome.duplicates,
            superseded=outcome.superseded,
        )


class SnapshotLineIn(BaseModel):
    sku: str
    location: str
    on_hand: int = Field(ge=0)
    blocked: int | None = Field(default=None, ge=0)


class SnapshotIn(BaseModel):
    source: str = Field(min_length=1, max_length=100, examples=["store-pos"])
    as_of: AwareDatetime = Field(description="When the source counted")
    sequence: int | None = Field(
        default=None, ge=0, description="The source's sequence; decides over as_of when both set"
    )
    lines: list[SnapshotLineIn] = Field(min_length=1, max_length=100_000)


@router.post("/inventory/snapshots", summary="Absolute on-hand counts (older ones are reported)")
def apply_snapshot(body: SnapshotIn, services: ServicesDep, principal: Write) -> FeedOut:
    for code in sorted({line.location for line in body.lines}):
        principal.require_location(code)
    outcome = services.inventory.apply_snapshot(
        [SnapshotLine(line.sku, line.location, line.on_hand, line.blocked) for line in body.lines],
        as_of=body.as_of,
        source=body.source,
        sequence=body.sequence,
    )
    return FeedOut.of(outcome)


class DeltaIn(BaseModel):
    message_id: str = Field(min_length=1, max_length=200)
    sku: str
    location: str
    kind: DeltaKind
    quantity: int = Field(description="Positive; signed for count_correction")
    occurred_at: AwareDatetime
    reason: str | None = Field(default=None, max_length=200)


class DeltasIn(BaseModel):
    source: str = Field(min_length=1, max_length=100)
    deltas: list[DeltaIn] = Field(min_length=1, max_length=10_000)


@router.post(
    "/inventory/deltas", summary="Receipts, sales, shrink, corrections (idempotent per message)"
)
def apply_deltas(body: DeltasIn, services: ServicesDep, principal: Write) -> FeedOut:
    for code in sorted({delta.location for delta in body.deltas}):
        principal.require_location(code)
    outcome = services.inventory.apply_deltas(
        [
            DeltaLine(
                source=body.source,
                message_id=d.message_id,
                sku=d.sku,
                location_code=d.location,
                kind=d.kind,
                quantity=d.quantity,
                occurred_at=d.occurred_at,
                reason=d.reason,
            )
            for d in body.deltas
        ]
    )
    return FeedOut.of(outcome)


@router.post(
    "/inventory/imports",
    openapi_extra=IMPORT_BODY,
    summary="Bulk snapshot from CSV/JSON (sku, location, on_hand[, blocked, as_of]); "
    "any bad row rejects all",
)
async def import_stock(
    request: Request,
    services: ServicesDep,
    principal: Write,
    source: str = "import",
    as_of: Annotated[AwareDatetime | None, Query(description="Default: now")] = None,
) -> ImportOut:
    records = await import_records(request)
    if principal.is_location_bound:
        for code in sorted({str(r.get("location") or r.get("location_code")) for r in records}):
            principal.require_location(code)
    summary = await run_in_threadpool(
        lambda: services.inventory.import_stock(records, source=source, as_of=as_of)
    )
    return ImportOut.of(summary)


class QuantityIn(BaseModel):
    quantity: int | None = Field(ge=0, description="None: back to the default (safety stock)")
    reason: str = Field(default="manual", max_length=200)


@router.put(
    "/inventory/{sku}/locations/{location}/blocked",
    responses=NOT_FOUND,
    summary="Set the blocked (damaged, quality hold) quantity",
)
def set_blocked(
    sku: str, location: str, body: QuantityIn, services: ServicesDep, principal: Write
) -> PositionOut:
    principal.require_location(location)
    return PositionOut.of(
        services.inventory.set_blocked(
            sku, location, blocked=body.quantity or 0, reason=body.reason
        )
    )


@router.put(
    "/inventory/{sku}/locations/{location}/safety-stock",
    responses=NOT_FOUND,
    summary="Set this position's safety stock (null: the location type's default)",
)
def set_safety_stock(
    sku: str, location: str, body: QuantityIn, services: ServicesDep, _: Manage
) -> PositionOut:
    return PositionOut.of(
        services.inventory.set_safety_stock(sku, location, quantity=body.quantity)
    )


class DefaultIn(BaseModel):
    quantity: int = Field(ge=0)


@router.get("/inventory-settings/safety-stock", summary="Safety stock defaults per location type")
def safety_stock_defaults(services: ServicesDep, _: Read) -> dict[str, int]:
    return {k.value: v for k, v in services.inventory.safety_stock_defaults().items()}


@router.put(
    "/inventory-settings/safety-stock/{location_type}",
    summary="Set a location type's default safety stock (positions without their own follow)",
)
def set_safety_stock_default(
    location_type: LocationType, body: DefaultIn, services: ServicesDep, _: Manage
) -> dict[str, int]:
    updated = services.inventory.set_safety_stock_default(location_type, body.quantity)
    return {"positions_updated": updated}


class ChannelBufferIn(BaseModel):
    percent: int = Field(default=0, ge=0, le=100)
    units: int = Field(default=0, ge=0)


@router.put(
    "/inventory-settings/channel-buffers/{channel}",
    summary="What a channel sees: ATP * (100 - percent) / 100 - units",
)
def set_channel_buffer(
    channel: str, body: ChannelBufferIn, services: ServicesDep, _: Manage
) -> dict[str, Any]:
    buffer = services.inventory.set_channel_buffer(channel, percent=body.percent, units=body.units)
    return {"channel": buffer.channel, "percent": buffer.percent, "units": buffer.units}


class SupplyIn(BaseModel):
    reference: str = Field(min_length=1, max_length=100, examples=["PO-1001"])
    kind: str = Field(default="purchase_order", pattern="^(purchase_order|transfer)$")
    sku: str
    location: str
    quantity: int = Field(gt=0)
    expected_on: date
    status: str = Field(default="open", pattern="^(open|in_transit|received|cancelled)$")


@router.post("/inventory/supply", status_code=204, summary="Record purchase orders and transfers")
def add_supply(body: list[SupplyIn], services: ServicesDep, _: Write) -> Response:
    services.inventory.add_supply(
        [
            SupplyLine(
                reference=s.reference,
                kind=s.kind,
                sku=s.sku,
                location_code=s.location,
                quantity=s.quantity,
                expected_on=s.expected_on,
                status=s.status,
            )
            for s in body
        ]
    )
    return Response(status_code=204)


# --- reservations -----------------------------------------------------------------------------


class ReservationLineIn(BaseModel):
    sku: str
    quantity: int = Field(gt=0, le=100_000)
    location: str | None = Field(default=None, description="None: anywhere in the network")


class ReservationIn(BaseModel):
    reference: str = Field(min_length=1, max_length=200, examples=["cart-8812"])
    channel: str = Field(default="web", max_length=32)
    ttl_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    near: Destination | None = Field(default=None, description="Prefer locations near here")
    lines: list[ReservationLineIn] = Field(min_length=1, max_length=200)


class ReservationLineOut(BaseModel):
    sku: str
    location: str
    quantity: int
    status: str


class ReservationOut(BaseModel):
    id: str
    reference: str
    channel: str
    status: str = Field(description="active, confirmed, released or expired (by the clock)")
    expires_at: datetime
    created_at: datetime
    lines: list[ReservationLineOut]

    @classmethod
    def of(cls, reservation: Reservation, status: str | None = None) -> ReservationOut:
        return cls(
            id=reservation.id,
            reference=reservation.reference,
            channel=reservation.channel,
            status=status or reservation.status.value,
            expires_at=reservation.expires_at,
            created_at=reservation.created_at,
            lines=[
                ReservationLineOut(
                    sku=line.sku,
                    location=line.location_code,
                    quantity=line.quantity,
                    status=line.status.value,
                )
                for line in reservation.lines
            ],
        )


@router.post(
    "/reservations",
    status_code=201,
    responses=CONFLICT,
    summary="Hold stock for a while (409 insufficient-stock says what is available)",
)
def reserve(body: ReservationIn, services: ServicesDep, principal: Write) -> ReservationOut:
    for line in body.lines:
        if line.location:
            principal.require_location(line.location)
    reservation = services.inventory.reserve(
        [ReservationRequestLine(line.sku, line.quantity, line.location) for line in body.lines],
        reference=body.reference,
        channel=body.channel,
        ttl=timedelta(seconds=body.ttl_seconds),
        near=(body.near.latitude, body.near.longitude) if body.near else None,
    )
    return ReservationOut.of(reservation)


@router.get("/reservations/{reservation_id}", responses=NOT_FOUND, summary="Read a hold")
def get_reservation(reservation_id: str, services: ServicesDep, _: Read) -> ReservationOut:
    reservation, status = services.inventory.get_reservation(reservation_id)
    return ReservationOut.of(reservation, status)


@router.post(
    "/reservations/{reservation_id}/confirmation",
    responses={**NOT_FOUND, **CONFLICT},
    summary="Turn a hold into an allocation",
)
def confirm_reservation(
    reservation_id: str, services: ServicesDep, principal: Write
) -> ReservationOut:
    _require_locations(services, principal, reservation_id)
    services.inventory.confirm_reservation(reservation_id)
    reservation, status = services.inventory.get_reservation(reservation_id)
    return ReservationOut.of(reservation, status)


@router.delete(
    "/reservations/{reservation_id}",
    responses={**NOT_FOUND, **CONFLICT},
    summary="Release a hold",
)
def release_reservation(
    reservation_id: str, services: ServicesDep, principal: Write
) -> ReservationOut:
    _require_locations(services, principal, reservation_id)
    return ReservationOut.of(services.inventory.release_reservation(reservation_id))


def _require_locations(services: ServicesDep, principal: Principal, reservation_id: str) -> None:
    """Store associates may end only holds at their own locations."""
    if principal.is_location_bound:
        reservation, _status = services.inventory.get_reservation(reservation_id)
        for line in reservation.lines:
            principal.require_location(line.location_code)
