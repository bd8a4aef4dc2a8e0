"""Webhooks: subscriptions, fan-out of committed events, signed delivery with retries, replay.

Delivery is at-least-once, as webhooks always are: every request carries the event's id as
``webhook-id`` so that a receiver can drop a repeat. A delivery is leased to one worker for one
attempt (a conditional update), so several workers never send the same attempt twice.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta

from oms.domain.errors import Invalid
from oms.domain.webhooks import (
    DeliveryAlreadyWaiting,
    DeliveryNotFound,
    DeliveryStatus,
    InvalidSubscription,
    SubscriptionNotFound,
    after_failure,
    is_success,
    make_secret,
    signed_headers,
    validate_patterns,
    validate_target_url,
    wants,
)
from oms.services.ports import (
    Clock,
    DueWebhook,
    Ids,
    OutboxEvent,
    UnitOfWork,
    UnitOfWorkFactory,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSender,
    WebhookSubscription,
)

log = logging.getLogger("oms.webhooks")

USER_AGENT = "oms-webhooks/1"


@dataclass(frozen=True)
class WebhookPolicy:
    max_attempts: int = 8
    retry_base: timedelta = timedelta(seconds=30)
    retry_cap: timedelta = timedelta(hours=6)
    timeout_seconds: float = 10.0
    batch_size: int = 50
    concurrency: int = 8
    """How many requests one worker has in flight at once."""

    @property
    def lease(self) -> timedelta:
        """How long one worker holds a delivery for an attempt before another may take it."""
        return timedelta(seconds=2 * self.timeout_seconds + 30)


@dataclass(frozen=True)
class CreatedSubscription:
    subscription: WebhookSubscription
    secret: str
    """The signing secret: shown this once."""


@dataclass(frozen=True)
class DeliveryDetail:
    delivery: WebhookDelivery
    attempts: list[WebhookAttempt]


@dataclass(frozen=True)
class DeliveryRun:
    attempted: int = 0
    succeeded: int = 0
    failed: int = 0
    dead_lettered: int = 0


def fan_out(uow: UnitOfWork, events: Sequence[OutboxEvent], *, clock: Clock, ids: Ids) -> int:
    """Within the relay's transaction: one pending delivery per (event, wanting subscription)."""
    if not events:
        return 0
    subscriptions = uow.webhooks.active_subscriptions()
    if not subscriptions:
        return 0
    at = clock.now()
    deliveries = [
        WebhookDelivery(
            delivery_id=ids.new_id(),
            subscription_id=subscription.subscription_id,
            event_id=event.event_id,
            event_position=event.position,
            event_type=event.type,
            status=DeliveryStatus.PENDING,
            attempt_count=0,
            round_attempts=0,
            replays=0,
            next_attempt_at=at,
            created_at=at,
        )
        for event in events
        for subscription in subscriptions
        if wants(subscription.event_types, event.type)
    ]
    uow.webhooks.add_deliveries(deliveries)
    return len(deliveries)


def payload(event: OutboxEvent) -> bytes:
    """The request body: the event as structured CloudEvents JSON."""
    return json.dumps(event.cloud_event(), separators=(",", ":"), sort_keys=True).encode()


class WebhookService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        ids: Ids,
        sender: WebhookSender,
        policy: WebhookPolicy | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._ids = ids
        self._sender = sender
        self.policy = policy or WebhookPolicy()

    # -- subscriptions -------------------------------------------------------------------------

    def create_subscription(
        self,
        *,
        name: str,
        url: str,
        event_types: Sequence[str],
        active: bool = True,
        created_by: str,
    ) -> CreatedSubscription:
        name = _valid_name(name)
        secret = make_secret(self._random_bytes(32))
        now = self._clock.now()
        subscription = WebhookSubscription(
            subscription_id=self._ids.new_id(),
            name=name,
            url=validate_target_url(url),
            event_types=tuple(validate_patterns(event_types)),
            secret=secret,
            active=active,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
        with self._uow() as uow:
            uow.webhooks.add_subscription(subscription)
            uow.commit()
        log.info(
            "webhook subscription created",
            extra={"subscription_id": subscription.subscription_id, "url": subscription.url},
        )
        return CreatedSubscription(subscription=subscription, secret=secret)

    def list_subscriptions(self) -> list[WebhookSubscription]:
        with self._uow(read_only=True) as uow:
            return uow.webhooks.list_subscriptions()

    def get_subscription(self, subscription_id: str) -> WebhookSubscription:
        with self._uow(read_only=True) as uow:
            return _subscription_or_404(uow, subscription_id)

    def update_subscription(
        self,
        subscription_id: str,
        *,
        name: str | None = None,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        active: bool | None = None,
    ) -> WebhookSubscription:
        with self._uow() as uow:
            current = _subscription_or_404(uow, subscription_id)
            changed = replace(
                current,
                name=_valid_name(name) if name is not None else current.name,
                url=validate_target_url(url) if url is not None else current.url,
                event_types=(
                    tuple(validate_patterns(event_types))
                    if event_types is not None
                    else current.event_types
                ),
                active=active if active is not None else current.active,
                updated_at=self._clock.now(),
            )
            uow.webhooks.update_subscription(changed)
            uow.commit()
        return changed

    def rotate_secret(self, subscription_id: str) -> CreatedSubscription:
        """A new signing secret (shown once); requests signed from now on use it."""
        secret = make_secret(self._random_bytes(32))
        with self._uow() as uow:
            current = _subscription_or_404(uow, subscription_id)
            changed = replace(current, secret=secret, updated_at=self._clock.now())
            uow.webhooks.update_subscription(changed)
            uow.commit()
        log.info("webhook secret rotated", extra={"subscription_id": subscription_id})
        return CreatedSubscription(subscription=changed, secret=secret)

    def delete_subscription(self, subscription_id: str) -> None:
        """Remove a subscription with its deliveries and their attempts."""
        with self._uow() as uow:
            if not uow.webhooks.delete_subscription(subscription_id):
                raise SubscriptionNotFound(f"no webhook subscription '{subscription_id}'")
            uow.commit()

    # -- deliveries ----------------------------------------------------------------------------

    def deliveries(
        self,
        subscription_id: str,
        *,
        status: DeliveryStatus | str | None = None,
        after_position: int = 0,
        limit: int = 100,
    ) -> list[WebhookDelivery]:
        if not 1 <= limit <= 1000:
            raise Invalid("'limit' must be between 1 and 1000")
        if after_position < 0:
            raise Invalid("'after' must be a position >= 0")
        wanted = _status(status)
        with self._uow(read_only=True) as uow:
            _subscription_or_404(uow, subscription_id)
            return uow.webhooks.list_deliveries(
                subscription_id, status=wanted, after_position=after_position, limit=limit
            )

    def delivery(self, delivery_id: str) -> DeliveryDetail:
        with self._uow(read_only=True) as uow:
            delivery = uow.webhooks.get_delivery(delivery_id)
            if delivery is None:
                raise DeliveryNotFound(f"no webhook delivery '{delivery_id}'")
            return DeliveryDetail(delivery=delivery, attempts=uow.webhooks.attempts(delivery_id))

    def replay(self, delivery_id: str) -> WebhookDelivery:
        """Send a dead-lettered (or already succeeded) delivery again, with a fresh retry budget."""
        with self._uow() as uow:
            if not uow.webhooks.replay(delivery_id, at=self._clock.now()):
                current = uow.webhooks.get_delivery(delivery_id)
                if current is None:
                    raise DeliveryNotFound(f"no webhook delivery '{delivery_id}'")
                raise DeliveryAlreadyWaiting(
                    f"delivery '{delivery_id}' is {current.status.value}: it will be sent "
                    "without a replay",
                    delivery_status=current.status.value,
                )
            delivery = uow.webhooks.get_delivery(delivery_id)
            uow.commit()
        assert delivery is not None
        log.info("webhook delivery replayed", extra={"delivery_id": delivery_id})
        return delivery

    def replay_dead_letters(self, subscription_id: str) -> int:
        with self._uow() as uow:
            _subscription_or_404(uow, subscription_id)
            count = uow.webhooks.replay_dead_letters(subscription_id, at=self._clock.now())
            uow.commit()
        log.info(
            "webhook dead letters replayed",
            extra={"subscription_id": subscription_id, "count": count},
        )
        return count

    def deliver_due(self, *, limit: int | None = None) -> DeliveryRun:
        """Make one attempt at each delivery that is due now; returns what happened."""
        now = self._clock.now()
        lease_token = self._ids.new_id()
        with self._uow() as uow:
            due = uow.webhooks.claim_due(
                now=now,
                limit=limit or self.policy.batch_size,
                lease_token=lease_token,
                leased_until=now + self.policy.lease,
            )
            uow.commit()
        run = DeliveryRun()
        if len(due) > 1 and self.policy.concurrency > 1:
            with ThreadPoolExecutor(min(self.policy.concurrency, len(due))) as pool:
                statuses = list(pool.map(self._attempt, due))
        else:
            statuses = [self._attempt(item) for item in due]
        for status in statuses:
            run = DeliveryRun(
                attempted=run.attempted + 1,
                succeeded=run.succeeded + (status is DeliveryStatus.SUCCEEDED),
                failed=run.failed + (status is not DeliveryStatus.SUCCEEDED),
                dead_lettered=run.dead_lettered + (status is DeliveryStatus.DEAD_LETTERED),
            )
        return run

    def _attempt(self, item: DueWebhook) -> DeliveryStatus:
        started_at = self._clock.now()
        body = payload(item.event)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signed_headers(item.secret, message_id=item.event.event_id, at=started_at, body=body),
        }
        response = self._sender.send(
            item.url, headers=headers, body=body, timeout=self.policy.timeout_seconds
        )
        succeeded = response.error is None and is_success(response.status_code)
        error = response.error
        if not succeeded and error is None:
            error = f"HTTP {response.status_code}: {response.body_excerpt}".strip().rstrip(":")
        if succeeded:
            status, next_attempt_at = DeliveryStatus.SUCCEEDED, None
        else:
            status, next_attempt_at = after_failure(
                item.delivery.round_attempts + 1,
                max_attempts=self.policy.max_attempts,
                at=self._clock.now(),
                base=self.policy.retry_base,
                cap=self.policy.retry_cap,
            )
        attempt = WebhookAttempt(
            delivery_id=item.delivery.delivery_id,
            number=item.delivery.attempt_count + 1,
            started_at=started_at,
            duration_ms=response.duration_ms,
            response_status=response.status_code,
            error=error,
            succeeded=succeeded,
        )
        with self._uow() as uow:
            held = uow.webhooks.finish_attempt(
                attempt,
                lease_token=item.lease_token,
                status=status,
                next_attempt_at=next_attempt_at,
            )
            uow.commit()
        log.log(
            logging.INFO if succeeded else logging.WARNING,
            "webhook attempt",
            extra={
                "delivery_id": attempt.delivery_id,
                "event_id": item.event.event_id,
                "attempt": attempt.number,
                "status": status.value,
                "response_status": response.status_code,
                "duration_ms": response.duration_ms,
                "error": error,
                "lease_held": held,
            },
        )
        return status

    def _random_bytes(self, count: int) -> bytes:
        token = self._ids.new_token(count)
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _valid_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidSubscription(
            "a subscription needs a name of 1 to 200 characters",
            errors=[{"pointer": "#/name", "detail": "empty or too long"}],
        )
    return name


def _status(status: DeliveryStatus | str | None) -> DeliveryStatus | None:
    if status is None:
        return None
    try:
        return DeliveryStatus(status)
    except ValueError:
        raise Invalid(
            f"unknown delivery status '{status}'; one of "
            + ", ".join(s.value for s in DeliveryStatus),
            errors=[{"pointer": "query:status", "detail": "unknown status"}],
        ) from None


def _subscription_or_404(uow: UnitOfWork, subscription_id: str) -> WebhookSubscription:
    subscription = uow.webhooks.get_subscription(subscription_id)
    if subscription is None:
        raise SubscriptionNotFound(f"no webhook subscription '{subscription_id}'")
    return subscription
