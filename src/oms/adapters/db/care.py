"""SQL repository of customer care: returns, appeasements and notes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from oms.adapters.db.tables import appeasements, care_notes, order_timeline, returns
from oms.domain.care import (
    Appeasement,
    AppeasementKind,
    AppeasementReason,
    AppeasementStatus,
    Note,
)
from oms.domain.errors import Conflict
from oms.domain.returns import Resolution, Return, ReturnLine, ReturnMethod, ReturnStatus
from oms.services.ports import DuplicateRmaNumber


class ChangedConcurrently(Conflict):
    slug = "changed-concurrently"
    title = "Changed by another request"


class SqlCareRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def _lock(self, query: Any, for_update: bool) -> Any:
        if for_update and self._connection.dialect.name == "postgresql":
            return query.with_for_update()
        return query

    # -- returns -------------------------------------------------------------------------------

    @staticmethod
    def _return_row(item: Return) -> dict[str, Any]:
        return {
            "return_id": item.return_id,
            "rma_number": item.rma_number,
            "order_id": item.order_id,
            "order_number": item.order_number,
            "customer_email": item.customer_email,
            "method": item.method.value,
            "location_code": item.location_code,
            "status": item.status.value,
            "resolution": item.resolution.value,
            "allow_ship_before_return": item.allow_ship_before_return,
            "exchange_order_id": item.exchange_order_id,
            "currency": item.currency,
            "refunded_amount": item.refunded_amount,
            "lines": [line.describe() for line in item.lines],
            "created_by": item.created_by,
            "created_at": item.created_at,
        }

    def add_return(self, item: Return) -> None:
        """Insert a new return; DuplicateRmaNumber when its RMA number is taken."""
        row = self._return_row(item)
        try:
            self._connection.execute(
                insert(returns).values(**row, updated_at=item.created_at, version=item.version)
            )
        except IntegrityError as error:
            # The transaction is spoilt on PostgreSQL: the caller rolls back and tries again.
            if "rma_number" in str(error.orig).lower():
                raise DuplicateRmaNumber(item.rma_number) from error
            raise

    def save_return(self, item: Return, *, at: datetime) -> None:
        row = self._return_row(item)
        del row["created_at"]
        done = self._connection.execute(
            update(returns)
            .where(returns.c.return_id == item.return_id, returns.c.version == item.version)
            .values(**row, version=item.version + 1, updated_at=at)
        ).rowcount
        if done != 1:
            raise ChangedConcurrently(f"return {item.rma_number} was changed meanwhile; try again")
        item.version += 1

    @staticmethod
    def _return(m: Any) -> Return:
        return Return(
            return_id=m["return_id"],
            rma_number=m["rma_number"],
            order_id=m["order_id"],
            order_number=m["order_number"],
            customer_email=m["customer_email"],
            method=ReturnMethod(m["method"]),
            location_code=m["location_code"],
            resolution=Resolution(m["resolution"]),
            currency=m["currency"],
            lines=[ReturnLine.from_description(line) for line in m["lines"]],
            created_by=m["created_by"],
            created_at=m["created_at"],
            status=ReturnStatus(m["status"]),
            allow_ship_before_return=bool(m["allow_ship_before_return"]),
            exchange_order_id=m["exchange_order_id"],
            refunded_amount=Decimal(m["refunded_amount"]),
            version=m["version"],
        )

    def get_return(self, return_id: str, *, for_update: bool = False) -> Return | None:
        query = select(returns).where(
            or_(returns.c.return_id == return_id, returns.c.rma_number == return_id)
        )
        row = self._connection.execute(self._lock(query, for_update)).first()
        return self._return(row._mapping) if row else None

    def returns_for_order(self, order_id: str) -> list[Return]:
        rows = self._connection.execute(
            select(returns).where(returns.c.order_id == order_id).order_by(returns.c.created_at)
        )
        return [self._return(row._mapping) for row in rows]

    def handed_over_at(self, order_id: str) -> dict[int, datetime]:
        rows = self._connection.execute(
            select(order_timeline.c.line_no, order_timeline.c.at, order_timeline.c.new)
            .where(
                order_timeline.c.order_id == order_id,
                order_timeline.c.action == "quantity_moved",
            )
            .order_by(order_timeline.c.id)
        )
        delivered: dict[int, datetime] = {}
        shipped: dict[int, datetime] = {}
        for line_no, at, new in rows:
            state = (new or {}).get("state")
            if line_no is None:
                continue
            if state in ("delivered", "collected"):
                delivered[line_no] = at
            elif state == "shipped":
                shipped[line_no] = at
        return {**shipped, **delivered}

    # -- appeasements --------------------------------------------------------------------------

    @staticmethod
    def _appeasement_row(item: Appeasement) -> dict[str, Any]:
        return {
            "appeasement_id": item.appeasement_id,
            "order_id": item.order_id,
            "order_number": item.order_number,
            "customer_email": item.customer_email,
            "kind": item.kind.value,
            "reason_code": item.reason_code.value,
            "note": item.note,
            "currency": item.currency,
            "amount": item.amount,
            "basis": item.basis,
            "status": item.status.value,
            "requested_by": item.requested_by,
            "requested_role": item.requested_role,
            "requested_at": item.requested_at,
            "decided_by": item.decided_by,
            "decided_at": item.decided_at,
            "decision_reason": item.decision_reason,
        }

    def add_appeasement(self, item: Appeasement) -> None:
        self._connection.execute(
            insert(appeasements).values(**self._appeasement_row(item), version=item.version)
        )

    def save_appeasement(self, item: Appeasement) -> None:
        done = self._connection.execute(
            update(appeasements)
            .where(
                appeasements.c.appeasement_id == item.appeasement_id,
                appeasements.c.version == item.version,
            )
            .values(**self._appeasement_row(item), version=item.version + 1)
        ).rowcount
        if done != 1:
            raise ChangedConcurrently(
                f"appeasement {item.appeasement_id} was changed meanwhile; try again"
            )
        item.version += 1

    @staticmethod
    def _appeasement(m: Any) -> Appeasement:
        return Appeasement(
            appeasement_id=m["appeasement_id"],
            order_id=m["order_id"],
            order_number=m["order_number"],
            customer_email=m["customer_email"],
            kind=AppeasementKind(m["kind"]),
            reason_code=AppeasementReason(m["reason_code"]),
            note=m["note"],
            currency=m["currency"],
            amount=Decimal(m["amount"]),
            basis=dict(m["basis"]),
            requested_by=m["requested_by"],
            requested_role=m["requested_role"],
            requested_at=m["requested_at"],
            status=AppeasementStatus(m["status"]),
            decided_by=m["decided_by"],
            decided_at=m["decided_at"],
            decision_reason=m["decision_reason"],
            version=m["version"],
        )

    def get_appeasement(
        self, appeasement_id: str, *, for_update: bool = False
    ) -> Appeasement | None:
        query = select(appeasements).where(appeasements.c.appeasement_id == appeasement_id)
        row = self._connection.execute(self._lock(query, for_update)).first()
        return self._appeasement(row._mapping) if row else None

    def appeasements(
        self, *, order_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Appeasement]:
        query = select(appeasements).order_by(appeasements.c.requested_at).limit(limit)
        if order_id is not None:
            query = query.where(appeasements.c.order_id == order_id)
        if status is not None:
            query = query.where(appeasements.c.status == status)
        return [self._appeasement(row._mapping) for row in self._connection.execute(query)]

    # -- notes ---------------------------------------------------------------------------------

    def add_note(self, note: Note) -> None:
        self._connection.execute(
            insert(care_notes).values(
                note_id=note.note_id,
                order_id=note.order_id,
                customer_key=note.customer_key,
                text=note.text,
                author=note.author,
                created_at=note.created_at,
            )
        )
