"""SQL repositories of the payments area: payment ledgers, gateway calls and invoices."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from oms.adapters.db.tables import (
    invoice_series,
    invoices,
    payment_gateway_calls,
    payment_orders,
    payment_tenders,
    payment_transactions,
)
from oms.domain.payments import Money, SplitTenderOrder, Tender, TenderKind, TenderPolicy
from oms.services.ports import (
    GatewayCall,
    PaymentTransaction,
    StoredInvoice,
    StoredPaymentOrder,
    TransactionKind,
)


class SqlPaymentRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add_order(self, order: StoredPaymentOrder) -> None:
        self._connection.execute(
            insert(payment_orders).values(
                order_ref=order.order_ref,
                currency=order.currency,
                capture_order=order.policy.capture_order.value,
                refund_order=order.policy.refund_order.value,
                customer=order.customer,
                created_at=order.created_at,
            )
        )

    def get_order(self, order_ref: str, *, for_update: bool = False) -> StoredPaymentOrder | None:
        query = select(payment_orders).where(payment_orders.c.order_ref == order_ref)
        if for_update and self._connection.dialect.name == "postgresql":
            query = query.with_for_update()
        row = self._connection.execute(query).first()
        if row is None:
            return None
        m = row._mapping
        return StoredPaymentOrder(
            order_ref=m["order_ref"],
            currency=m["currency"],
            policy=TenderPolicy(
                SplitTenderOrder(m["capture_order"]), SplitTenderOrder(m["refund_order"])
            ),
            customer=dict(m["customer"]) if m["customer"] else None,
            created_at=m["created_at"],
        )

    def add_tender(self, order_ref: str, tender: Tender, *, position: int) -> None:
        self._connection.execute(
            insert(payment_tenders).values(
                order_ref=order_ref,
                tender_id=tender.tender_id,
                position=position,
                kind=tender.kind.value,
                token=tender.token,
                limit_amount=tender.limit.amount if tender.limit else None,
            )
        )

    def tenders(self, order_ref: str) -> list[Tender]:
        # the order's currency (of the limits) comes along: one statement, not two
        rows = self._connection.execute(
            select(payment_tenders, payment_orders.c.currency)
            .join(payment_orders, payment_orders.c.order_ref == payment_tenders.c.order_ref)
            .where(payment_tenders.c.order_ref == order_ref)
            .order_by(payment_tenders.c.position)
        )
        result = []
        for row in rows:
            m = row._mapping
            limit = None
            if m["limit_amount"] is not None and m["currency"] is not None:
                limit = Money(m["limit_amount"], m["currency"])
            result.append(Tender(m["tender_id"], TenderKind(m["kind"]), m["token"], limit))
        return result

    def add_transaction(self, transaction: PaymentTransaction) -> None:
        self._connection.execute(
            insert(payment_transactions).values(
                order_ref=transaction.order_ref,
                tender_id=transaction.tender_id,
                kind=transaction.kind.value,
                reference=transaction.reference,
                parent_reference=transaction.parent_reference,
                amount=transaction.amount.amount,
                currency=transaction.amount.currency,
                at=transaction.at,
                expires_at=transaction.expires_at,
                shipment_ref=transaction.shipment_ref,
                refund_ref=transaction.refund_ref,
                reason=transaction.reason,
            )
        )

    def transactions(self, order_ref: str) -> list[PaymentTransaction]:
        rows = self._connection.execute(
            select(payment_transactions)
            .where(payment_transactions.c.order_ref == order_ref)
            .order_by(payment_transactions.c.transaction_id)
        )
        return [_transaction(row._mapping) for row in rows]

    def add_gateway_call(self, call: GatewayCall) -> None:
        self._connection.execute(
            insert(payment_gateway_calls).values(
                order_ref=call.order_ref,
                tender_id=call.tender_id,
                gateway=call.gateway,
                operation=call.operation,
                idempotency_key=call.idempotency_key,
                attempt=call.attempt,
                request=call.request,
                outcome=call.outcome,
                response=call.response,
                at=call.at,
            )
        )

    def gateway_calls(self, order_ref: str) -> list[GatewayCall]:
        rows = self._connection.execute(
            select(payment_gateway_calls)
            .where(payment_gateway_calls.c.order_ref == order_ref)
            .order_by(payment_gateway_calls.c.call_id)
        )
        return [
            GatewayCall(
                order_ref=m["order_ref"],
                tender_id=m["tender_id"],
                gateway=m["gateway"],
                operation=m["operation"],
                idempotency_key=m["idempotency_key"],
                attempt=m["attempt"],
                request=dict(m["request"]),
                outcome=m["outcome"],
                response=dict(m["response"]) if m["response"] is not None else None,
                at=m["at"],
            )
            for m in (row._mapping for row in rows)
        ]


def _transaction(m: Any) -> PaymentTransaction:
    return PaymentTransaction(
        order_ref=m["order_ref"],
        tender_id=m["tender_id"],
        kind=TransactionKind(m["kind"]),
        reference=m["reference"],
        parent_reference=m["parent_reference"],
        amount=Money(m["amount"], m["currency"]),
        at=m["at"],
        expires_at=m["expires_at"],
        shipment_ref=m["shipment_ref"],
        refund_ref=m["refund_ref"],
        reason=m["reason"],
    )


class SqlInvoiceRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, invoice: StoredInvoice) -> None:
        self._connection.execute(
            insert(invoices).values(
                invoice_id=invoice.invoice_id,
                number=invoice.number,
                order_ref=invoice.order_ref,
                shipment_ref=invoice.shipment_ref,
                kind=invoice.kind,
                currency=invoice.currency,
                document=invoice.document,
                issued_at=invoice.issued_at,
            )
        )

    def get(self, invoice_id: str) -> StoredInvoice | None:
        row = self._connection.execute(
            select(invoices).where(invoices.c.invoice_id == invoice_id)
        ).first()
        return _invoice(row._mapping) if row else None

    def for_shipment(self, order_ref: str, shipment_ref: str) -> StoredInvoice | None:
        row = self._connection.execute(
            select(invoices).where(
                invoices.c.order_ref == order_ref, invoices.c.shipment_ref == shipment_ref
            )
        ).first()
        return _invoice(row._mapping) if row else None

    def for_order(self, order_ref: str) -> list[StoredInvoice]:
        rows = self._connection.execute(
            select(invoices).where(invoices.c.order_ref == order_ref).order_by(invoices.c.number)
        )
        return [_invoice(row._mapping) for row in rows]

    def next_number(self, *, year: int) -> int:
        """The next number of the year's series: one upsert of the series' counter, whose row
        stays locked until this transaction ends (concurrent issuers take turns there; a
        rolled-back issue gives its number back). Constant time, however many were issued."""
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        counter = invoice_series.c
        bump = (
            dialect.insert(invoice_series)
            .values(series=f"INV-{year}", last_number=1)
            .on_conflict_do_update(
                index_elements=[counter.series], set_={"last_number": counter.last_number + 1}
            )
            .returning(counter.last_number)
        )
        return int(self._connection.execute(bump).scalar_one())


def _invoice(m: Any) -> StoredInvoice:
    return StoredInvoice(
        invoice_id=m["invoice_id"],
        number=m["number"],
        order_ref=m["order_ref"],
        shipment_ref=m["shipment_ref"],
        kind=m["kind"],
        currency=m["currency"],
        document=dict(m["document"]),
        issued_at=m["issued_at"],
    )
