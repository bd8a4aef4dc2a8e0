"""SQL repositories of the events area: broker deliveries, webhook subscriptions and deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update

from oms.adapters.db.tables import (
    event_deliveries,
    outbox_events,
    webhook_attempts,
    webhook_deliveries,
    webhook_subscriptions,
)
from oms.domain.webhooks import WAITING, DeliveryStatus
from oms.services.ports import (
    DueWebhook,
    EventDelivery,
    OutboxEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)

_WAITING = sorted(status.value for status in WAITING)


class SqlEventDeliveryRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, deliveries: Sequence[EventDelivery]) -> None:
        if not deliveries:
            return
        self._connection.execute(
            insert(event_deliveries),
            [
                {
                    "event_id": d.event_id,
                    "channel": d.channel,
                    "target": d.target,
                    "sequence": d.sequence,
                    "duplicate": d.duplicate,
                    "delivered_at": d.delivered_at,
                }
                for d in deliveries
            ],
        )

    def for_event(self, event_id: str) -> list[EventDelivery]:
        rows = self._connection.execute(
            select(event_deliveries)
            .where(event_deliveries.c.event_id == event_id)
            .order_by(event_deliveries.c.channel)
        )
        return [EventDelivery(**row._mapping) for row in rows]


class SqlWebhookRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    # -- subscriptions -------------------------------------------------------------------------

    def add_subscription(self, subscription: WebhookSubscription) -> None:
        self._connection.execute(
            insert(webhook_subscriptions).values(**_subscription_values(subscription))
        )

    def get_subscription(self, subscription_id: str) -> WebhookSubscription | None:
        row = self._connection.execute(
            select(webhook_subscriptions).where(
                webhook_subscriptions.c.subscription_id == subscription_id
            )
        ).first()
        return _subscription(row._mapping) if row else None

    def list_subscriptions(self) -> list[WebhookSubscription]:
        rows = self._connection.execute(
            select(webhook_subscriptions).order_by(
                webhook_subscriptions.c.created_at, webhook_subscriptions.c.subscription_id
            )
        )
        return [_subscription(row._mapping) for row in rows]

    def active_subscriptions(self) -> list[WebhookSubscription]:
        rows = self._connection.execute(
            select(webhook_subscriptions)
            .where(webhook_subscriptions.c.active.is_(True))
            .order_by(webhook_subscriptions.c.subscription_id)
        )
        return [_subscription(row._mapping) for row in rows]

    def update_subscription(self, subscription: WebhookSubscription) -> None:
        values = _subscription_values(subscription)
        del values["subscription_id"], values["created_at"], values["created_by"]
        self._connection.execute(
            update(webhook_subscriptions)
            .where(webhook_subscriptions.c.subscription_id == subscription.subscription_id)
            .values(**values)
        )

    def delete_subscription(self, subscription_id: str) -> bool:
        result = self._connection.execute(
            delete(webhook_subscriptions).where(
                webhook_subscriptions.c.subscription_id == subscription_id
            )
        )
        return result.rowcount == 1

    # -- deliveries ----------------------------------------------------------------------------

    def add_deliveries(self, deliveries: Sequence[WebhookDelivery]) -> None:
        if not deliveries:
            return
        self._connection.execute(
            insert(webhook_deliveries),
            [
                {
                    "delivery_id": d.delivery_id,
                    "subscription_id": d.subscription_id,
                    "event_id": d.event_id,
                    "event_position": d.event_position,
                    "event_type": d.event_type,
                    "status": d.status.value,
                    "attempt_count": d.attempt_count,
                    "round_attempts": d.round_attempts,
                    "replays": d.replays,
                    "next_attempt_at": d.next_attempt_at,
                    "created_at": d.created_at,
                }
                for d in deliveries
            ],
        )

    def get_delivery(self, delivery_id: str) -> WebhookDelivery | None:
        row = self._connection.execute(
            select(webhook_deliveries).where(webhook_deliveries.c.delivery_id == delivery_id)
        ).first()
        return _delivery(row._mapping) if row else None

    def list_deliveries(
        self,
        subscription_id: str,
        *,
        status: DeliveryStatus | None,
        after_position: int,
        limit: int,
    ) -> list[WebhookDelivery]:
        d = webhook_deliveries.c
        query = (
            select(webhook_deliveries)
            .where(d.subscription_id == subscription_id, d.event_position > after_position)
            .order_by(d.event_position)
            .limit(limit)
        )
        if status is not None:
            query = query.where(d.status == status.value)
        return [_delivery(row._mapping) for row in self._connection.execute(query)]

    def attempts(self, delivery_id: str) -> list[WebhookAttempt]:
        a = webhook_attempts.c
        rows = self._connection.execute(
            select(
                a.delivery_id,
                a.number,
                a.started_at,
                a.duration_ms,
                a.response_status,
                a.error,
                a.succeeded,
            )
            .where(a.delivery_id == delivery_id)
            .order_by(a.number, a.attempt_id)
        )
        return [WebhookAttempt(**row._mapping) for row in rows]

    def claim_due(
        self, *, now: datetime, limit: int, lease_token: str, leased_until: datetime
    ) -> list[DueWebhook]:
        d = webhook_deliveries.c
        s = webhook_subscriptions.c
        claimable = (
            d.status.in_(_WAITING),
            d.next_attempt_at <= now,
            or_(d.leased_until.is_(None), d.leased_until < now),
        )
        candidates = (
            select(d.delivery_id)
            .join(webhook_subscriptions, s.subscription_id == d.subscription_id)
            .where(*claimable, s.active.is_(True))
            .order_by(d.next_attempt_at, d.event_position)
            .limit(limit)
        )
        if self._connection.dialect.name == "postgresql":
            # Several workers: each skips the rows another is claiming right now.
            candidates = candidates.with_for_update(of=webhook_deliveries, skip_locked=True)
        ids = list(self._connection.execute(candidates).scalars())
        if not ids:
            return []
        # The conditional update is the claim itself: a row leased meanwhile is not taken again.
        self._connection.execute(
            update(webhook_deliveries)
            .where(d.delivery_id.in_(ids), *claimable)
            .values(lease_token=lease_token, leased_until=leased_until)
        )
        o = outbox_events.c
        rows = self._connection.execute(
            select(
                webhook_deliveries,
                s.url,
                s.secret,
                o.position.label("o_position"),
                o.event_id.label("o_event_id"),
                o.type.label("o_type"),
                o.source.label("o_source"),
                o.subject.label("o_subject"),
                o.time.label("o_time"),
                o.data.label("o_data"),
                o.published_at.label("o_published_at"),
            )
            .join(webhook_subscriptions, s.subscription_id == d.subscription_id)
            .join(outbox_events, o.position == d.event_position)
            .where(d.lease_token == lease_token)
            .order_by(d.next_attempt_at, d.event_position)
        )
        claimed = []
        for row in rows:
            m = row._mapping
            event = OutboxEvent(
                position=m["o_position"],
                event_id=m["o_event_id"],
                type=m["o_type"],
                source=m["o_source"],
                subject=m["o_subject"],
                time=m["o_time"],
                data=m["o_data"],
                published_at=m["o_published_at"],
            )
            claimed.append(
                DueWebhook(
                    delivery=_delivery(m),
                    lease_token=lease_token,
                    url=m["url"],
                    secret=m["secret"],
                    event=event,
                )
            )
        return claimed

    def finish_attempt(
        self,
        attempt: WebhookAttempt,
        *,
        lease_token: str,
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
    ) -> bool:
        d = webhook_deliveries.c
        values: dict[str, Any] = {
            "status": status.value,
            "next_attempt_at": next_attempt_at,
            "attempt_count": d.attempt_count + 1,
            "round_attempts": d.round_attempts + 1,
            "lease_token": None,
            "leased_until": None,
            "last_attempt_at": attempt.started_at,
            "last_response_status": attempt.response_status,
            "last_error": attempt.error,
            "dead_lettered_at": (
                attempt.started_at if status is DeliveryStatus.DEAD_LETTERED else None
            ),
        }
        if attempt.succeeded:
            values["succeeded_at"] = attempt.started_at
        result = self._connection.execute(
            update(webhook_deliveries)
            .where(d.delivery_id == attempt.delivery_id, d.lease_token == lease_token)
            .values(**values)
        )
        held = result.rowcount == 1
        if not held and self.get_delivery(attempt.delivery_id) is None:
            return False  # the subscription (and its deliveries) was deleted meanwhile
        self._connection.execute(
            insert(webhook_attempts).values(
                delivery_id=attempt.delivery_id,
                number=attempt.number,
                started_at=attempt.started_at,
                duration_ms=attempt.duration_ms,
                response_status=attempt.response_status,
                error=attempt.error,
                succeeded=attempt.succeeded,
            )
        )
        return held

    def replay(self, delivery_id: str, *, at: datetime) -> bool:
        d = webhook_deliveries.c
        result = self._connection.execute(
            update(webhook_deliveries)
            .where(d.delivery_id == delivery_id, d.status.not_in(_WAITING))
            .values(**_replayed(at))
        )
        return result.rowcount == 1

    def replay_dead_letters(self, subscription_id: str, *, at: datetime) -> int:
        d = webhook_deliveries.c
        result = self._connection.execute(
            update(webhook_deliveries)
            .where(
                d.subscription_id == subscription_id,
                d.status == DeliveryStatus.DEAD_LETTERED.value,
            )
            .values(**_replayed(at))
        )
        return int(result.rowcount)


def _replayed(at: datetime) -> dict[str, Any]:
    d = webhook_deliveries.c
    return {
        "status": DeliveryStatus.PENDING.value,
        "round_attempts": 0,
        "replays": d.replays + 1,
        "next_attempt_at": at,
        "lease_token": None,
        "leased_until": None,
        "dead_lettered_at": None,
    }


def _subscription_values(subscription: WebhookSubscription) -> dict[str, Any]:
    return {
        "subscription_id": subscription.subscription_id,
        "name": subscription.name,
        "url": subscription.url,
        "event_types": list(subscription.event_types),
        "secret": subscription.secret,
        "active": subscription.active,
        "created_by": subscription.created_by,
        "created_at": subscription.created_at,
        "updated_at": subscription.updated_at,
    }


def _subscription(row: Any) -> WebhookSubscription:
    return WebhookSubscription(
        subscription_id=row["subscription_id"],
        name=row["name"],
        url=row["url"],
        event_types=tuple(row["event_types"]),
        secret=row["secret"],
        active=bool(row["active"]),
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(
        delivery_id=row["delivery_id"],
        subscription_id=row["subscription_id"],
        event_id=row["event_id"],
        event_position=row["event_position"],
        event_type=row["event_type"],
        status=DeliveryStatus(row["status"]),
        attempt_count=row["attempt_count"],
        round_attempts=row["round_attempts"],
        replays=row["replays"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        last_attempt_at=row["last_attempt_at"],
        last_response_status=row["last_response_status"],
        last_error=row["last_error"],
        succeeded_at=row["succeeded_at"],
        dead_lettered_at=row["dead_lettered_at"],
    )
