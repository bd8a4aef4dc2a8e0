"""The webhooks API: subscriptions, deliveries with their attempts, replay; the worker sends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from oms.adapters.clock import ControlledClock
from oms.bootstrap import Services, build_services
from oms.config import Settings
from oms.worker import Worker
from tests.events_support import OrderCreated, commit_events, webhook_receiver

pytestmark = pytest.mark.e2e


@pytest.fixture
def services(settings: Settings, engine: Engine, clock: ControlledClock) -> Iterator[Services]:
    tuned = settings.model_copy(
        update={"webhook_max_attempts": 2, "webhook_retry_base_seconds": 60, "nats_url": None}
    )
    services = build_services(tuned, clock=clock, engine=engine)
    yield services
    services._webhook_sender.close()


def work_once(services: Services) -> None:
    """One pass of the worker: relay the outbox, run each periodic job (webhook delivery)."""
    asyncio.run(Worker(services).run(once=True, handle_signals=False))


def subscribe(client: TestClient, url: str, types: list[str] | None = None) -> dict:  # type: ignore[type-arg]
    response = client.post(
        "/webhooks/subscriptions",
        json={"name": "ERP", "url": url, "event_types": types or ["order.*"]},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_subscription_crud_shows_the_secret_once(admin: TestClient) -> None:
    created = subscribe(admin, "https://erp.example.com/hooks")
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["order.*"]
    assert created["active"] is True
    sid = created["subscription_id"]

    listed = admin.get("/webhooks/subscriptions").json()
    assert [s["subscription_id"] for s in listed] == [sid]
    assert "secret" not in listed[0]
    one = admin.get(f"/webhooks/subscriptions/{sid}").json()
    assert "secret" not in one

    changed = admin.patch(
        f"/webhooks/subscriptions/{sid}", json={"event_types": ["order.created"], "active": False}
    )
    assert changed.status_code == 200
    assert (changed.json()["event_types"], changed.json()["active"]) == (["order.created"], False)
    assert changed.json()["url"] == "https://erp.example.com/hooks"

    rotated = admin.post(f"/webhooks/subscriptions/{sid}/secret")
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != created["secret"]

    assert admin.delete(f"/webhooks/subscriptions/{sid}").status_code == 204
    missing = admin.get(f"/webhooks/subscriptions/{sid}")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"] == "/problems/webhook-subscription-not-found"
    assert admin.delete(f"/webhooks/subscriptions/{sid}").status_code == 404


def test_who_may_manage_webhooks(client_for: Callable[..., TestClient]) -> None:
    assert client_for("integration").get("/webhooks/subscriptions").status_code == 200
    assert client_for("care_agent").get("/webhooks/subscriptions").status_code == 403
    assert (
        client_for("store_associate", locations=["S1"]).get("/webhooks/subscriptions").status_code
        == 403
    )
    assert client_for(None).get("/webhooks/subscriptions").status_code == 401


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"name": "x", "url": "ftp://example.com", "event_types": ["*"]}, "#/url"),
        ({"name": "x", "url": "https://example.com", "event_types": ["Order.*"]}, "#/event_types"),
        ({"name": "x", "url": "https://example.com", "event_types": []}, "#/event_types"),
        ({"name": "", "url": "https://example.com", "event_types": ["*"]}, "#/name"),
    ],
)
def test_bad_subscriptions_are_422_problems_naming_the_field(
    admin: TestClient,
    body: dict,
    pointer: str,  # type: ignore[type-arg]
) -> None:
    response = admin.post("/webhooks/subscriptions", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert pointer in [e["pointer"] for e in response.json()["errors"]]
    assert admin.get("/webhooks/subscriptions").json() == []


@pytest.mark.postgres
def test_attempts_are_visible_and_a_dead_letter_is_replayed_through_the_api(
    admin: TestClient, services: Services, clock: ControlledClock
) -> None:
    with webhook_receiver([500, 502]) as receiver:
        sid = subscribe(admin, receiver.url)["subscription_id"]
        commit_events(services, OrderCreated(order_number="ORD-1"))

        work_once(services)
        page = admin.get(f"/webhooks/subscriptions/{sid}/deliveries").json()
        [delivery] = page["items"]
        assert delivery["status"] == "retrying"
        assert delivery["last_response_status"] == 500
        assert page["next_after"] == delivery["event_position"]
        clock.advance(timedelta(seconds=60))
        work_once(services)

        did = delivery["delivery_id"]
        detail = admin.get(f"/webhooks/deliveries/{did}").json()
        assert detail["status"] == "dead_lettered"
        assert [
            (a["number"], a["response_status"], a["succeeded"]) for a in detail["attempts"]
        ] == [
            (1, 500, False),
            (2, 502, False),
        ]
        assert detail["attempts"][1]["error"] == "HTTP 502: not now"
        assert all(a["duration_ms"] >= 0 for a in detail["attempts"])
        dead = admin.get(
            f"/webhooks/subscriptions/{sid}/deliveries", params={"status": "dead_lettered"}
        )
        assert [d["delivery_id"] for d in dead.json()["items"]] == [did]

        replay = admin.post(f"/webhooks/deliveries/{did}/replay")
        assert replay.status_code == 202
        assert replay.json()["status"] == "pending"
        again = admin.post(f"/webhooks/deliveries/{did}/replay")
        assert again.status_code == 409
        assert again.json()["type"] == "/problems/webhook-delivery-already-waiting"
        work_once(services)

    detail = admin.get(f"/webhooks/deliveries/{did}").json()
    assert detail["status"] == "succeeded"
    assert detail["replays"] == 1
    assert [a["response_status"] for a in detail["attempts"]] == [500, 502, 200]
    assert [r.answered for r in receiver.received] == [500, 502, 200]


def test_replay_all_dead_letters_and_unknown_things(
    admin: TestClient, services: Services, clock: ControlledClock
) -> None:
    with webhook_receiver([], then=500) as receiver:
        sid = subscribe(admin, receiver.url, ["*"])["subscription_id"]
        commit_events(services, OrderCreated(order_number="A"), OrderCreated(order_number="B"))
        work_once(services)
        clock.advance(timedelta(minutes=5))
        work_once(services)
        receiver.then = 204
        replayed = admin.post(f"/webhooks/subscriptions/{sid}/dead-letters/replay")
        assert replayed.json() == {"replayed": 2}
        work_once(services)
    statuses = [
        d["status"] for d in admin.get(f"/webhooks/subscriptions/{sid}/deliveries").json()["items"]
    ]
    assert statuses == ["succeeded", "succeeded"]
    assert admin.get("/webhooks/deliveries/nope").status_code == 404
    assert admin.post("/webhooks/deliveries/nope/replay").status_code == 404
    assert admin.post("/webhooks/subscriptions/nope/dead-letters/replay").status_code == 404
    bad_status = admin.get(f"/webhooks/subscriptions/{sid}/deliveries", params={"status": "lost"})
    assert bad_status.status_code == 422


def test_the_webhook_api_is_in_the_openapi_document(admin: TestClient) -> None:
    paths = admin.get("/openapi.json").json()["paths"]
    assert {
        "/webhooks/subscriptions",
        "/webhooks/subscriptions/{subscription_id}",
        "/webhooks/subscriptions/{subscription_id}/deliveries",
        "/webhooks/subscriptions/{subscription_id}/dead-letters/replay",
        "/webhooks/deliveries/{delivery_id}",
        "/webhooks/deliveries/{delivery_id}/replay",
    } <= set(paths)
