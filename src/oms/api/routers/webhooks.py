"""Webhook subscriptions, their deliveries and attempts, and replay (admin and integration)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from oms.api.deps import ServicesDep, require
from oms.api.errors import CONFLICT, NOT_FOUND, PROBLEM_RESPONSES
from oms.domain.access import Permission, Principal
from oms.domain.webhooks import DeliveryStatus
from oms.services.ports import WebhookAttempt, WebhookDelivery, WebhookSubscription

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses=PROBLEM_RESPONSES)
Manager = Annotated[Principal, Depends(require(Permission.WEBHOOKS_MANAGE))]

PATTERNS_HELP = (
    "Event type patterns: 'order.created', 'order.*' (every order event, however deep), "
    "'*' (every event); '*' in the middle stands for one word"
)


class SubscriptionIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["ERP order feed"])
    url: str = Field(min_length=1, max_length=2000, examples=["https://erp.example.com/hooks/oms"])
    event_types: list[str] = Field(min_length=1, description=PATTERNS_HELP, examples=[["order.*"]])
    active: bool = True


class SubscriptionChangeIn(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    event_types: list[str] | None = Field(default=None, min_length=1, description=PATTERNS_HELP)
    active: bool | None = None


class SubscriptionOut(BaseModel):
    subscription_id: str
    name: str
    url: str
    event_types: list[str]
    active: bool
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, subscription: WebhookSubscription) -> SubscriptionOut:
        return cls(
            subscription_id=subscription.subscription_id,
            name=subscription.name,
            url=subscription.url,
            event_types=list(subscription.event_types),
            active=subscription.active,
            created_by=subscription.created_by,
            created_at=subscription.created_at,
            updated_at=subscription.updated_at,
        )


class CreatedSubscriptionOut(SubscriptionOut):
    secret: str = Field(
        description="The signing secret (whsec_...): shown this once. Verify each request's "
        "webhook-signature: v1,base64(HMAC-SHA256(base64-decoded secret after 'whsec_', "
        "'{webhook-id}.{webhook-timestamp}.{body}'))"
    )


class AttemptOut(BaseModel):
    number: int
    started_at: datetime
    duration_ms: int
    response_status: int | None
    error: str | None
    succeeded: bool

    @classmethod
    def of(cls, attempt: WebhookAttempt) -> AttemptOut:
        return cls(
            number=attempt.number,
            started_at=attempt.started_at,
            duration_ms=attempt.duration_ms,
            response_status=attempt.response_status,
            error=attempt.error,
            succeeded=attempt.succeeded,
        )


class DeliveryOut(BaseModel):
    delivery_id: str
    subscription_id: str
    event_id: str
    event_type: str
    event_position: int
    status: DeliveryStatus
    attempt_count: int
    replays: int
    next_attempt_at: datetime | None
    created_at: datetime
    last_attempt_at: datetime | None
    last_response_status: int | None
    last_error: str | None
    succeeded_at: datetime | None
    dead_lettered_at: datetime | None

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> DeliveryOut:
        return cls(
            delivery_id=delivery.delivery_id,
            subscription_id=delivery.subscription_id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            event_position=delivery.event_position,
            status=delivery.status,
            attempt_count=delivery.attempt_count,
            replays=delivery.replays,
            next_attempt_at=delivery.next_attempt_at,
            created_at=delivery.created_at,
            last_attempt_at=delivery.last_attempt_at,
            last_response_status=delivery.last_response_status,
            last_error=delivery.last_error,
            succeeded_at=delivery.succeeded_at,
            dead_lettered_at=delivery.dead_lettered_at,
        )


class DeliveryDetailOut(DeliveryOut):
    attempts: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_after: int = Field(description="Pass as 'after' for the next page (an event position)")


class ReplayOut(BaseModel):
    replayed: int


@router.post(
    "/subscriptions",
    status_code=201,
    summary="Subscribe a URL to event types (the signing secret is shown once)",
)
def create_subscription(
    body: SubscriptionIn, services: ServicesDep, principal: Manager
) -> CreatedSubscriptionOut:
    created = services.webhooks.create_subscription(
        name=body.name,
        url=body.url,
        event_types=body.event_types,
        active=body.active,
        created_by=principal.actor,
    )
    return CreatedSubscriptionOut(
        **SubscriptionOut.of(created.subscription).model_dump(), secret=created.secret
    )


@router.get("/subscriptions", summary="List webhook subscriptions (never their secrets)")
def list_subscriptions(services: ServicesDep, _: Manager) -> list[SubscriptionOut]:
    return [SubscriptionOut.of(s) for s in services.webhooks.list_subscriptions()]


@router.get(
    "/subscriptions/{subscription_id}", responses=NOT_FOUND, summary="One webhook subscription"
)
def get_subscription(subscription_id: str, services: ServicesDep, _: Manager) -> SubscriptionOut:
    return SubscriptionOut.of(services.webhooks.get_subscription(subscription_id))


@router.patch(
    "/subscriptions/{subscription_id}",
    responses=NOT_FOUND,
    summary="Change a subscription's name, URL, event types or active flag",
)
def change_subscription(
    subscription_id: str, body: SubscriptionChangeIn, services: ServicesDep, _: Manager
) -> SubscriptionOut:
    changed = services.webhooks.update_subscription(
        subscription_id,
        name=body.name,
        url=body.url,
        event_types=body.event_types,
        active=body.active,
    )
    return SubscriptionOut.of(changed)


@router.post(
    "/subscriptions/{subscription_id}/secret",
    responses=NOT_FOUND,
    summary="Replace the signing secret (the new one is shown once)",
)
def rotate_secret(
    subscription_id: str, services: ServicesDep, _: Manager
) -> CreatedSubscriptionOut:
    rotated = services.webhooks.rotate_secret(subscription_id)
    return CreatedSubscriptionOut(
        **SubscriptionOut.of(rotated.subscription).model_dump(), secret=rotated.secret
    )


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=204,
    responses=NOT_FOUND,
    summary="Delete a subscription with its deliveries",
)
def delete_subscription(subscription_id: str, services: ServicesDep, _: Manager) -> Response:
    services.webhooks.delete_subscription(subscription_id)
    return Response(status_code=204)


@router.get(
    "/subscriptions/{subscription_id}/deliveries",
    responses=NOT_FOUND,
    summary="A subscription's deliveries, in event order",
)
def list_deliveries(
    subscription_id: str,
    services: ServicesDep,
    _: Manager,
    status: Annotated[DeliveryStatus | None, Query(description="Only this status")] = None,
    after: Annotated[int, Query(ge=0, description="Event position to read after")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryPage:
    deliveries = services.webhooks.deliveries(
        subscription_id, status=status, after_position=after, limit=limit
    )
    return DeliveryPage(
        items=[DeliveryOut.of(d) for d in deliveries],
        next_after=deliveries[-1].event_position if deliveries else after,
    )


@router.post(
    "/subscriptions/{subscription_id}/dead-letters/replay",
    responses=NOT_FOUND,
    summary="Send every dead-lettered delivery of a subscription again",
)
def replay_dead_letters(subscription_id: str, services: ServicesDep, _: Manager) -> ReplayOut:
    return ReplayOut(replayed=services.webhooks.replay_dead_letters(subscription_id))


@router.get(
    "/deliveries/{delivery_id}",
    responses=NOT_FOUND,
    summary="One delivery with its attempts (status, response code, error, timings)",
)
def get_delivery(delivery_id: str, services: ServicesDep, _: Manager) -> DeliveryDetailOut:
    detail = services.webhooks.delivery(delivery_id)
    return DeliveryDetailOut(
        **DeliveryOut.of(detail.delivery).model_dump(),
        attempts=[AttemptOut.of(a) for a in detail.attempts],
    )


@router.post(
    "/deliveries/{delivery_id}/replay",
    status_code=202,
    responses={**NOT_FOUND, **CONFLICT},
    summary="Send a dead-lettered or succeeded delivery again (a fresh retry budget)",
)
def replay_delivery(delivery_id: str, services: ServicesDep, _: Manager) -> DeliveryOut:
    return DeliveryOut.of(services.webhooks.replay(delivery_id))
