"""Payments (read side), invoices as JSON or printable HTML."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from oms.api.deps import ServicesDep, require
from oms.api.errors import NOT_FOUND, PROBLEM_RESPONSES
from oms.domain.access import Permission, Principal
from oms.services.payments import PaymentSummary
from oms.services.ports import GatewayCall, StoredInvoice

router = APIRouter(tags=["payments"], responses=PROBLEM_RESPONSES)
Reader = Annotated[Principal, Depends(require(Permission.ORDERS_READ))]


class TenderOut(BaseModel):
    tender_id: str
    kind: str
    limit: Decimal | None = Field(description="Most this tender pays; null: the rest")
    authorised_open: Decimal
    captured: Decimal
    refunded: Decimal


class PaymentTransactionOut(BaseModel):
    tender_id: str
    kind: str
    reference: str
    parent_reference: str | None
    amount: Decimal
    at: datetime
    expires_at: datetime | None
    shipment_ref: str | None
    refund_ref: str | None
    reason: str | None


class PaymentOut(BaseModel):
    order_ref: str
    currency: str
    capture_order: str
    refund_order: str
    authorised_open: Decimal = Field(description="Authorised and not yet captured or released")
    captured: Decimal
    refunded: Decimal
    net_captured: Decimal = Field(description="Captured minus refunded")
    tenders: list[TenderOut]
    transactions: list[PaymentTransactionOut]

    @classmethod
    def of(cls, s: PaymentSummary) -> PaymentOut:
        return cls(
            order_ref=s.order_ref,
            currency=s.currency,
            capture_order=s.policy.capture_order.value,
            refund_order=s.policy.refund_order.value,
            authorised_open=s.authorised_open.amount,
            captured=s.captured.amount,
            refunded=s.refunded.amount,
            net_captured=s.net_captured.amount,
            tenders=[
                TenderOut(
                    tender_id=t.tender.tender_id,
                    kind=t.tender.kind.value,
                    limit=t.tender.limit.amount if t.tender.limit else None,
                    authorised_open=t.authorised_open.amount,
                    captured=t.captured.amount,
                    refunded=t.refunded.amount,
                )
                for t in s.tenders
            ],
            transactions=[
                PaymentTransactionOut(
                    tender_id=t.tender_id,
                    kind=t.kind.value,
                    reference=t.reference,
                    parent_reference=t.parent_reference,
                    amount=t.amount.amount,
                    at=t.at,
                    expires_at=t.expires_at,
                    shipment_ref=t.shipment_ref,
                    refund_ref=t.refund_ref,
                    reason=t.reason,
                )
                for t in s.transactions
            ],
        )


class GatewayCallOut(BaseModel):
    tender_id: str
    gateway: str
    operation: str
    idempotency_key: str
    attempt: int
    request: dict[str, Any]
    outcome: str
    response: dict[str, Any] | None
    at: datetime

    @classmethod
    def of(cls, c: GatewayCall) -> GatewayCallOut:
        return cls(
            tender_id=c.tender_id,
            gateway=c.gateway,
            operation=c.operation,
            idempotency_key=c.idempotency_key,
            attempt=c.attempt,
            request=c.request,
            outcome=c.outcome,
            response=c.response,
            at=c.at,
        )


class InvoiceOut(BaseModel):
    invoice_id: str
    number: str
    order_ref: str
    shipment_ref: str
    kind: str
    currency: str
    issued_at: datetime
    document: dict[str, Any] = Field(description="Lines, tax summary and totals (decimal strings)")

    @classmethod
    def of(cls, i: StoredInvoice) -> InvoiceOut:
        return cls(
            invoice_id=i.invoice_id,
            number=i.number,
            order_ref=i.order_ref,
            shipment_ref=i.shipment_ref,
            kind=i.kind,
            currency=i.currency,
            issued_at=i.issued_at,
            document=i.document,
        )


@router.get("/payments/{order_ref}", responses=NOT_FOUND, summary="An order's payments, per tender")
def get_payment(order_ref: str, services: ServicesDep, _: Reader) -> PaymentOut:
    return PaymentOut.of(services.payments.summary(order_ref))


@router.get(
    "/payments/{order_ref}/gateway-calls",
    responses=NOT_FOUND,
    summary="Every gateway call made for an order (request, idempotency key, outcome)",
)
def get_gateway_calls(order_ref: str, services: ServicesDep, _: Reader) -> list[GatewayCallOut]:
    services.payments.summary(order_ref)  # 404 for an order without payments
    return [GatewayCallOut.of(c) for c in services.payments.gateway_calls(order_ref)]


@router.get("/payments/{order_ref}/invoices", summary="The invoices of an order's shipments")
def list_invoices(order_ref: str, services: ServicesDep, _: Reader) -> list[InvoiceOut]:
    return [InvoiceOut.of(i) for i in services.invoices.for_order(order_ref)]


@router.get("/invoices/{invoice_id}", responses=NOT_FOUND, summary="An invoice as JSON")
def get_invoice(invoice_id: str, services: ServicesDep, _: Reader) -> InvoiceOut:
    return InvoiceOut.of(services.invoices.get(invoice_id))


@router.get(
    "/invoices/{invoice_id}/document",
    responses={**NOT_FOUND, 200: {"content": {"text/html": {}}}},
    response_class=HTMLResponse,
    summary="An invoice as a printable HTML document",
)
def get_invoice_document(invoice_id: str, services: ServicesDep, _: Reader) -> HTMLResponse:
    return HTMLResponse(services.invoices.html(invoice_id))
