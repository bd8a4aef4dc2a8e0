"""Reading orders for care agents and integrators: search with cursor pagination and an order's
history (timeline and events). Plain SQL to typed rows; no domain objects are rebuilt here."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    Integer,
    String,
    and_,
    column,
    exists,
    or_,
    select,
    table,
)

from oms.domain.errors import Invalid
from oms.domain.orders import Channel

# The read side names the columns it reads (the schema of record is adapters/db/tables.py;
# the layers keep queries and adapters apart).
orders = table(
    "orders",
    column("order_id", String),
    column("order_number", String),
    column("channel", String),
    column("channel_reference", String),
    column("customer_name", String),
    column("customer_email", String),
    column("customer_phone", String),
    column("status", String),
    column("on_hold", Boolean),
    column("currency", String),
    column("total", String),
    column("created_at", DateTime(timezone=True)),
)
order_lines = table(
    "order_lines",
    column("order_id", String),
    column("pickup_location_code", String),
)
order_line_quantities = table(
    "order_line_quantities",
    column("order_id", String),
    column("location_code", String),
)
order_timeline = table(
    "order_timeline",
    column("id", Integer),
    column("order_id", String),
    column("at", DateTime(timezone=True)),
    column("actor", String),
    column("action", String),
    column("reason", String),
    column("line_no", Integer),
    column("old", JSON),
    column("new", JSON),
)
outbox_events = table(
    "outbox_events",
    column("position", Integer),
    column("event_id", String),
    column("type", String),
    column("subject", String),
    column("time", DateTime(timezone=True)),
    column("data", JSON),
)


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes, PostgreSQL aware ones."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _bound(value: datetime) -> datetime:
    """Compare in UTC: SQLite stores the UTC wall time as text."""
    if value.tzinfo is None:
        raise Invalid(
            "dates need a time zone",
            errors=[{"pointer": "query:created_from", "detail": "add a UTC offset, e.g. Z"}],
        )
    return value.astimezone(UTC)


MAX_PAGE = 200


@dataclass(frozen=True)
class OrderSummary:
    order_id: str
    order_number: str
    channel: str
    channel_reference: str
    customer_name: str | None
    customer_email: str | None
    customer_phone: str | None
    status: str
    on_hold: bool
    currency: str
    total: Decimal
    created_at: datetime


@dataclass(frozen=True)
class OrderPage:
    items: list[OrderSummary]
    next_cursor: str | None


@dataclass(frozen=True)
class TimelineRow:
    at: datetime
    actor: str
    action: str
    reason: str | None
    line_no: int | None
    old: dict[str, Any] | None
    new: dict[str, Any] | None


@dataclass(frozen=True)
class EventRow:
    position: int
    event_id: str
    type: str
    time: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class OrderSearch:
    order_number: str | None = None
    channel_reference: str | None = None
    email: str | None = None
    phone: str | None = None
    status: str | None = None
    channel: str | None = None
    location_code: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    """Exclusive upper bound."""


def _encode_cursor(created_at: datetime, order_id: str) -> str:
    raw = f"{created_at.isoformat()}|{order_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, order_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("naive")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid(
            "the cursor is not one this API gave out",
            errors=[{"pointer": "query:cursor", "detail": "malformed cursor"}],
        ) from None
    return created_at, order_id


class OrderQueries:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def search(
        self, filters: OrderSearch, *, limit: int = 50, cursor: str | None = None
    ) -> OrderPage:
        """Newest first, ties broken by order id, so pages never skip or repeat an order."""
        if not 1 <= limit <= MAX_PAGE:
            raise Invalid(
                f"limit must be between 1 and {MAX_PAGE}",
                errors=[{"pointer": "query:limit", "detail": f"1..{MAX_PAGE}"}],
            )
        if filters.channel is not None and filters.channel not in {c.value for c in Channel}:
            raise Invalid(
                f"unknown channel '{filters.channel}'",
                errors=[{"pointer": "query:channel", "detail": "unknown channel"}],
            )
        query = select(
            orders.c.order_id,
            orders.c.order_number,
            orders.c.channel,
            orders.c.channel_reference,
            orders.c.customer_name,
            orders.c.customer_email,
            orders.c.customer_phone,
            orders.c.status,
            orders.c.on_hold,
            orders.c.currency,
            orders.c.total,
            orders.c.created_at,
        )
        conditions = []
        if filters.order_number:
            conditions.append(orders.c.order_number == filters.order_number.strip())
        if filters.channel_reference:
            conditions.append(orders.c.channel_reference == filters.channel_reference.strip())
        if filters.email:
            conditions.append(orders.c.customer_email == filters.email.strip().lower())
        if filters.phone:
            digits = "".join(c for c in filters.phone if c.isdigit() or c == "+")
            conditions.append(orders.c.customer_phone == digits)
        if filters.status:
            conditions.append(orders.c.status == filters.status)
        if filters.channel:
            conditions.append(orders.c.channel == filters.channel)
        if filters.location_code:
            conditions.append(
                or_(
                    exists().where(
                        order_line_quantities.c.order_id == orders.c.order_id,
                        order_line_quantities.c.location_code == filters.location_code,
                    ),
                    exists().where(
                        order_lines.c.order_id == orders.c.order_id,
                        order_lines.c.pickup_location_code == filters.location_code,
                    ),
                )
            )
        if filters.created_from:
            conditions.append(orders.c.created_at >= _bound(filters.created_from))
        if filters.created_to:
            conditions.append(orders.c.created_at < _bound(filters.created_to))
        if cursor:
            created_at, order_id = _decode_cursor(cursor)
            conditions.append(
                or_(
                    orders.c.created_at < _bound(created_at),
                    and_(orders.c.created_at == _bound(created_at), orders.c.order_id < order_id),
                )
            )
        query = (
            query.where(*conditions)
            .order_by(orders.c.created_at.desc(), orders.c.order_id.desc())
            .limit(limit + 1)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        items = [
            OrderSummary(
                **{
                    **row._mapping,
                    "total": Decimal(str(row.total)),
                    "created_at": _utc(row.created_at),
                }
            )
            for row in rows[:limit]
        ]
        next_cursor = (
            _encode_cursor(items[-1].created_at, items[-1].order_id) if len(rows) > limit else None
        )
        return OrderPage(items=items, next_cursor=next_cursor)

    def history(self, order_id: str) -> tuple[list[TimelineRow], list[EventRow]]:
        """The order's timeline (oldest first) and its committed events (in commit order)."""
        with self._engine.connect() as connection:
            timeline = [
                TimelineRow(**{**row._mapping, "at": _utc(row.at)})
                for row in connection.execute(
                    select(
                        order_timeline.c.at,
                        order_timeline.c.actor,
                        order_timeline.c.action,
                        order_timeline.c.reason,
                        order_timeline.c.line_no,
                        order_timeline.c.old,
                        order_timeline.c.new,
                    )
                    .where(order_timeline.c.order_id == order_id)
                    .order_by(order_timeline.c.id)
                )
            ]
            events = [
                EventRow(**{**row._mapping, "time": _utc(row.time)})
                for row in connection.execute(
                    select(
                        outbox_events.c.position,
                        outbox_events.c.event_id,
                        outbox_events.c.type,
                        outbox_events.c.time,
                        outbox_events.c.data,
                    )
                    .where(outbox_events.c.subject == f"orders/{order_id}")
                    .order_by(outbox_events.c.position)
                )
            ]
        return timeline, events
