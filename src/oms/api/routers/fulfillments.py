"""Fulfillments: what warehouse, 3PL, store and vendor systems (and the store app) drive."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from oms.api.deps import ServicesDep, require
from oms.api.errors import CONFLICT, NOT_FOUND, PROBLEM_RESPONSES
from oms.domain.access import Permission, Principal
from oms.domain.fulfillment import Fulfillment, FulfillmentStatus, Package

router = APIRouter(prefix="/fulfillments", tags=["fulfillments"], responses=PROBLEM_RESPONSES)
Reader = Annotated[Principal, Depends(require(Permission.FULFILLMENTS_READ))]
Worker = Annotated[Principal, Depends(require(Permission.FULFILLMENTS_WRITE))]
STEP_RESPONSES = {**NOT_FOUND, **CONFLICT}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests -----------------------------------------------------------------------------------


class ReleaseIn(Strict):
    order_id: str = Field(description="The order (id or number) whose allocated units to release")


class RejectIn(Strict):
    reason: str = Field(min_length=1, max_length=500)


class PickIn(Strict):
    picked: int = Field(ge=0, description="Units found; the rest of the line is short")
    reason: str | None = Field(default=None, max_length=500, description="Why short")


class PackageLineIn(Strict):
    line_no: int
    quantity: int = Field(gt=0)


class PackageIn(Strict):
    package_id: str = Field(min_length=1, max_length=64)
    weight_kg: Decimal = Field(gt=0)
    length_cm: Decimal = Field(gt=0)
    width_cm: Decimal = Field(gt=0)
    height_cm: Decimal = Field(gt=0)
    lines: list[PackageLineIn] = Field(min_length=1)

    def to_domain(self) -> Package:
        contents: dict[int, int] = {}
        for line in self.lines:
            contents[line.line_no] = contents.get(line.line_no, 0) + line.quantity
        return Package(
            self.package_id,
            self.weight_kg,
            self.length_cm,
            self.width_cm,
            self.height_cm,
            contents,
        )


class PackIn(Strict):
    packages: list[PackageIn] = Field(min_length=1)


class ShipIn(Strict):
    carrier: str = Field(min_length=1, max_length=64)
    service: str = Field(min_length=1, max_length=64)
    tracking: dict[str, str] = Field(description="package id -> tracking number")
    expected_on: date | None = None


class CheckInIn(Strict):
    bay: str | None = Field(default=None, max_length=32)
    car: str | None = Field(default=None, max_length=200, description="Make, colour, plate")
    note: str | None = Field(default=None, max_length=500)


class HandOverIn(Strict):
    pickup_code: str | None = Field(default=None, max_length=16)
    override_reason: str | None = Field(
        default=None, max_length=500, description="Associate override (ID checked, ...)"
    )


class CancelIn(Strict):
    reason: str = Field(min_length=1, max_length=500)


# --- responses ----------------------------------------------------------------------------------


class FulfillmentLineOut(BaseModel):
    line_no: int
    sku: str
    quantity: int
    picked: int
    short: int
    pick_confirmed: bool


class PackageOut(BaseModel):
    package_id: str
    weight_kg: Decimal
    length_cm: Decimal
    width_cm: Decimal
    height_cm: Decimal
    lines: list[dict[str, int]]
    tracking_number: str | None


class FulfillmentOut(BaseModel):
    id: str
    order_id: str
    order_number: str
    location_code: str
    destination_code: str | None
    delivery_method: str
    status: FulfillmentStatus
    purchase_order: str | None
    lines: list[FulfillmentLineOut]
    packages: list[PackageOut]
    carrier: str | None
    service: str | None
    shipment_id: str | None
    transfer_id: str | None
    pickup_code: str | None = Field(description="Shown to associates of the store and operators")
    collect_by: datetime | None
    check_in: dict[str, Any] | None
    reason: str | None
    override_reason: str | None
    history: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, f: Fulfillment) -> FulfillmentOut:
        return cls(
            id=f.id,
            order_id=f.order_id,
            order_number=f.order_number,
            location_code=f.location_code,
            destination_code=f.destination_code,
            delivery_method=f.delivery_method,
            status=f.status,
            purchase_order=f.purchase_order,
            lines=[FulfillmentLineOut(**line.describe()) for line in f.lines],
            packages=[PackageOut(**package.describe()) for package in f.packages],
            carrier=f.carrier,
            service=f.service,
            shipment_id=f.shipment_id,
            transfer_id=f.transfer_id,
            pickup_code=f.pickup_code,
            collect_by=f.collect_by,
            check_in=f.check_in_details,
            reason=f.reason,
            override_reason=f.override_reason,
            history=f.history,
            created_at=f.created_at,
            updated_at=f.updated_at,
        )


class FulfillmentPage(BaseModel):
    items: list[FulfillmentOut]
    next_cursor: str | None = Field(description="Pass as 'after' for the next page")


# --- routes -------------------------------------------------------------------------------------


@router.get("", summary="Fulfillments (store associates: their own locations only)")
def list_fulfillments(
    services: ServicesDep,
    principal: Reader,
    location_code: str | None = None,
    status: FulfillmentStatus | None = None,
    order_id: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> FulfillmentPage:
    found = services.fulfillments.find(
        location_code=location_code,
        status=status.value if status else None,
        order_id=order_id,
        after=after,
        limit=limit,
        principal=principal,
    )
    return FulfillmentPage(
        items=[FulfillmentOut.of(f) for f in found],
        next_cursor=found[-1].id if len(found) == limit else None,
    )


@router.post(
    "/releases",
    status_code=201,
    responses=STEP_RESPONSES,
    summary="Release an order's allocated units: one fulfillment per location",
)
def release(body: ReleaseIn, services: ServicesDep, principal: Worker) -> list[FulfillmentOut]:
    return [
        FulfillmentOut.of(f)
        for f in services.fulfillments.release(body.order_id, principal=principal)
    ]


@router.get("/{fulfillment_id}", responses=NOT_FOUND)
def get_fulfillment(
    fulfillment_id: str, services: ServicesDep, principal: Reader
) -> FulfillmentOut:
    return FulfillmentOut.of(services.fulfillments.get(fulfillment_id, principal=principal))


@router.post("/{fulfillment_id}/acknowledge", responses=STEP_RESPONSES)
def acknowledge(fulfillment_id: str, services: ServicesDep, principal: Worker) -> FulfillmentOut:
    return FulfillmentOut.of(services.fulfillments.acknowledge(fulfillment_id, principal=principal))


@router.post(
    "/{fulfillment_id}/reject",
    responses=STEP_RESPONSES,
    summary="Reject: the units are sourced again without this location (or backordered)",
)
def reject(
    fulfillment_id: str, body: RejectIn, services: ServicesDep, principal: Worker
) -> FulfillmentOut:
    return FulfillmentOut.of(
        services.fulfillments.reject(fulfillment_id, body.reason, principal=principal)
    )


@router.post(
    "/{fulfillment_id}/lines/{line_no}/pick",
    responses=STEP_RESPONSES,
    summary="Confirm a line's pick, full or short (the short units are sourced elsewhere)",
)
def pick(
    fulfillment_id: str, line_no: int, body: PickIn, services: ServicesDep, principal: Worker
) -> FulfillmentOut:
    return FulfillmentOut.of(
        services.fulfillments.confirm_pick(
            fulfillment_id, line_no, body.picked, reason=body.reason, principal=principal
        )
    )


@router.post("/{fulfillment_id}/pack", responses=STEP_RESPONSES)
def pack(
    fulfillment_id: str, body: PackIn, services: ServicesDep, principal: Worker
) -> FulfillmentOut:
    return FulfillmentOut.of(
        services.fulfillments.pack(
            fulfillment_id, [p.to_domain() for p in body.packages], principal=principal
        )
    )


@router.post(
    "/{fulfillment_id}/ship",
    responses=STEP_RESPONSES,
    summary="Ship the packages (consumes stock, captures payment); ship-to-store: transfer",
)
def ship(
    fulfillment_id: str, body: ShipIn, services: ServicesDep, principal: Worker
) -> FulfillmentOut:
    return FulfillmentOut.of(
        services.fulfillments.ship(
            fulfillment_id,
            carrier=body.carrier,
            service=body.service,
            tracking=body.tracking,
            expected_on=body.expected_on,
            principal=principal,
        )
    )


@router.post("/{fulfillment_id}/deliver", responses=STEP_RESPONSES)
def deliver(fulfillment_id: str, services: ServicesDep, principal: Worker) -> FulfillmentOut:
    return FulfillmentOut.of(
        services.fulfillments.confirm_delivery(fulfillment_id, principal=principal)
    )


@router.post(
    "/{fulfillment_id}/receive",
    responses=STEP_RESPONSES,
    summary="Ship-to-store: the store received the transfer",
)
def receive(fulfillment_id: str, services: ServicesDep, principal: Worker) -> FulfillmentOut:
    return FulfillmentOut.of(services.fulfillments.receive(fulfillment_id, principal=principal))


@router.post(
    "/{fulfillment_id}/ready-for-pickup",
    responses=STEP_RESPONSES,
    summary="Staged for the customer: a pickup code is emailed",
)
def ready_for_pickup(
    fulfillment_id: str, services: ServicesDep, principal: Worker
) -> FulfillmentOut:
    return FulfillmentOut.of(
        services.fulfillments.ready_for_pickup(fulfillment_id, principal=principal)
    )


@router.post("/{fulfillment_id}/check-in", responses=STEP_RESPONSES, summary="Curbside arrival")
def check_in(
    fulfillment_id: str, body: CheckInIn, services: ServicesDep, principal: Worker
) -> FulfillmentOut:
    details = {k: v for k, v in body.model_dump().items() if v is not None}
    return FulfillmentOut.of(
        services.fulfillments.check_in(fulfillment_id, details, principal=principal)
    )


@router.post(
    "/{fulfillment_id}/hand-over",
    responses=STEP_RESPONSES,
    summary="Hand over with the pickup code, or an associate override with a reason",
)
def hand_over(
    fulfillment_id: str, body: HandOverIn, services: ServicesDep, principal: Worker
) -> FulfillmentOut:
    return FulfillmentOut.of(
        services.fulfillments.hand_over(
            fulfillment_id,
            pickup_code=body.pickup_code,
            override_reason=body.override_reason,
            principal=principal,
        )
    )


@router.post(
    "/{fulfillment_id}/cancel",
    responses=STEP_RESPONSES,
    summary="Give up an uncollected pickup: units cancelled, stock back on the shelf",
)
def cancel(
    fulfillment_id: str, body: CancelIn, services: ServicesDep, principal: Worker
) -> FulfillmentOut:
    return FulfillmentOut.of(
        services.fulfillments.cancel_remainder(fulfillment_id, body.reason, principal=principal)
    )
