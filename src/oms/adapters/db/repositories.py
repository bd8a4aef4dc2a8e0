"""SQL implementations of the repositories the use cases need (see :mod:`oms.services.ports`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from oms.adapters.db.bulk import insert_rows, insert_tables
from oms.adapters.db.tables import api_keys, idempotency_records, outbox_events
from oms.domain.access import Role
from oms.services.ports import EventPage, IdempotencyRecord, OutboxEvent, StoredApiKey

# How many positions a filtered read looks ahead for gaps before it answers.
_SETTLE_SCAN = 5000


class SqlApiKeyRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, key: StoredApiKey) -> None:
        self._connection.execute(
            insert(api_keys).values(
                key_id=key.key_id,
                name=key.name,
                role=key.role.value,
                location_codes=sorted(key.location_codes),
                secret_hash=key.secret_hash,
                created_at=key.created_at,
                revoked_at=key.revoked_at,
            )
        )

    def get(self, key_id: str) -> StoredApiKey | None:
        row = self._connection.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        return _api_key(row._mapping) if row else None

    def list(self) -> Sequence[StoredApiKey]:
        rows = self._connection.execute(
            select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
        )
        return [_api_key(row._mapping) for row in rows]

    def revoke(self, key_id: str, *, at: datetime) -> bool:
        result = self._connection.execute(
            update(api_keys)
            .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return result.rowcount == 1


def _api_key(row: Any) -> StoredApiKey:
    return StoredApiKey(
        key_id=row["key_id"],
        name=row["name"],
        role=Role(row["role"]),
        location_codes=frozenset(row["location_codes"] or ()),
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


class SqlIdempotencyRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def _where(self, scope: str, key: str) -> Any:
        return and_(idempotency_records.c.scope == scope, idempotency_records.c.key == key)

    def get(self, scope: str, key: str) -> IdempotencyRecord | None:
        row = self._connection.execute(
            select(idempotency_records).where(self._where(scope, key))
        ).first()
        if row is None:
            return None
        m = row._mapping
        return IdempotencyRecord(
            scope=m["scope"],
            key=m["key"],
            request_hash=m["request_hash"],
            state=m["state"],
            response_status=m["response_status"],
            response_headers=dict(m["response_headers"] or {}),
            response_body=m["response_body"],
            created_at=m["created_at"],
        )

    def try_start(self, scope: str, key: str, request_hash: str, *, at: datetime) -> bool:
        try:
            with self._connection.begin_nested():
                self._connection.execute(
                    insert(idempotency_records).values(
                        scope=scope,
                        key=key,
                        request_hash=request_hash,
                        state="in_progress",
                        created_at=at,
                    )
                )
        except IntegrityError:
            return False
        return True

    def restart_stale(
        self, scope: str, key: str, request_hash: str, *, older_than: datetime, at: datetime
    ) -> bool:
        result = self._connection.execute(
            update(idempotency_records)
            .where(
                self._where(scope, key),
                idempotency_records.c.state == "in_progress",
                idempotency_records.c.created_at < older_than,
            )
            .values(request_hash=request_hash, created_at=at)
        )
        return result.rowcount == 1

    def complete(
        self,
        scope: str,
        key: str,
        *,
        status: int,
        headers: dict[str, str],
        body: bytes,
        at: datetime,
    ) -> None:
        self._connection.execute(
            update(idempotency_records)
            .where(self._where(scope, key))
            .values(
                state="completed",
                response_status=status,
                response_headers=headers,
                response_body=body,
                completed_at=at,
            )
        )

    def abandon(self, scope: str, key: str) -> None:
        self._connection.execute(
            delete(idempotency_records).where(
                self._where(scope, key), idempotency_records.c.state == "in_progress"
            )
        )

    def purge(self, *, older_than: datetime) -> int:
        result = self._connection.execute(
            delete(idempotency_records).where(idempotency_records.c.created_at < older_than)
        )
        return int(result.rowcount)


_INSERT_OUTBOX = insert(outbox_events)
"""Built once: every committing unit of work with events runs it."""


class SqlOutboxRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, events: Sequence[OutboxEvent]) -> None:
        if not events:
            return
        rows = [
            {
                "event_id": e.event_id,
                "type": e.type,
                "source": e.source,
                "subject": e.subject,
                "time": e.time,
                "data": e.data,
            }
            for e in events
        ]
        if self._connection.dialect.name == "postgresql":
            # one array per column (binary), not six placeholders per event to render and dump
            insert_tables(self._connection, [(outbox_events, rows)])
        else:
            insert_rows(self._connection, outbox_events, rows, statement=_INSERT_OUTBOX)

    def read_after(
        self,
        position: int,
        *,
        limit: int,
        types: Sequence[str] | None = None,
        settled_before: datetime | None = None,
    ) -> EventPage:
        c = outbox_events.c
        if self._connection.dialect.name != "postgresql":
            # One writer at a time: positions become visible in the order they were taken, and a
            # rolled-back transaction gives its positions back, so there are no gaps to wait for.
            query = select(outbox_events).where(c.position > position)
            if types:
                query = query.where(c.type.in_(list(types)))
            rows = self._connection.execute(query.order_by(c.position).limit(limit)).all()
            events = [_outbox_event(row._mapping) for row in rows]
            if len(events) == limit:
                return EventPage(events, events[-1].position)
            last = self._connection.execute(select(func.max(c.position))).scalar()
            return EventPage(events, max(position, last or 0))
        after = select(outbox_events).where(c.position > position).order_by(c.position)
        if not types:  # the page itself tells where it is settled: one read
            rows = self._connection.execute(after.limit(limit)).all()
            bound = _settled_bound(rows, position, at=settled_before)
            events = [_outbox_event(row._mapping) for row in rows if row.position <= bound]
            return EventPage(events, bound)
        scanned = self._connection.execute(
            select(c.position, c.time)
            .where(c.position > position)
            .order_by(c.position)
            .limit(_SETTLE_SCAN)
        ).all()
        bound = _settled_bound(scanned, position, at=settled_before)
        if bound == position:
            return EventPage([], position)
        query = after.where(c.position <= bound, c.type.in_(list(types)))
        rows = self._connection.execute(query.limit(limit)).all()
        events = [_outbox_event(row._mapping) for row in rows]
        return EventPage(events, events[-1].position if len(events) == limit else bound)

    def claim_unpublished(self, *, limit: int) -> list[OutboxEvent]:
        query = (
            select(outbox_events)
            .where(outbox_events.c.published_at.is_(None))
            .order_by(outbox_events.c.position)
            .limit(limit)
        )
        if self._connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return [_outbox_event(row._mapping) for row in self._connection.execute(query)]

    def mark_published(self, positions: Sequence[int], *, at: datetime) -> None:
        if positions:
            self._connection.execute(
                update(outbox_events)
                .where(outbox_events.c.position.in_(list(positions)))
                .values(published_at=at)
            )


def _settled_bound(rows: Sequence[Any], position: int, *, at: datetime | None) -> int:
    """The highest position of ``rows`` (read in position order after ``position``) below which
    no transaction in flight can still add an event: it stops before the first gap whose next
    event is younger than ``at``."""
    bound = position
    for row in rows:
        if row.position != bound + 1 and at is not None and row.time >= at:
            break
        bound = row.position
    return bound


def _outbox_event(row: Any) -> OutboxEvent:
    return OutboxEvent(
        position=row["position"],
        event_id=row["event_id"],
        type=row["type"],
        source=row["source"],
        subject=row["subject"],
        time=row["time"],
        data=row["data"],
        published_at=row["published_at"],
    )
