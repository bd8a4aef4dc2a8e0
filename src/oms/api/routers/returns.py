"""Returns from any channel: authorise (RMA), receive at a location, inspect, refund or exchange."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from oms.api.deps import ServicesDep, require
from oms.api.errors import CONFLICT, NOT_FOUND, PROBLEM_RESPONSES
from oms.domain.access import Permission, Principal
from oms.domain.returns import Return
from oms.services.returns import ReturnLineRequest

router = APIRouter(tags=["returns"], responses=PROBLEM_RESPONSES)
Reader = Annotated[Principal, Depends(require(Permission.RETURNS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.RETURNS_WRITE))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReturnLineIn(Strict):
    line_no: int = Field(ge=1)
    quantity: int = Field(ge=1)
    reason: str = Field(
        description="damaged, defective, wrong_item, not_as_described, size_or_fit, "
        "no_longer_needed, arrived_late, other"
    )


class ReturnIn(Strict):
    order_id: str = Field(description="Order id or order number")
    method: Literal["mail", "in_store", "drop_off"]
    location_code: str | None = Field(
        default=None, description="The DC (mail), store (in_store) or drop-off point"
    )
    lines: list[ReturnLineIn] = Field(min_length=1)
    resolution: Literal["refund", "exchange"] = "refund"
    allow_ship_before_return: bool = Field(
        default=False, description="An exchange's replacement may ship before the return arrives"
    )


class ReceiveIn(Strict):
    location_code: str
    quantities: dict[int, int] | None = Field(
        default=None, description="Order line -> units received (default: all expected)"
    )


class DispositionIn(Strict):
    line_no: int = Field(ge=1)
    disposition: Literal["restock", "damaged", "return_to_vendor"]
    quantity: int = Field(ge=1)


class InspectionIn(Strict):
    dispositions: list[DispositionIn] = Field(min_length=1)


class CancelIn(Strict):
    reason: str = Field(min_length=1, max_length=500)


class ReturnLineOut(BaseModel):
    line_no: int
    sku: str
    quantity: int
    reason: str
    unit_value: Decimal
    received: int
    dispositions: dict[str, int]


class ReturnOut(BaseModel):
    return_id: str
    rma_number: str
    order_id: str
    order_number: str
    method: str
    location_code: str | None
    status: str
    resolution: str
    allow_ship_before_return: bool
    exchange_order_id: str | None
    currency: str
    refunded_amount: Decimal
    lines: list[ReturnLineOut]
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, item: Return) -> ReturnOut:
        return cls(
            return_id=item.return_id,
            rma_number=item.rma_number,
            order_id=item.order_id,
            order_number=item.order_number,
            method=item.method.value,
            location_code=item.location_code,
            status=item.status.value,
            resolution=item.resolution.value,
            allow_ship_before_return=item.allow_ship_before_return,
            exchange_order_id=item.exchange_order_id,
            currency=item.currency,
            refunded_amount=item.refunded_amount,
            lines=[ReturnLineOut(**line.describe()) for line in item.lines],
            created_by=item.created_by,
            created_at=item.created_at,
        )


class RefundOut(BaseModel):
    status: str = Field(description="approved, declined or unavailable")
    amount: Decimal = Field(description="What was refunded by this call")
    decline_code: str | None
    return_: ReturnOut = Field(alias="return")

    model_config = ConfigDict(populate_by_name=True)


@router.post(
    "/returns", status_code=201, response_model=ReturnOut, responses={**NOT_FOUND, **CONFLICT}
)
def authorise_return(body: ReturnIn, services: ServicesDep, principal: Writer) -> ReturnOut:
    """A return authorisation (RMA) within the return window; an exchange captures its
    replacement order at once."""
    return ReturnOut.of(
        services.returns.authorise(
            body.order_id,
            [ReturnLineRequest(line.line_no, line.quantity, line.reason) for line in body.lines],
            method=body.method,
            location_code=body.location_code,
            resolution=body.resolution,
            allow_ship_before_return=body.allow_ship_before_return,
            principal=principal,
        )
    )


@router.get("/returns/{return_id}", response_model=ReturnOut, responses=NOT_FOUND)
def get_return(return_id: str, services: ServicesDep, _: Reader) -> ReturnOut:
    """A return by id or RMA number."""
    return ReturnOut.of(services.returns.get(return_id))


@router.get("/orders/{order_id}/returns", response_model=list[ReturnOut], responses=NOT_FOUND)
def order_returns(order_id: str, services: ServicesDep, _: Reader) -> list[ReturnOut]:
    return [ReturnOut.of(item) for item in services.returns.for_order(order_id)]


@router.post(
    "/returns/{return_id}/receipts",
    response_model=ReturnOut,
    responses={**NOT_FOUND, **CONFLICT},
)
def receive_return(
    return_id: str, body: ReceiveIn, services: ServicesDep, principal: Writer
) -> ReturnOut:
    """Units arrive at a location that accepts returns; the order's units become returned."""
    return ReturnOut.of(
        services.returns.receive(
            return_id,
            location_code=body.location_code,
            quantities=body.quantities,
            principal=principal,
        )
    )


@router.post(
    "/returns/{return_id}/inspection",
    response_model=ReturnOut,
    responses={**NOT_FOUND, **CONFLICT},
)
def inspect_return(
    return_id: str, body: InspectionIn, services: ServicesDep, principal: Writer
) -> ReturnOut:
    """A disposition per received unit: restock (ATP at the location), damaged (blocked),
    return_to_vendor."""
    return ReturnOut.of(
        services.returns.inspect(
            return_id,
            [(d.line_no, d.disposition, d.quantity) for d in body.dispositions],
            principal=principal,
        )
    )


@router.post(
    "/returns/{return_id}/refund", response_model=RefundOut, responses={**NOT_FOUND, **CONFLICT}
)
def refund_return(return_id: str, services: ServicesDep, principal: Writer) -> RefundOut:
    """Refund the received units (price incl. tax) minus what was refunded, to the original
    tenders."""
    done = services.returns.refund(return_id, principal=principal)
    return RefundOut(
        status=done.outcome.status.value,
        amount=done.outcome.processed.amount,
        decline_code=done.outcome.decline_code,
        return_=ReturnOut.of(done.return_),
    )


@router.post(
    "/returns/{return_id}/exchange-closure",
    response_model=ReturnOut,
    responses={**NOT_FOUND, **CONFLICT},
)
def close_exchange(return_id: str, services: ServicesDep, principal: Writer) -> ReturnOut:
    """The exchange is complete: the units came back and the replacement was sent."""
    return ReturnOut.of(services.returns.close_exchange(return_id, principal=principal))


@router.post(
    "/returns/{return_id}/cancellation",
    response_model=ReturnOut,
    responses={**NOT_FOUND, **CONFLICT},
)
def cancel_return(
    return_id: str, body: CancelIn, services: ServicesDep, principal: Writer
) -> ReturnOut:
    return ReturnOut.of(services.returns.cancel(return_id, reason=body.reason, principal=principal))
