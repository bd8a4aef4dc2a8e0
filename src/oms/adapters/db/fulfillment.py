"""Fulfillments: one row each, its lines, packages and history in a JSON document."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from oms.adapters.db.tables import fulfillments
from oms.domain.fulfillment import Fulfillment, FulfillmentChangedConcurrently


def _from_row(row: Any) -> Fulfillment:
    return Fulfillment.from_row(
        id=row["id"],
        order_id=row["order_id"],
        order_number=row["order_number"],
        location_code=row["location_code"],
        destination_code=row["destination_code"],
        delivery_method=row["delivery_method"],
        status=row["status"],
        pickup_code=row["pickup_code"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        document=row["document"],
    )


class SqlFulfillmentRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, fulfillment: Fulfillment) -> None:
        self._connection.execute(
            insert(fulfillments).values(
                id=fulfillment.id,
                order_id=fulfillment.order_id,
                order_number=fulfillment.order_number,
                location_code=fulfillment.location_code,
                destination_code=fulfillment.destination_code,
                delivery_method=fulfillment.delivery_method,
                status=fulfillment.status.value,
                pickup_code=fulfillment.pickup_code,
                document=fulfillment.to_document(),
                created_at=fulfillment.created_at,
                updated_at=fulfillment.updated_at,
                version=1,
            )
        )
        fulfillment.version = 1

    def save(self, fulfillment: Fulfillment) -> None:
        """Write the fulfillment back; refused when someone else saved it since it was read."""
        result = self._connection.execute(
            update(fulfillments)
            .where(
                fulfillments.c.id == fulfillment.id,
                fulfillments.c.version == fulfillment.version,
            )
            .values(
                status=fulfillment.status.value,
                pickup_code=fulfillment.pickup_code,
                document=fulfillment.to_document(),
                updated_at=fulfillment.updated_at,
                version=fulfillment.version + 1,
            )
        )
        if result.rowcount != 1:
            raise FulfillmentChangedConcurrently(
                f"fulfillment {fulfillment.id} was changed concurrently",
                fulfillment_id=fulfillment.id,
            )
        fulfillment.version += 1

    def get(self, fulfillment_id: str, *, for_update: bool = False) -> Fulfillment | None:
        query = select(fulfillments).where(fulfillments.c.id == fulfillment_id)
        if for_update and self._connection.dialect.name == "postgresql":
            query = query.with_for_update()
        row = self._connection.execute(query).mappings().first()
        return _from_row(row) if row is not None else None

    def for_order(self, order_id: str) -> list[Fulfillment]:
        rows = self._connection.execute(
            select(fulfillments)
            .where(fulfillments.c.order_id == order_id)
            .order_by(fulfillments.c.created_at, fulfillments.c.id)
        ).mappings()
        return [_from_row(row) for row in rows]

    def list(
        self,
        *,
        location_codes: Sequence[str] | None = None,
        status: str | None = None,
        order_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Fulfillment]:
        query = select(fulfillments)
        if location_codes is not None:
            query = query.where(
                or_(
                    fulfillments.c.location_code.in_(list(location_codes)),
                    fulfillments.c.destination_code.in_(list(location_codes)),
                )
            )
        if status:
            query = query.where(fulfillments.c.status == status)
        if order_id:
            query = query.where(fulfillments.c.order_id == order_id)
        if after:
            query = query.where(fulfillments.c.id > after)
        rows = self._connection.execute(query.order_by(fulfillments.c.id).limit(limit)).mappings()
        return [_from_row(row) for row in rows]
