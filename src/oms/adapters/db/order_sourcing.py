"""SQL storage for order sourcing: refusals per order line, and the order look-ups re-planning
needs (orders allocated at a location, the most recent orders)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select

from oms.adapters.db.bulk import among, key_chunks
from oms.adapters.db.tables import order_line_quantities, order_line_refusals, orders
from oms.services.ports import LineRefusal


class SqlOrderRefusalRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, refusal: LineRefusal) -> None:
        self._connection.execute(
            insert(order_line_refusals).values(
                order_id=refusal.order_id,
                line_no=refusal.line_no,
                location_code=refusal.location_code,
                quantity=refusal.quantity,
                reason=refusal.reason[:500],
                trigger=refusal.trigger,
                refused_at=refusal.refused_at,
            )
        )

    def for_order(self, order_id: str) -> dict[int, frozenset[str]]:
        rows = self._connection.execute(
            select(order_line_refusals.c.line_no, order_line_refusals.c.location_code).where(
                order_line_refusals.c.order_id == order_id
            )
        )
        found: dict[int, set[str]] = {}
        for line_no, code in rows:
            found.setdefault(int(line_no), set()).add(str(code))
        return {line_no: frozenset(codes) for line_no, codes in found.items()}

    def for_orders(self, order_ids: Sequence[str]) -> dict[str, dict[int, frozenset[str]]]:
        found: dict[str, dict[int, set[str]]] = {}
        ids = list(dict.fromkeys(order_ids))
        for chunk in key_chunks(self._connection, ids):
            rows = self._connection.execute(
                select(
                    order_line_refusals.c.order_id,
                    order_line_refusals.c.line_no,
                    order_line_refusals.c.location_code,
                ).where(among(self._connection, order_line_refusals.c.order_id, chunk))
            )
            for order_id, line_no, code in rows:
                found.setdefault(str(order_id), {}).setdefault(int(line_no), set()).add(str(code))
        return {
            order_id: {line_no: frozenset(codes) for line_no, codes in lines.items()}
            for order_id, lines in found.items()
        }

    def list_for_order(self, order_id: str) -> list[LineRefusal]:
        rows = self._connection.execute(
            select(order_line_refusals)
            .where(order_line_refusals.c.order_id == order_id)
            .order_by(order_line_refusals.c.refusal_id)
        )
        return [_refusal(row._mapping) for row in rows]

    def orders_allocated_at(self, location_code: str, *, limit: int = 100_000) -> list[str]:
        rows = self._connection.execute(
            select(order_line_quantities.c.order_id)
            .join(orders, orders.c.order_id == order_line_quantities.c.order_id)
            .where(
                order_line_quantities.c.location_code == location_code,
                order_line_quantities.c.state == "allocated",
            )
            .group_by(order_line_quantities.c.order_id, orders.c.created_at)
            .order_by(orders.c.created_at, order_line_quantities.c.order_id)
            .limit(limit)
        )
        return [str(order_id) for (order_id,) in rows]

    def orders_with_open_units(self, *, limit: int = 1000) -> list[str]:
        rows = self._connection.execute(
            select(order_line_quantities.c.order_id)
            .join(orders, orders.c.order_id == order_line_quantities.c.order_id)
            .where(order_line_quantities.c.state == "open")
            .group_by(order_line_quantities.c.order_id, orders.c.created_at)
            .order_by(orders.c.created_at, order_line_quantities.c.order_id)
            .limit(limit)
        )
        return [str(order_id) for (order_id,) in rows]

    def last_order_ids(self, count: int) -> list[str]:
        rows = self._connection.execute(
            select(orders.c.order_id)
            .order_by(orders.c.created_at.desc(), orders.c.order_id.desc())
            .limit(count)
        )
        return [str(order_id) for (order_id,) in rows]


def _refusal(row: Any) -> LineRefusal:
    return LineRefusal(
        order_id=row["order_id"],
        line_no=int(row["line_no"]),
        location_code=row["location_code"],
        quantity=int(row["quantity"]),
        reason=row["reason"],
        trigger=row["trigger"],
        refused_at=row["refused_at"],
    )
