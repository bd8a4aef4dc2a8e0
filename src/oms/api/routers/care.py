"""Customer care: find customers, the customer view, notes, appeasements and their approval."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from oms.api.deps import ServicesDep, require
from oms.api.errors import CONFLICT, NOT_FOUND, PROBLEM_RESPONSES
from oms.domain.access import Permission, Principal
from oms.domain.care import Appeasement, Note
from oms.services.care import AppeasementResult

router = APIRouter(tags=["care"], responses=PROBLEM_RESPONSES)
Agent = Annotated[Principal, Depends(require(Permission.CARE))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoteIn(Strict):
    text: str = Field(min_length=1, max_length=4000)


class NoteOut(BaseModel):
    note_id: str
    order_id: str | None
    customer_key: str | None
    text: str
    author: str
    created_at: datetime

    @classmethod
    def of(cls, note: Note) -> NoteOut:
        return cls(
            note_id=note.note_id,
            order_id=note.order_id,
            customer_key=note.customer_key,
            text=note.text,
            author=note.author,
            created_at=note.created_at,
        )


class AppeasementIn(Strict):
    kind: str = Field(description="refund (to the original tenders) or credit (store credit)")
    reason_code: str = Field(
        description="late_delivery, damaged_packaging, missing_item, price_adjustment, "
        "service_failure, goodwill, other"
    )
    amount: Decimal | None = Field(default=None, gt=0)
    percent: Decimal | None = Field(default=None, gt=0, le=100)
    line_no: int | None = Field(default=None, ge=1, description="A line; null: the order")
    note: str | None = Field(default=None, max_length=2000)


class DecisionIn(Strict):
    reason: str | None = Field(default=None, max_length=500)


class RejectionIn(Strict):
    reason: str = Field(min_length=1, max_length=500)


class AppeasementOut(BaseModel):
    appeasement_id: str
    order_id: str
    order_number: str
    kind: str
    reason_code: str
    note: str | None
    currency: str
    amount: Decimal
    basis: dict[str, Any]
    status: str = Field(description="pending_approval, issued, rejected or failed")
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    refund_status: str | None = Field(
        default=None, description="The gateway's answer when money moved in this call"
    )

    @classmethod
    def of(cls, item: Appeasement, result: AppeasementResult | None = None) -> AppeasementOut:
        outcome = result.outcome if result else None
        return cls(
            appeasement_id=item.appeasement_id,
            order_id=item.order_id,
            order_number=item.order_number,
            kind=item.kind.value,
            reason_code=item.reason_code.value,
            note=item.note,
            currency=item.currency,
            amount=item.amount,
            basis=item.basis,
            status=item.status.value,
            requested_by=item.requested_by,
            requested_at=item.requested_at,
            decided_by=item.decided_by,
            decided_at=item.decided_at,
            decision_reason=item.decision_reason,
            refund_status=outcome.status.value if outcome else None,
        )


@router.get("/care/customers")
def find_customers(
    services: ServicesDep,
    _: Agent,
    q: Annotated[
        str, Query(min_length=2, max_length=200, description="email, phone, name or order number")
    ],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[dict[str, Any]]:
    """Customers by email, phone, name or order number, across channels."""
    return services.care_queries.find_customers(q, limit=limit)


@router.get("/care/customers/{customer_key}", responses=NOT_FOUND)
def customer_view(customer_key: str, services: ServicesDep, _: Agent) -> dict[str, Any]:
    """All orders, returns, refunds, appeasements, notes and contact history of a customer
    (key: customer id, email or phone)."""
    return services.care_queries.customer_view(customer_key)


@router.post("/care/customers/{customer_key}/notes", status_code=201, response_model=NoteOut)
def note_on_customer(
    customer_key: str, body: NoteIn, services: ServicesDep, principal: Agent
) -> NoteOut:
    return NoteOut.of(
        services.care.add_note(body.text, customer_key=customer_key, principal=principal)
    )


@router.post(
    "/orders/{order_id}/notes", status_code=201, response_model=NoteOut, responses=NOT_FOUND
)
def note_on_order(order_id: str, body: NoteIn, services: ServicesDep, principal: Agent) -> NoteOut:
    return NoteOut.of(services.care.add_note(body.text, order_id=order_id, principal=principal))


@router.post(
    "/orders/{order_id}/appeasements",
    status_code=201,
    response_model=AppeasementOut,
    responses={**NOT_FOUND, **CONFLICT},
)
def appease(
    order_id: str, body: AppeasementIn, services: ServicesDep, principal: Agent
) -> AppeasementOut:
    """A goodwill refund or credit. Within the caller's limit it is issued at once; above it,
    it waits (``pending_approval``) for a supervisor."""
    result = services.care.appease(
        order_id,
        kind=body.kind,
        reason_code=body.reason_code,
        amount=body.amount,
        percent=body.percent,
        line_no=body.line_no,
        note=body.note,
        principal=principal,
    )
    return AppeasementOut.of(result.appeasement, result)


@router.get("/appeasements", response_model=list[AppeasementOut])
def list_appeasements(
    services: ServicesDep,
    _: Agent,
    status: Annotated[str | None, Query(description="e.g. pending_approval")] = None,
    order_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AppeasementOut]:
    return [
        AppeasementOut.of(item)
        for item in services.care.list(order_id=order_id, status=status, limit=limit)
    ]


@router.get("/appeasements/{appeasement_id}", response_model=AppeasementOut, responses=NOT_FOUND)
def get_appeasement(appeasement_id: str, services: ServicesDep, _: Agent) -> AppeasementOut:
    return AppeasementOut.of(services.care.get(appeasement_id))


@router.post(
    "/appeasements/{appeasement_id}/approval",
    response_model=AppeasementOut,
    responses={**NOT_FOUND, **CONFLICT},
)
def approve_appeasement(
    appeasement_id: str, body: DecisionIn, services: ServicesDep, principal: Agent
) -> AppeasementOut:
    """A supervisor (admin key) approves: the refund goes out (or the credit is issued)."""
    result = services.care.approve(appeasement_id, reason=body.reason, principal=principal)
    return AppeasementOut.of(result.appeasement, result)


@router.post(
    "/appeasements/{appeasement_id}/rejection",
    response_model=AppeasementOut,
    responses={**NOT_FOUND, **CONFLICT},
)
def reject_appeasement(
    appeasement_id: str, body: RejectionIn, services: ServicesDep, principal: Agent
) -> AppeasementOut:
    return AppeasementOut.of(
        services.care.reject(appeasement_id, reason=body.reason, principal=principal)
    )
