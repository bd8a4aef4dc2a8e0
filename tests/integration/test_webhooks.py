"""Webhooks against a real local HTTP server: retries with backoff, signatures, dead letters."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from oms.adapters.clock import ControlledClock
from oms.bootstrap import Services, build_services
from oms.config import Settings
from oms.domain.webhooks import DeliveryAlreadyWaiting, DeliveryStatus, SubscriptionNotFound
from oms.services.ports import WebhookAttempt
from tests.events_support import (
    OrderCreated,
    StockAdjusted,
    commit_events,
    event_ids,
    relay,
    webhook_receiver,
)

BASE = timedelta(seconds=30)


@pytest.fixture
def hooks(settings: Settings, engine: Engine, clock: ControlledClock) -> Services:
    tuned = settings.model_copy(
        update={"webhook_max_attempts": 3, "webhook_retry_base_seconds": BASE.total_seconds()}
    )
    services = build_services(tuned, clock=clock, engine=engine)
    yield services
    services._webhook_sender.close()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check, written from the Standard Webhooks text, not with OMS code."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    versions = dict(part.split(",", 1) for part in headers["webhook-signature"].split(" "))
    return hmac.compare_digest(versions.get("v1", ""), expected)


@pytest.mark.postgres
def test_an_endpoint_failing_twice_gets_the_event_once_as_a_success_with_a_valid_signature(
    hooks: Services, clock: ControlledClock
) -> None:
    with webhook_receiver([500, 503]) as receiver:
        created = hooks.webhooks.create_subscription(
            name="ERP", url=receiver.url, event_types=["order.*"], created_by="test"
        )
        commit_events(hooks, OrderCreated(order_number="ORD-1"), StockAdjusted(sku="A", quantity=1))
        order_event_id = event_ids(hooks)[0]

        assert relay(hooks) == 2
        first = hooks.webhooks.deliver_due()
        assert (first.attempted, first.failed) == (1, 1)

        assert hooks.webhooks.deliver_due().attempted == 0  # not due before the backoff
        clock.advance(BASE)
        assert hooks.webhooks.deliver_due().failed == 1  # second failure: wait 2 x base now
        clock.advance(BASE)
        assert hooks.webhooks.deliver_due().attempted == 0
        clock.advance(BASE)
        assert hooks.webhooks.deliver_due().succeeded == 1
        succeeded_at = clock.now()
        clock.advance(timedelta(days=1))
        assert hooks.webhooks.deliver_due().attempted == 0

    assert [r.answered for r in receiver.received] == [500, 503, 200]
    successes = [r for r in receiver.received if r.answered == 200]
    assert len(successes) == 1
    success = successes[0]
    assert verify(created.secret, success.headers, success.body)
    assert not verify(created.secret, success.headers, success.body + b" ")
    assert success.headers["webhook-id"] == order_event_id
    assert success.headers["webhook-timestamp"] == str(int(succeeded_at.timestamp()))
    event = json.loads(success.body)
    assert (event["id"], event["type"], event["subject"]) == (
        order_event_id,
        "order.created",
        "orders/ORD-1",
    )
    assert event["data"] == {"order_number": "ORD-1"}
    # every attempt carries the same id, so a receiver can drop repeats
    assert {r.headers["webhook-id"] for r in receiver.received} == {order_event_id}

    [delivery] = hooks.webhooks.deliveries(created.subscription.subscription_id)
    detail = hooks.webhooks.delivery(delivery.delivery_id)
    assert detail.delivery.status is DeliveryStatus.SUCCEEDED
    assert detail.delivery.attempt_count == 3
    assert [(a.number, a.response_status, a.succeeded) for a in detail.attempts] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert detail.attempts[0].error == "HTTP 500: not now"
    assert all(a.duration_ms >= 0 for a in detail.attempts)
    start = detail.attempts[0].started_at
    assert [a.started_at - start for a in detail.attempts] == [
        timedelta(0),
        BASE,
        3 * BASE,
    ]


@pytest.mark.postgres
def test_a_dead_lettered_event_can_be_replayed(hooks: Services, clock: ControlledClock) -> None:
    with webhook_receiver([], then=500) as receiver:
        subscription = hooks.webhooks.create_subscription(
            name="flaky", url=receiver.url, event_types=["*"], created_by="test"
        ).subscription
        commit_events(hooks, OrderCreated(order_number="ORD-2"))
        relay(hooks)
        for _ in range(3):
            hooks.webhooks.deliver_due()
            clock.advance(timedelta(hours=1))
        [delivery] = hooks.webhooks.deliveries(subscription.subscription_id)
        assert delivery.status is DeliveryStatus.DEAD_LETTERED
        assert delivery.dead_lettered_at is not None
        assert hooks.webhooks.deliver_due().attempted == 0  # dead letters wait for a replay
        assert len(receiver.received) == 3

        receiver.then = 200
        replayed = hooks.webhooks.replay(delivery.delivery_id)
        assert replayed.status is DeliveryStatus.PENDING
        with pytest.raises(DeliveryAlreadyWaiting):
            hooks.webhooks.replay(delivery.delivery_id)
        assert hooks.webhooks.deliver_due().succeeded == 1

    detail = hooks.webhooks.delivery(delivery.delivery_id)
    assert detail.delivery.status is DeliveryStatus.SUCCEEDED
    assert detail.delivery.replays == 1
    assert [a.succeeded for a in detail.attempts] == [False, False, False, True]
    assert len(receiver.received) == 4


@pytest.mark.postgres
def test_all_dead_letters_of_a_subscription_are_replayed_together(
    hooks: Services, clock: ControlledClock
) -> None:
    with webhook_receiver([500] * 9) as receiver:
        subscription = hooks.webhooks.create_subscription(
            name="down", url=receiver.url, event_types=["order.created"], created_by="test"
        ).subscription
        commit_events(hooks, *(OrderCreated(order_number=f"ORD-{n}") for n in range(3)))
        relay(hooks)
        for _ in range(3):
            hooks.webhooks.deliver_due()
            clock.advance(timedelta(hours=1))
        dead = hooks.webhooks.deliveries(subscription.subscription_id, status="dead_lettered")
        assert len(dead) == 3

        assert hooks.webhooks.replay_dead_letters(subscription.subscription_id) == 3
        assert hooks.webhooks.deliver_due().succeeded == 3
        assert hooks.webhooks.replay_dead_letters(subscription.subscription_id) == 0
    assert len(receiver.received) == 12
    with pytest.raises(SubscriptionNotFound):
        hooks.webhooks.replay_dead_letters("nope")


def test_an_unreachable_endpoint_is_a_failed_attempt_with_the_error(hooks: Services) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subscription = hooks.webhooks.create_subscription(
        name="gone", url=f"http://127.0.0.1:{port}/x", event_types=["*"], created_by="test"
    ).subscription
    commit_events(hooks, OrderCreated(order_number="ORD-9"))
    relay(hooks)
    assert hooks.webhooks.deliver_due().failed == 1
    [delivery] = hooks.webhooks.deliveries(subscription.subscription_id)
    assert delivery.status is DeliveryStatus.RETRYING
    assert delivery.last_response_status is None
    assert delivery.last_error and "ConnectError" in delivery.last_error


@pytest.mark.postgres
def test_only_matching_active_subscriptions_get_deliveries_and_inactive_ones_wait(
    hooks: Services,
) -> None:
    with webhook_receiver([]) as receiver:
        orders = hooks.webhooks.create_subscription(
            name="orders", url=receiver.url, event_types=["order.*"], created_by="t"
        ).subscription
        stock = hooks.webhooks.create_subscription(
            name="stock", url=receiver.url, event_types=["inventory.adjusted"], created_by="t"
        ).subscription
        paused = hooks.webhooks.create_subscription(
            name="paused", url=receiver.url, event_types=["*"], active=False, created_by="t"
        ).subscription
        commit_events(hooks, OrderCreated(order_number="ORD-3"), StockAdjusted(sku="B", quantity=2))
        relay(hooks)
        assert [d.event_type for d in hooks.webhooks.deliveries(orders.subscription_id)] == [
            "order.created"
        ]
        assert [d.event_type for d in hooks.webhooks.deliveries(stock.subscription_id)] == [
            "inventory.adjusted"
        ]
        assert hooks.webhooks.deliveries(paused.subscription_id) == []
        assert hooks.webhooks.deliver_due().succeeded == 2

        # a subscription paused after fan-out keeps its deliveries waiting until it is resumed
        hooks.webhooks.update_subscription(orders.subscription_id, active=False)
        commit_events(hooks, OrderCreated(order_number="ORD-4"))
        hooks.webhooks.update_subscription(orders.subscription_id, active=True)
        relay(hooks)
        hooks.webhooks.update_subscription(orders.subscription_id, active=False)
        assert hooks.webhooks.deliver_due().attempted == 0
        hooks.webhooks.update_subscription(orders.subscription_id, active=True)
        assert hooks.webhooks.deliver_due().succeeded == 1
    assert len(receiver.received) == 3


@pytest.mark.postgres
def test_concurrent_workers_never_send_the_same_attempt_twice(
    settings: Settings, engine: Engine, hooks: Services
) -> None:
    with webhook_receiver([]) as receiver:
        hooks.webhooks.create_subscription(
            name="all", url=receiver.url, event_types=["*"], created_by="t"
        )
        commit_events(hooks, *(OrderCreated(order_number=f"ORD-{n}") for n in range(40)))
        relay(hooks)
        workers = [build_services(settings, engine=engine) for _ in range(4)]
        results: list[int] = []

        def work(services: Services) -> None:
            while (run := services.webhooks.deliver_due(limit=3)).attempted:
                results.append(run.succeeded)

        threads = [threading.Thread(target=work, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for worker in workers:
            worker._webhook_sender.close()
    assert sum(results) == 40
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert sorted(ids) == sorted(event_ids(hooks))


@pytest.mark.postgres
def test_a_rotated_secret_signs_from_then_on_and_deleting_a_subscription_mid_attempt_is_safe(
    hooks: Services,
) -> None:
    with webhook_receiver([]) as receiver:
        created = hooks.webhooks.create_subscription(
            name="rotating", url=receiver.url, event_types=["*"], created_by="t"
        )
        rotated = hooks.webhooks.rotate_secret(created.subscription.subscription_id)
        assert rotated.secret != created.secret
        commit_events(hooks, OrderCreated(order_number="ORD-R"))
        relay(hooks)
        hooks.webhooks.deliver_due()
    [request] = receiver.received
    assert verify(rotated.secret, request.headers, request.body)
    assert not verify(created.secret, request.headers, request.body)

    # A subscription deleted while one of its deliveries is out: the attempt is just dropped.
    with webhook_receiver([]) as receiver:
        sid = hooks.webhooks.create_subscription(
            name="short-lived", url=receiver.url, event_types=["*"], created_by="t"
        ).subscription.subscription_id
        commit_events(hooks, OrderCreated(order_number="ORD-D"))
        relay(hooks)
        now = hooks.clock.now()
        with hooks.uow() as uow:
            claimed = uow.webhooks.claim_due(
                now=now, limit=5, lease_token="lease-1", leased_until=now + timedelta(minutes=1)
            )
            uow.commit()
        [due] = [c for c in claimed if c.delivery.subscription_id == sid]
        hooks.webhooks.delete_subscription(sid)
        with hooks.uow() as uow:
            attempt = WebhookAttempt(
                delivery_id=due.delivery.delivery_id,
                number=1,
                started_at=now,
                duration_ms=3,
                response_status=200,
                error=None,
                succeeded=True,
            )
            held = uow.webhooks.finish_attempt(
                attempt,
                lease_token="lease-1",
                status=DeliveryStatus.SUCCEEDED,
                next_attempt_at=None,
            )
            uow.commit()
        assert held is False
