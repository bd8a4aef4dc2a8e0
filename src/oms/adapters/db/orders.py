"""Orders in SQL: an order is one row, its lines, their quantity buckets, holds, cancel requests
and an append-only timeline."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from oms.adapters.db.bulk import among, array_rows, insert_rows, insert_tables, key_chunks
from oms.adapters.db.tables import (
    order_cancel_requests,
    order_holds,
    order_line_quantities,
    order_lines,
    order_timeline,
    orders,
)
from oms.domain.orders import (
    Address,
    CancelRequest,
    CancelRequestStatus,
    Channel,
    Customer,
    Delivery,
    DeliveryMethod,
    Hold,
    HoldType,
    Order,
    OrderChangedConcurrently,
    OrderLine,
    PaymentReference,
    QuantityState,
)
from oms.services.ports import DuplicateChannelReference, DuplicateOrderNumber, WaitingLine

_BY_CHANNEL_REFERENCE = select(orders.c.order_id).where(
    orders.c.channel == bindparam("k_channel"),
    orders.c.channel_reference == bindparam("k_reference"),
)
"""Built once: the first statement of every capture."""
_INSERT = {
    table.name: insert(table)
    for table in (
        orders,
        order_lines,
        order_line_quantities,
        order_holds,
        order_cancel_requests,
        order_timeline,
    )
}
"""Built once: a statement object reused keeps its cache key (no per-call construction)."""


_KEPT_COLUMNS = frozenset({"order_id", "created_at", "version", "updated_at"})
"""Columns a save never compares: the key, the creation time, and what every save sets."""
_ORDER_UPDATES: dict[tuple[str, ...], Any] = {}
_READ_VERSIONS = array_rows("k", order_id=String, version=Integer)
_BUMP_VERSIONS = (
    update(orders)
    .where(
        orders.c.order_id == _READ_VERSIONS.c.order_id,
        orders.c.version == _READ_VERSIONS.c.version,
    )
    .values(
        version=orders.c.version + 1,
        updated_at=bindparam("k_at", type_=orders.c.updated_at.type),
    )
)
"""PostgreSQL: the next version of many orders (each if its version is the one read)."""


def _order_update(changed: tuple[str, ...]) -> Any:
    """UPDATE of an order's ``changed`` columns, its version and time, if its version is the one
    read (built once per set of columns)."""
    statement = _ORDER_UPDATES.get(changed)
    if statement is None:
        statement = _ORDER_UPDATES[changed] = (
            update(orders)
            .where(
                orders.c.order_id == bindparam("b_order_id"),
                orders.c.version == bindparam("b_version"),
            )
            .values({name: bindparam(name) for name in (*changed, "version", "updated_at")})
        )
    return statement


def _children_of(order: Order) -> set[str]:
    return {
        table.name
        for table, rows in (
            (order_holds, order.holds),
            (order_cancel_requests, order.cancel_requests),
        )
        if rows
    }


def _address_document(address: Address | None) -> dict[str, Any] | None:
    if address is None:
        return None
    return {
        "name": address.name,
        "line1": address.line1,
        "line2": address.line2,
        "city": address.city,
        "region": address.region,
        "postal_code": address.postal_code,
        "country": address.country,
        "phone": address.phone,
        "latitude": address.latitude,
        "longitude": address.longitude,
    }


def _address(document: dict[str, Any] | None) -> Address | None:
    return Address(**document) if document else None


# labels of the order row's two flags (no column of orders has these names)
_HAS_HOLDS = "oms_has_holds"
_HAS_REQUESTS = "oms_has_cancel_requests"


class SqlOrderRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._loaded_lines: dict[str, set[int]] = {}
        self._stored_lines: dict[tuple[str, int], dict[str, Any]] = {}
        """Line rows as read or last written: a save skips the lines that did not change."""
        self._stored_children: dict[str, set[str]] = {}
        """Which of the holds and cancel requests tables hold rows of a loaded order: a save
        deletes and rewrites only those (most orders have neither)."""
        self._identity: dict[str, tuple[Order, bool]] = {}
        """The orders this unit of work has read or written, and whether their row is locked
        (read for update, inserted or updated): reading one again returns the same object
        instead of five queries (an activity of the order's process, a step after a step)."""
        self._stored_orders: dict[str, dict[str, Any]] = {}
        """Order rows as read or last written: a save sets only the columns that changed (and
        the version and time, always)."""

    def forget(self) -> None:
        """Drop the orders kept (the transaction rolled back: they may be ahead of the rows)."""
        self._identity.clear()
        self._stored_orders.clear()

    # -- writing -------------------------------------------------------------------------------

    def add(self, order: Order, *, at: datetime) -> None:
        """Insert a new order; DuplicateChannelReference when its channel reference is taken,
        DuplicateOrderNumber when its number is."""
        row = self._order_row(order, at=at)
        lines = [self._line_row(order, line) for line in order.lines]
        postgres = self._connection.dialect.name == "postgresql"
        try:
            if postgres:
                # the order, its lines, quantities, holds and timeline in one statement
                insert_tables(
                    self._connection,
                    [(orders, [row]), (order_lines, lines), *self._children_rows([order])],
                )
            else:
                self._connection.execute(_INSERT["orders"], [row])
        except IntegrityError as error:
            # The transaction is spoilt on PostgreSQL: the caller rolls back and reads the winner.
            message = str(error.orig).lower()
            if "channel" in message:
                raise DuplicateChannelReference(order.channel_reference) from error
            if "order_number" in message:
                raise DuplicateOrderNumber(order.order_number) from error
            raise
        if postgres:
            order.timeline.clear()
        else:
            self._connection.execute(_INSERT["order_lines"], lines)
            self._insert_children(order)
        self._loaded_lines[order.order_id] = {line.line_no for line in order.lines}
        self._stored_children[order.order_id] = _children_of(order)
        self._identity[order.order_id] = (order, True)
        self._stored_orders[order.order_id] = row

    def save(self, order: Order, *, at: datetime) -> None:
        """Write back a loaded order (optimistic version check)."""
        self.save_many([order], at=at)

    def save_many(self, batch: Sequence[Order], *, at: datetime) -> None:
        """Write back loaded orders in a few statements (each with its optimistic version
        check): bulk re-planning saves thousands of orders at once."""
        if not batch:
            return
        by_columns: dict[tuple[str, ...], list[tuple[Order, dict[str, Any]]]] = {}
        written: list[tuple[str, dict[str, Any]]] = []
        for order in batch:
            row = self._order_row(order, at=at)
            row["version"] = order.version + 1
            before = self._stored_orders.get(order.order_id)
            changed = tuple(
                name
                for name, value in row.items()
                if name not in _KEPT_COLUMNS and (before is None or before.get(name) != value)
            )
            values = {name: row[name] for name in changed}
            values.update(
                version=row["version"],
                updated_at=at,
                b_order_id=order.order_id,
                b_version=order.version,
            )
            by_columns.setdefault(changed, []).append((order, values))
            written.append((order.order_id, row))
        for changed, group in by_columns.items():
            if not changed and len(group) > 1 and self._connection.dialect.name == "postgresql":
                # only their version and time change: one statement, ids and versions as arrays
                bumped = self._connection.execute(
                    _BUMP_VERSIONS,
                    {
                        "k_order_id": [order.order_id for order, _ in group],
                        "k_version": [order.version for order, _ in group],
                        "k_at": at,
                    },
                ).rowcount
                if bumped != len(group):
                    raise OrderChangedConcurrently(
                        "an order was changed by another request meanwhile; try again"
                    )
                continue
            statement = _order_update(changed)
            if len(group) == 1 or not self._connection.dialect.supports_sane_multi_rowcount:
                for order, values in group:
                    if self._connection.execute(statement, values).rowcount != 1:
                        raise OrderChangedConcurrently(
                            f"order {order.order_number} was changed by another request; try again"
                        )
            elif self._connection.execute(statement, [v for _, v in group]).rowcount != len(group):
                raise OrderChangedConcurrently(
                    "an order was changed by another request meanwhile; try again"
                )
        self._stored_orders.update(written)
        existing: list[dict[str, Any]] = []
        new: list[dict[str, Any]] = []
        for order in batch:
            order.version += 1
            known = self._loaded_lines.get(order.order_id, set())
            for line in order.lines:
                row = self._line_row(order, line)
                if line.line_no not in known:
                    new.append(row)
                elif self._stored_lines.get((order.order_id, line.line_no)) != row:
                    existing.append(row)
                self._stored_lines[(order.order_id, line.line_no)] = row
        if existing:
            self._connection.execute(
                update(order_lines)
                .where(
                    order_lines.c.order_id == bindparam("b_order_id"),
                    order_lines.c.line_no == bindparam("b_line_no"),
                )
                .values(
                    {
                        name: bindparam(name)
                        for name in existing[0]
                        if name not in ("order_id", "line_no")
                    }
                ),
                [
                    {**row, "b_order_id": row["order_id"], "b_line_no": row["line_no"]}
                    for row in existing
                ],
            )
        if new:
            self._insert(order_lines, new)
        for table in (order_line_quantities, order_holds, order_cancel_requests):
            ids = [
                order.order_id
                for order in batch
                if table is order_line_quantities
                or (stored := self._stored_children.get(order.order_id)) is None
                or table.name in stored
            ]  # holds and cancel requests only of orders that had some when read or written
            for chunk in key_chunks(self._connection, ids):
                self._connection.execute(
                    delete(table).where(among(self._connection, table.c.order_id, chunk))
                )
        self._insert_children_of(batch)
        for order in batch:
            self._loaded_lines[order.order_id] = {line.line_no for line in order.lines}
            self._stored_children[order.order_id] = _children_of(order)
            self._identity[order.order_id] = (order, True)

    def _insert(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        insert_rows(self._connection, table, rows, statement=_INSERT[table.name])

    def _insert_children(self, order: Order) -> None:
        self._insert_children_of([order])

    def _insert_children_of(self, batch: Sequence[Order]) -> None:
        for table, rows in self._children_rows(batch):
            self._insert(table, rows)
        for order in batch:
            order.timeline.clear()

    @staticmethod
    def _children_rows(batch: Sequence[Order]) -> list[tuple[Table, list[dict[str, Any]]]]:
        """The rows of the orders' quantity buckets, holds, cancel requests and new timeline
        entries, per table (tables without rows left out)."""
        found: list[tuple[Table, list[dict[str, Any]]]] = []
        quantities = [
            {
                "order_id": order.order_id,
                "line_no": line.line_no,
                "state": state.value,
                "location_code": location_code or "",
                "quantity": quantity,
            }
            for order in batch
            for line in order.lines
            for (state, location_code), quantity in sorted(line.buckets.items(), key=str)
            if quantity > 0
        ]
        if quantities:
            found.append((order_line_quantities, quantities))
        holds = [(order, hold) for order in batch for hold in order.holds]
        if holds:
            found.append(
                (
                    order_holds,
                    [
                        {
                            "hold_id": hold.hold_id,
                            "order_id": order.order_id,
                            "type": hold.type.value,
                            "reason": hold.reason,
                            "placed_by": hold.placed_by,
                            "placed_at": hold.placed_at,
                            "released_by": hold.released_by,
                            "released_at": hold.released_at,
                            "release_reason": hold.release_reason,
                        }
                        for order, hold in holds
                    ],
                )
            )
        requests = [(order, request) for order in batch for request in order.cancel_requests]
        if requests:
            found.append(
                (
                    order_cancel_requests,
                    [
                        {
                            "request_id": request.request_id,
                            "order_id": order.order_id,
                            "line_no": request.line_no,
                            "location_code": request.location_code,
                            "quantity": request.quantity,
                            "reason": request.reason,
                            "requested_by": request.requested_by,
                            "requested_at": request.requested_at,
                            "status": request.status.value,
                            "decided_by": request.decided_by,
                            "decided_at": request.decided_at,
                            "decision_reason": request.decision_reason,
                        }
                        for order, request in requests
                    ],
                )
            )
        timeline = [(order, entry) for order in batch for entry in order.timeline]
        if timeline:
            found.append(
                (
                    order_timeline,
                    [
                        {
                            "order_id": order.order_id,
                            "at": entry.at,
                            "actor": entry.actor,
                            "action": entry.action,
                            "reason": entry.reason,
                            "line_no": entry.line_no,
                            "old": entry.old,
                            "new": entry.new,
                        }
                        for order, entry in timeline
                    ],
                )
            )
        return found

    @staticmethod
    def _order_row(order: Order, *, at: datetime) -> dict[str, Any]:
        return {
            "order_id": order.order_id,
            "order_number": order.order_number,
            "channel": order.channel.value,
            "channel_reference": order.channel_reference,
            "customer_id": order.customer.customer_id,
            "customer_name": order.customer.name,
            "customer_email": order.customer.email,
            "customer_phone": order.customer.phone,
            "currency": order.currency,
            "subtotal": order.subtotal,
            "discount_total": order.discount_total,
            "tax_total": order.tax_total,
            "shipping_charge": order.shipping_charge,
            "total": order.total,
            "status": order.status,
            "on_hold": order.on_hold,
            "payments": [
                {
                    "method": payment.method,
                    "token": payment.token,
                    "amount": str(payment.amount) if payment.amount is not None else None,
                    "currency": payment.currency,
                }
                for payment in order.payments
            ],
            "notes": order.notes,
            "tags": list(order.tags),
            "created_at": order.created_at,
            "updated_at": at,
            "version": order.version,
        }

    @staticmethod
    def _line_row(order: Order, line: OrderLine) -> dict[str, Any]:
        delivery = line.delivery
        return {
            "order_id": order.order_id,
            "line_no": line.line_no,
            "sku": line.sku,
            "quantity": line.quantity,
            "unit_price": line.unit_price,
            "discount": line.discount,
            "tax": line.tax,
            "delivery_method": delivery.method.value,
            "ship_address": _address_document(delivery.address),
            "pickup_location_code": delivery.pickup_location_code,
            "requested_on": delivery.requested_on,
            "gift": delivery.gift,
            "gift_message": delivery.gift_message,
            "promised_on": line.promised_on,
            "status": line.status,
        }

    # -- reading -------------------------------------------------------------------------------

    def id_for_channel_reference(self, channel: str, channel_reference: str) -> str | None:
        found = self._connection.execute(
            _BY_CHANNEL_REFERENCE, {"k_channel": channel, "k_reference": channel_reference}
        ).scalar()
        return str(found) if found is not None else None

    def id_for_number(self, order_number: str) -> str | None:
        found = self._connection.execute(
            select(orders.c.order_id).where(orders.c.order_number == order_number)
        ).scalar()
        return str(found) if found is not None else None

    def get(self, order_id: str, *, for_update: bool = False) -> Order | None:
        return self.get_many([order_id], for_update=for_update).get(order_id)

    def get_many(self, order_ids: Sequence[str], *, for_update: bool = False) -> dict[str, Order]:
        """Orders by id (unknown ids are left out), a few statements per chunk of ids. An order
        this unit of work already holds (locked, when a lock is asked for) is returned as is."""
        # SQLite: the unit of work holds the write lock (BEGIN IMMEDIATE), so a read is locked.
        postgres = self._connection.dialect.name == "postgresql"
        locking = for_update and postgres
        found: dict[str, Order] = {}
        missing: list[str] = []
        for order_id in dict.fromkeys(order_ids):
            kept = self._identity.get(order_id)
            if kept is not None and (kept[1] or not locking):
                found[order_id] = kept[0]
            else:
                missing.append(order_id)
        for chunk in key_chunks(self._connection, missing):
            loaded = self._load(list(chunk), for_update=for_update)
            for order_id, order in loaded.items():
                self._identity[order_id] = (order, locking or not postgres)
            found.update(loaded)
        return found

    def _load(self, order_ids: list[str], *, for_update: bool) -> dict[str, Order]:
        # Whether an order has holds or cancel requests comes with its row: most have neither,
        # and those two tables are read only for the orders that do.
        query = select(
            orders,
            exists().where(order_holds.c.order_id == orders.c.order_id).label(_HAS_HOLDS),
            exists()
            .where(order_cancel_requests.c.order_id == orders.c.order_id)
            .label(_HAS_REQUESTS),
        ).where(among(self._connection, orders.c.order_id, order_ids))
        if for_update and self._connection.dialect.name == "postgresql":
            query = query.order_by(orders.c.order_id).with_for_update()
        # .all(): one fetchall per statement (iterating a result fetches row by row)
        order_rows = self._connection.execute(query).mappings().all()
        if not order_rows:
            return {}
        line_rows: dict[str, list[Any]] = {}
        for line in (
            self._connection.execute(
                select(order_lines)
                .where(among(self._connection, order_lines.c.order_id, order_ids))
                .order_by(order_lines.c.order_id, order_lines.c.line_no)
            )
            .mappings()
            .all()
        ):
            line_rows.setdefault(line["order_id"], []).append(line)
            self._stored_lines[(line["order_id"], line["line_no"])] = dict(line)
        buckets: dict[tuple[str, int], dict[tuple[QuantityState, str | None], int]] = {}
        for bucket in (
            self._connection.execute(
                select(order_line_quantities).where(
                    among(self._connection, order_line_quantities.c.order_id, order_ids)
                )
            )
            .mappings()
            .all()
        ):
            buckets.setdefault((bucket["order_id"], bucket["line_no"]), {})[
                (QuantityState(bucket["state"]), bucket["location_code"] or None)
            ] = bucket["quantity"]
        with_holds = [row["order_id"] for row in order_rows if row[_HAS_HOLDS]]
        with_requests = [row["order_id"] for row in order_rows if row[_HAS_REQUESTS]]
        holds: dict[str, list[Hold]] = {}
        for hold in (
            self._connection.execute(
                select(order_holds)
                .where(among(self._connection, order_holds.c.order_id, with_holds))
                .order_by(order_holds.c.placed_at, order_holds.c.hold_id)
            )
            .mappings()
            .all()
            if with_holds
            else ()
        ):
            holds.setdefault(hold["order_id"], []).append(
                Hold(
                    hold_id=hold["hold_id"],
                    type=HoldType(hold["type"]),
                    reason=hold["reason"],
                    placed_by=hold["placed_by"],
                    placed_at=hold["placed_at"],
                    released_by=hold["released_by"],
                    released_at=hold["released_at"],
                    release_reason=hold["release_reason"],
                )
            )
        requests: dict[str, list[CancelRequest]] = {}
        for request in (
            self._connection.execute(
                select(order_cancel_requests)
                .where(among(self._connection, order_cancel_requests.c.order_id, with_requests))
                .order_by(order_cancel_requests.c.requested_at, order_cancel_requests.c.request_id)
            )
            .mappings()
            .all()
            if with_requests
            else ()
        ):
            requests.setdefault(request["order_id"], []).append(
                CancelRequest(
                    request_id=request["request_id"],
                    line_no=request["line_no"],
                    location_code=request["location_code"],
                    quantity=request["quantity"],
                    reason=request["reason"],
                    requested_by=request["requested_by"],
                    requested_at=request["requested_at"],
                    status=CancelRequestStatus(request["status"]),
                    decided_by=request["decided_by"],
                    decided_at=request["decided_at"],
                    decision_reason=request["decision_reason"],
                )
            )
        found: dict[str, Order] = {}
        for row in order_rows:
            order_id = row["order_id"]
            lines = [
                OrderLine(
                    line_no=line["line_no"],
                    sku=line["sku"],
                    quantity=line["quantity"],
                    unit_price=line["unit_price"],
                    discount=line["discount"],
                    tax=line["tax"],
                    delivery=Delivery(
                        method=DeliveryMethod(line["delivery_method"]),
                        address=_address(line["ship_address"]),
                        pickup_location_code=line["pickup_location_code"],
                        requested_on=line["requested_on"],
                        gift=line["gift"],
                        gift_message=line["gift_message"],
                    ),
                    promised_on=line["promised_on"],
                    buckets=buckets.get((order_id, line["line_no"]), {}),
                )
                for line in line_rows.get(order_id, [])
            ]
            self._loaded_lines[order_id] = {line.line_no for line in lines}
            self._stored_children[order_id] = {
                table.name
                for table, rows in (
                    (order_holds, holds.get(order_id)),
                    (order_cancel_requests, requests.get(order_id)),
                )
                if rows
            }
            stored = dict(row)
            del stored[_HAS_HOLDS], stored[_HAS_REQUESTS]
            self._stored_orders[order_id] = stored
            found[order_id] = Order(
                order_id=order_id,
                order_number=row["order_number"],
                channel=Channel(row["channel"]),
                channel_reference=row["channel_reference"],
                customer=Customer(
                    customer_id=row["customer_id"],
                    name=row["customer_name"],
                    email=row["customer_email"],
                    phone=row["customer_phone"],
                ),
                currency=row["currency"],
                lines=lines,
                created_at=row["created_at"],
                shipping_charge=row["shipping_charge"],
                payments=[
                    PaymentReference(
                        method=payment["method"],
                        token=payment["token"],
                        amount=Decimal(payment["amount"]) if payment.get("amount") else None,
                        currency=payment.get("currency"),
                    )
                    for payment in row["payments"]
                ],
                notes=row["notes"],
                tags=list(row["tags"]),
                holds=holds.get(order_id, []),
                cancel_requests=requests.get(order_id, []),
                version=row["version"],
            )
        return found

    def waiting_lines(self, sku: str, *, limit: int = 1000) -> list[WaitingLine]:
        """Backordered units of ``sku``, oldest order first (then line number)."""
        rows = self._connection.execute(
            select(
                order_line_quantities.c.order_id,
                order_line_quantities.c.line_no,
                order_line_quantities.c.quantity,
                orders.c.created_at,
            )
            .join(
                order_lines,
                and_(
                    order_lines.c.order_id == order_line_quantities.c.order_id,
                    order_lines.c.line_no == order_line_quantities.c.line_no,
                ),
            )
            .join(orders, orders.c.order_id == order_line_quantities.c.order_id)
            .where(
                order_line_quantities.c.state == QuantityState.BACKORDERED.value,
                order_lines.c.sku == sku,
            )
            .order_by(orders.c.created_at, orders.c.order_id, order_line_quantities.c.line_no)
            .limit(limit)
        ).all()
        return [WaitingLine(row[0], row[1], row[2], row[3]) for row in rows]

    def waiting_skus(self, *, limit: int = 500) -> list[str]:
        """SKUs that have backordered units, in SKU order."""
        rows = self._connection.execute(
            select(order_lines.c.sku)
            .join(
                order_line_quantities,
                and_(
                    order_lines.c.order_id == order_line_quantities.c.order_id,
                    order_lines.c.line_no == order_line_quantities.c.line_no,
                ),
            )
            .where(order_line_quantities.c.state == QuantityState.BACKORDERED.value)
            .group_by(order_lines.c.sku)
            .order_by(order_lines.c.sku)
            .limit(limit)
        ).all()
        return [row[0] for row in rows]

    def waiting_quantities(self, skus: Sequence[str]) -> dict[str, int]:
        """Backordered units per SKU (what future supply must cover first)."""
        rows = self._connection.execute(
            select(order_lines.c.sku, func.sum(order_line_quantities.c.quantity))
            .join(
                order_lines,
                and_(
                    order_lines.c.order_id == order_line_quantities.c.order_id,
                    order_lines.c.line_no == order_line_quantities.c.line_no,
                ),
            )
            .where(
                order_line_quantities.c.state == QuantityState.BACKORDERED.value,
                among(self._connection, order_lines.c.sku, list(skus)),
            )
            .group_by(order_lines.c.sku)
        ).all()
        return {row[0]: int(row[1]) for row in rows}
