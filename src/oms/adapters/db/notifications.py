"""SQL repository of the notifications area: cursor, deliveries, contact preferences."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from oms.adapters.db.tables import (
    contact_preferences,
    notification_cursors,
    notification_deliveries,
)
from oms.domain.notifications import ContactPreferences
from oms.services.ports import Delivery

_DUE = ("pending", "sending")


class SqlNotificationRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def cursor(self, name: str) -> int:
        position = self._connection.execute(
            select(notification_cursors.c.position).where(notification_cursors.c.name == name)
        ).scalar_one_or_none()
        return int(position or 0)

    def advance_cursor(self, name: str, position: int, *, at: datetime) -> None:
        moved = self._connection.execute(
            update(notification_cursors)
            .where(notification_cursors.c.name == name, notification_cursors.c.position < position)
            .values(position=position, updated_at=at)
        ).rowcount
        if (
            moved == 0
            and self._connection.execute(
                select(notification_cursors.c.name).where(notification_cursors.c.name == name)
            ).first()
            is None
        ):
            try:
                with self._connection.begin_nested():
                    self._connection.execute(
                        insert(notification_cursors).values(
                            name=name, position=position, updated_at=at
                        )
                    )
            except IntegrityError:  # another notifier created it: move it forward instead
                self.advance_cursor(name, position, at=at)

    def add_delivery(self, delivery: Delivery) -> bool:
        d = notification_deliveries
        exists = self._connection.execute(
            select(d.c.delivery_id).where(
                d.c.event_id == delivery.event_id, d.c.channel == delivery.channel
            )
        ).first()
        if exists is not None:
            return False
        try:
            with self._connection.begin_nested():
                self._connection.execute(
                    insert(d).values(
                        event_id=delivery.event_id,
                        event_type=delivery.event_type,
                        channel=delivery.channel,
                        template=delivery.template,
                        language=delivery.language,
                        recipient=delivery.recipient,
                        subject=delivery.subject,
                        body=delivery.body,
                        status=delivery.status,
                        attempts=delivery.attempts,
                        next_attempt_at=delivery.next_attempt_at,
                        last_error=delivery.last_error,
                        created_at=delivery.created_at,
                        sent_at=delivery.sent_at,
                    )
                )
        except IntegrityError:
            return False
        return True

    def due(self, *, at: datetime, limit: int) -> list[Delivery]:
        d = notification_deliveries
        rows = self._connection.execute(
            select(d)
            .where(d.c.status.in_(_DUE), d.c.next_attempt_at <= at)
            .order_by(d.c.next_attempt_at, d.c.delivery_id)
            .limit(limit)
        )
        return [_delivery(row._mapping) for row in rows]

    def claim(self, delivery_id: int, *, at: datetime, lease_until: datetime) -> bool:
        d = notification_deliveries
        result = self._connection.execute(
            update(d)
            .where(d.c.delivery_id == delivery_id, d.c.status.in_(_DUE), d.c.next_attempt_at <= at)
            .values(status="sending", next_attempt_at=lease_until, attempts=d.c.attempts + 1)
        )
        return result.rowcount == 1

    def mark_sent(self, delivery_id: int, *, at: datetime) -> None:
        d = notification_deliveries
        self._connection.execute(
            update(d)
            .where(d.c.delivery_id == delivery_id)
            .values(status="sent", sent_at=at, next_attempt_at=None, last_error=None)
        )

    def mark_failed(
        self, delivery_id: int, *, error: str, retry_at: datetime | None, at: datetime
    ) -> None:
        d = notification_deliveries
        self._connection.execute(
            update(d)
            .where(d.c.delivery_id == delivery_id)
            .values(
                status="pending" if retry_at is not None else "failed",
                next_attempt_at=retry_at,
                last_error=error[:2000],
            )
        )

    def deliveries(
        self, *, event_id: str | None = None, recipient: str | None = None
    ) -> list[Delivery]:
        d = notification_deliveries
        query = select(d).order_by(d.c.delivery_id)
        if event_id is not None:
            query = query.where(d.c.event_id == event_id)
        if recipient is not None:
            query = query.where(or_(d.c.recipient == recipient))
        return [_delivery(row._mapping) for row in self._connection.execute(query)]

    def preferences(self, email: str) -> ContactPreferences | None:
        row = self._connection.execute(
            select(contact_preferences).where(contact_preferences.c.email == email)
        ).first()
        if row is None:
            return None
        m = row._mapping
        return ContactPreferences(
            email=m["email"],
            email_enabled=bool(m["email_enabled"]),
            marketing_opt_out=bool(m["marketing_opt_out"]),
            language=m["language"],
        )

    def save_preferences(self, preferences: ContactPreferences, *, at: datetime) -> None:
        values = {
            "email_enabled": preferences.email_enabled,
            "marketing_opt_out": preferences.marketing_opt_out,
            "language": preferences.language,
            "updated_at": at,
        }
        updated = self._connection.execute(
            update(contact_preferences)
            .where(contact_preferences.c.email == preferences.email)
            .values(**values)
        ).rowcount
        if updated == 0:
            self._connection.execute(
                insert(contact_preferences).values(email=preferences.email, **values)
            )


def _delivery(m: Any) -> Delivery:
    return Delivery(
        delivery_id=m["delivery_id"],
        event_id=m["event_id"],
        event_type=m["event_type"],
        channel=m["channel"],
        template=m["template"],
        language=m["language"],
        recipient=m["recipient"],
        subject=m["subject"],
        body=m["body"],
        status=m["status"],
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        last_error=m["last_error"],
        created_at=m["created_at"],
        sent_at=m["sent_at"],
    )
