"""The customer-care read side: find customers by email, phone, name or order number, and one
view of a customer across channels: orders, returns, refunds, appeasements, notes and the
contact history (the notifications sent or attempted). Plain SQL to plain rows.

A customer is who the orders name: the channel's customer id when there is one, otherwise the
email, otherwise the phone. The view gathers every order that shares the id, the email or the
phone, so an app order with an id and a store order with only the email meet in one view.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    Integer,
    String,
    Text,
    column,
    func,
    or_,
    select,
    table,
)

from oms.domain.errors import Invalid, NotFound

orders = table(
    "orders",
    column("order_id", String),
    column("order_number", String),
    column("channel", String),
    column("customer_id", String),
    column("customer_name", String),
    column("customer_email", String),
    column("customer_phone", String),
    column("status", String),
    column("on_hold", Boolean),
    column("currency", String),
    column("total", String),
    column("created_at", DateTime(timezone=True)),
)
returns = table(
    "returns",
    column("return_id", String),
    column("rma_number", String),
    column("order_id", String),
    column("order_number", String),
    column("method", String),
    column("location_code", String),
    column("status", String),
    column("resolution", String),
    column("exchange_order_id", String),
    column("currency", String),
    column("refunded_amount", String),
    column("lines", JSON),
    column("created_at", DateTime(timezone=True)),
)
appeasements = table(
    "appeasements",
    column("appeasement_id", String),
    column("order_id", String),
    column("order_number", String),
    column("kind", String),
    column("reason_code", String),
    column("note", Text),
    column("currency", String),
    column("amount", String),
    column("status", String),
    column("requested_by", String),
    column("requested_at", DateTime(timezone=True)),
    column("decided_by", String),
    column("decided_at", DateTime(timezone=True)),
    column("decision_reason", Text),
)
care_notes = table(
    "care_notes",
    column("note_id", String),
    column("order_id", String),
    column("customer_key", String),
    column("text", Text),
    column("author", String),
    column("created_at", DateTime(timezone=True)),
)
payment_transactions = table(
    "payment_transactions",
    column("transaction_id", Integer),
    column("order_ref", String),
    column("tender_id", String),
    column("kind", String),
    column("reference", String),
    column("amount", String),
    column("currency", String),
    column("at", DateTime(timezone=True)),
    column("refund_ref", String),
    column("reason", String),
)
notification_deliveries = table(
    "notification_deliveries",
    column("delivery_id", Integer),
    column("event_type", String),
    column("channel", String),
    column("template", String),
    column("recipient", String),
    column("subject", Text),
    column("status", String),
    column("attempts", Integer),
    column("last_error", Text),
    column("created_at", DateTime(timezone=True)),
    column("sent_at", DateTime(timezone=True)),
)


class CustomerNotFound(NotFound):
    slug = "customer-not-found"
    title = "No such customer"


def _money(value: Any) -> str:
    return str(Decimal(str(value)))


def _time(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _phone(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit() or ch == "+")


class CareQueries:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def find_customers(self, query: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """Customers whose email, phone, name or order number matches ``query`` (email, phone
        and order number exactly; the name by its parts, case-insensitively)."""
        text = query.strip()
        if len(text) < 2:
            raise Invalid("search for at least 2 characters")
        conditions = [
            func.lower(orders.c.customer_email) == text.lower(),
            func.upper(orders.c.order_number) == text.upper(),
            func.lower(orders.c.customer_name).like(
                "%" + text.lower().replace("%", "").replace("_", "") + "%"
            ),
        ]
        if len(_phone(text)) >= 5:
            conditions.append(orders.c.customer_phone == _phone(text))
        rows = self._read(
            select(
                orders.c.customer_id,
                orders.c.customer_name,
                orders.c.customer_email,
                orders.c.customer_phone,
                orders.c.order_number,
                orders.c.channel,
                orders.c.created_at,
            )
            .where(or_(*conditions))
            .order_by(orders.c.created_at.desc())
            .limit(500)
        )
        found: dict[str, dict[str, Any]] = {}
        for row in rows:
            key = row["customer_id"] or row["customer_email"] or row["customer_phone"]
            if not key:
                continue
            entry = found.setdefault(
                key,
                {
                    "customer_key": key,
                    "name": row["customer_name"],
                    "email": row["customer_email"],
                    "phone": row["customer_phone"],
                    "orders": 0,
                    "channels": [],
                    "last_order_at": _time(row["created_at"]),
                },
            )
            entry["orders"] += 1
            if row["channel"] not in entry["channels"]:
                entry["channels"].append(row["channel"])
            for name in ("name", "email", "phone"):
                entry[name] = entry[name] or row[f"customer_{name}"]
        return list(found.values())[:limit]

    def customer_view(self, key: str) -> dict[str, Any]:
        """Everything care needs about one customer (``key``: customer id, email or phone)."""
        text = key.strip()
        conditions = [
            orders.c.customer_id == text,
            func.lower(orders.c.customer_email) == text.lower(),
        ]
        if len(_phone(text)) >= 5:
            conditions.append(orders.c.customer_phone == _phone(text))
        first = self._read(select(orders).where(or_(*conditions)))
        if not first:
            raise CustomerNotFound(f"no customer '{key}'")
        # widen once: the same person's orders that carry only their email or only their id
        ids = {r["customer_id"] for r in first if r["customer_id"]}
        emails = {r["customer_email"].lower() for r in first if r["customer_email"]}
        phones = {r["customer_phone"] for r in first if r["customer_phone"]}
        widened = [orders.c.customer_id.in_(ids)] if ids else []
        if emails:
            widened.append(func.lower(orders.c.customer_email).in_(emails))
        if phones:
            widened.append(orders.c.customer_phone.in_(phones))
        order_rows = self._read(
            select(orders).where(or_(*widened)).order_by(orders.c.created_at.desc())
        )
        order_ids = [r["order_id"] for r in order_rows]
        numbers = [r["order_number"] for r in order_rows]
        keys = {k.lower() for k in (text, *emails, *phones, *ids)}
        return_rows = self._read(
            select(returns).where(returns.c.order_id.in_(order_ids)).order_by(returns.c.created_at)
        )
        refund_rows = self._read(
            select(payment_transactions)
            .where(
                payment_transactions.c.order_ref.in_(numbers),
                payment_transactions.c.kind == "refund",
            )
            .order_by(payment_transactions.c.transaction_id)
        )
        appeasement_rows = self._read(
            select(appeasements)
            .where(appeasements.c.order_id.in_(order_ids))
            .order_by(appeasements.c.requested_at)
        )
        note_rows = self._read(
            select(care_notes)
            .where(
                or_(
                    care_notes.c.order_id.in_(order_ids),
                    func.lower(care_notes.c.customer_key).in_(keys),
                )
            )
            .order_by(care_notes.c.created_at)
        )
        contact_rows = (
            self._read(
                select(notification_deliveries)
                .where(func.lower(notification_deliveries.c.recipient).in_(emails))
                .order_by(notification_deliveries.c.delivery_id)
            )
            if emails
            else []
        )
        newest = order_rows[0]
        return {
            "customer": {
                "customer_key": newest["customer_id"]
                or newest["customer_email"]
                or newest["customer_phone"],
                "customer_ids": sorted(ids),
                "name": next((r["customer_name"] for r in order_rows if r["customer_name"]), None),
                "emails": sorted(emails),
                "phones": sorted(phones),
            },
            "orders": [
                {
                    "order_id": r["order_id"],
                    "order_number": r["order_number"],
                    "channel": r["channel"],
                    "status": r["status"],
                    "on_hold": bool(r["on_hold"]),
                    "currency": r["currency"],
                    "total": _money(r["total"]),
                    "created_at": _time(r["created_at"]),
                }
                for r in order_rows
            ],
            "returns": [
                {
                    "return_id": r["return_id"],
                    "rma_number": r["rma_number"],
                    "order_number": r["order_number"],
                    "method": r["method"],
                    "location_code": r["location_code"],
                    "status": r["status"],
                    "resolution": r["resolution"],
                    "exchange_order_id": r["exchange_order_id"],
                    "refunded_amount": _money(r["refunded_amount"]),
                    "currency": r["currency"],
                    "lines": r["lines"],
                    "created_at": _time(r["created_at"]),
                }
                for r in return_rows
            ],
            "refunds": [
                {
                    "order_number": r["order_ref"],
                    "tender_id": r["tender_id"],
                    "reference": r["reference"],
                    "refund_ref": r["refund_ref"],
                    "amount": _money(r["amount"]),
                    "currency": r["currency"],
                    "reason": r["reason"],
                    "at": _time(r["at"]),
                }
                for r in refund_rows
            ],
            "appeasements": [
                {
                    "appeasement_id": r["appeasement_id"],
                    "order_number": r["order_number"],
                    "kind": r["kind"],
                    "reason_code": r["reason_code"],
                    "amount": _money(r["amount"]),
                    "currency": r["currency"],
                    "status": r["status"],
                    "requested_by": r["requested_by"],
                    "requested_at": _time(r["requested_at"]),
                    "decided_by": r["decided_by"],
                    "decision_reason": r["decision_reason"],
                }
                for r in appeasement_rows
            ],
            "notes": [
                {
                    "note_id": r["note_id"],
                    "order_id": r["order_id"],
                    "customer_key": r["customer_key"],
                    "text": r["text"],
                    "author": r["author"],
                    "created_at": _time(r["created_at"]),
                }
                for r in note_rows
            ],
            "contacts": [
                {
                    "channel": r["channel"],
                    "event_type": r["event_type"],
                    "template": r["template"],
                    "recipient": r["recipient"],
                    "subject": r["subject"],
                    "status": r["status"],
                    "attempts": r["attempts"],
                    "last_error": r["last_error"],
                    "created_at": _time(r["created_at"]),
                    "sent_at": _time(r["sent_at"]),
                }
                for r in contact_rows
            ],
        }

    def _read(self, query: Any) -> list[dict[str, Any]]:
        with self._engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
