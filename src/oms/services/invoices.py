"""Invoices (or receipts) per shipment, stored as JSON and printable as HTML."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from oms.domain.errors import Conflict, Invalid, NotFound
from oms.domain.invoices import DocumentKind, InvoiceLine, compute_totals, invoice_document
from oms.services.ports import (
    Clock,
    DocumentRenderer,
    Ids,
    StoredInvoice,
    UnitOfWork,
    UnitOfWorkFactory,
)


class InvoiceNotFound(NotFound):
    slug = "invoice-not-found"
    title = "No such invoice"


class InvoiceService:
    def __init__(
        self, uow: UnitOfWorkFactory, *, clock: Clock, ids: Ids, renderer: DocumentRenderer
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._ids = ids
        self._renderer = renderer

    def issue(
        self,
        order_ref: str,
        shipment_ref: str,
        *,
        currency: str,
        lines: Sequence[InvoiceLine],
        seller: dict[str, str],
        bill_to: dict[str, str],
        prices_include_tax: bool = True,
        kind: DocumentKind = DocumentKind.INVOICE,
        uow: UnitOfWork | None = None,
    ) -> StoredInvoice:
        """Issue the document of one shipment; issuing it again returns the same document."""
        for name, value in (("order_ref", order_ref), ("shipment_ref", shipment_ref)):
            if not value.strip() or len(value) > 64:
                raise Invalid(f"'{name}' must be 1 to 64 characters")
        totals = compute_totals(lines, currency=currency, prices_include_tax=prices_include_tax)
        with self._unit(uow) as unit:
            existing = unit.invoices.for_shipment(order_ref, shipment_ref)
            if existing is not None:
                expected = [(line.sku, line.quantity) for line in lines]
                issued = [(line["sku"], line["quantity"]) for line in existing.document["lines"]]
                if expected != issued:
                    raise Conflict(
                        f"shipment '{shipment_ref}' of order '{order_ref}' already has document "
                        f"{existing.number} with other lines"
                    )
                return existing
            now = self._clock.now()
            number = f"INV-{now.year}-{unit.invoices.next_number(year=now.year):06d}"
            document = invoice_document(
                number=number,
                kind=kind,
                order_ref=order_ref,
                shipment_ref=shipment_ref,
                issued_at=now,
                currency=currency,
                seller=seller,
                bill_to=bill_to,
                totals=totals,
                prices_include_tax=prices_include_tax,
            )
            invoice = StoredInvoice(
                invoice_id=self._ids.new_id(),
                number=number,
                order_ref=order_ref,
                shipment_ref=shipment_ref,
                kind=kind.value,
                currency=currency,
                document=document,
                issued_at=now,
            )
            unit.invoices.add(invoice)
            return invoice

    def get(self, invoice_id: str) -> StoredInvoice:
        with self._uow(read_only=True) as uow:
            invoice = uow.invoices.get(invoice_id)
        if invoice is None:
            raise InvoiceNotFound(f"no invoice '{invoice_id}'")
        return invoice

    def for_order(self, order_ref: str) -> list[StoredInvoice]:
        with self._uow(read_only=True) as uow:
            return uow.invoices.for_order(order_ref)

    def html(self, invoice_id: str) -> str:
        """The printable document."""
        invoice = self.get(invoice_id)
        return self._renderer.render("invoice", {"invoice": invoice.document})

    @contextmanager
    def _unit(self, uow: UnitOfWork | None) -> Iterator[UnitOfWork]:
        if uow is not None:
            yield uow
            return
        with self._uow() as own:
            yield own
            own.commit()
