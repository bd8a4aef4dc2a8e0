"""The foundation through HTTP: health, keys and roles, problem+json, idempotency, events."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from oms.domain.access import Role
from oms.domain.events import DomainEvent

pytestmark = pytest.mark.e2e
PROBLEM = "application/problem+json"


def test_health_needs_no_key_and_readiness_reports_the_schema(anonymous: TestClient) -> None:
    assert anonymous.get("/healthz").json()["status"] == "ok"
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["schema_revision"] == ready.json()["expected_revision"]


@pytest.mark.postgres
def test_readiness_on_both_databases(anonymous: TestClient, database_url: str) -> None:
    body = anonymous.get("/readyz").json()
    assert body["database"] == database_url.split(":")[0].split("+")[0]


def test_missing_and_invalid_keys_are_401_problems(anonymous: TestClient) -> None:
    missing = anonymous.get("/events")
    assert missing.status_code == 401
    assert missing.headers["content-type"] == PROBLEM
    assert missing.json()["type"] == "/problems/unauthenticated"
    assert "WWW-Authenticate" in missing.headers

    for bad in ("nonsense", "oms_unknown_secret", "oms__"):
        response = anonymous.get("/events", headers={"X-API-Key": bad})
        assert response.status_code == 401, bad
        assert response.json()["type"] == "/problems/unauthenticated"


def test_a_valid_key_without_the_right_is_403(client_for: Callable[..., TestClient]) -> None:
    for role, locations in (
        (Role.INTEGRATION, None),
        (Role.CARE_AGENT, None),
        (Role.STORE_ASSOCIATE, ["S1"]),
    ):
        client = client_for(role, locations=locations)
        response = client.post("/api-keys", json={"name": "x", "role": "admin"})
        assert response.status_code == 403, role
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"] == "/problems/forbidden"
    store = client_for(Role.STORE_ASSOCIATE, locations=["S1"])
    assert store.get("/events").status_code == 403


def test_bearer_authorization_header_is_accepted_too(
    admin: TestClient, anonymous: TestClient
) -> None:
    secret = admin.post("/api-keys", json={"name": "feed", "role": "integration"}).json()["api_key"]
    assert (
        anonymous.get("/events", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    )


def test_keys_are_shown_once_stored_hashed_and_can_be_revoked(
    admin: TestClient, anonymous: TestClient, services
) -> None:  # type: ignore[no-untyped-def]
    created = admin.post("/api-keys", json={"name": "pos", "role": "integration"})
    assert created.status_code == 201
    secret = created.json()["api_key"]
    key_id = created.json()["key_id"]

    listed = admin.get("/api-keys").json()
    assert all("api_key" not in key for key in listed)
    stored = services.access.list_keys()
    assert all(secret not in (key.secret_hash, key.key_id) for key in stored)

    assert anonymous.get("/events", headers={"X-API-Key": secret}).status_code == 200
    assert admin.delete(f"/api-keys/{key_id}").status_code == 204
    revoked = anonymous.get("/events", headers={"X-API-Key": secret})
    assert revoked.status_code == 401
    assert "revoked" in revoked.json()["detail"]
    assert admin.delete("/api-keys/nosuchkey").status_code == 404


def test_store_associate_keys_must_name_their_locations(admin: TestClient) -> None:
    response = admin.post("/api-keys", json={"name": "till", "role": "store_associate"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "#/location_codes"
    ok = admin.post(
        "/api-keys",
        json={"name": "till", "role": "store_associate", "location_codes": ["S1", "S2"]},
    )
    assert ok.status_code == 201
    assert ok.json()["location_codes"] == ["S1", "S2"]


def test_validation_errors_are_problems_with_field_pointers(admin: TestClient) -> None:
    response = admin.post("/api-keys", json={"name": "", "role": "emperor"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == "/problems/validation-error"
    assert {error["pointer"] for error in body["errors"]} == {"#/name", "#/role"}
    malformed = admin.post(
        "/api-keys", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 422
    assert malformed.headers["content-type"] == PROBLEM
    bad_query = admin.get("/events", params={"limit": 0})
    assert bad_query.status_code == 422
    assert bad_query.json()["errors"][0]["pointer"] == "query:/limit"


def test_unknown_routes_and_methods_are_problems(admin: TestClient, anonymous: TestClient) -> None:
    for client in (admin, anonymous):
        response = client.get("/no/such/route")
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"] == "/problems/not-found"
    wrong_method = admin.put("/events")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["type"] == "/problems/method-not-allowed"


def test_every_problem_type_is_documented(anonymous: TestClient) -> None:
    types = {entry["type"] for entry in anonymous.get("/problems").json()}
    assert {
        "/problems/unauthenticated",
        "/problems/forbidden",
        "/problems/validation-error",
        "/problems/idempotency-key-reused",
    } <= types
    assert anonymous.get("/problems/forbidden").status_code == 200


def test_request_ids_are_echoed_or_generated(anonymous: TestClient) -> None:
    echoed = anonymous.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = anonymous.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 36
    problem = anonymous.get("/events", headers={"X-Request-ID": "trace-9"})
    assert problem.json()["request_id"] == "trace-9"


def test_idempotent_replay_returns_the_stored_response_and_changes_nothing(
    admin: TestClient, services
) -> None:  # type: ignore[no-untyped-def]
    body = {"name": "erp", "role": "integration"}
    first = admin.post("/api-keys", json=body, headers={"Idempotency-Key": "k-1"})
    second = admin.post("/api-keys", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers.get("idempotent-replayed") == "true"
    assert [key.name for key in services.access.list_keys()].count("erp") == 1


def test_reusing_a_key_with_another_body_is_a_422_problem(admin: TestClient, services) -> None:  # type: ignore[no-untyped-def]
    admin.post(
        "/api-keys", json={"name": "erp", "role": "integration"}, headers={"Idempotency-Key": "k-2"}
    )
    reused = admin.post(
        "/api-keys", json={"name": "wms", "role": "integration"}, headers={"Idempotency-Key": "k-2"}
    )
    assert reused.status_code == 422
    assert reused.headers["content-type"] == PROBLEM
    assert reused.json()["type"] == "/problems/idempotency-key-reused"
    assert "wms" not in [key.name for key in services.access.list_keys()]


def test_idempotency_keys_are_scoped_to_the_caller(
    client_for: Callable[..., TestClient], services
) -> None:  # type: ignore[no-untyped-def]
    one, two = client_for(Role.ADMIN), client_for(Role.ADMIN)
    body = {"name": "shared", "role": "care_agent"}
    assert one.post("/api-keys", json=body, headers={"Idempotency-Key": "same"}).status_code == 201
    assert two.post("/api-keys", json=body, headers={"Idempotency-Key": "same"}).status_code == 201
    assert [key.name for key in services.access.list_keys()].count("shared") == 2


def test_events_are_readable_after_a_cursor(admin: TestClient, services) -> None:  # type: ignore[no-untyped-def]
    class Pinged(DomainEvent):
        type = "test.pinged"

    for _ in range(3):
        with services.uow() as uow:
            uow.record(Pinged())
            uow.commit()
    page = admin.get("/events", params={"limit": 2}).json()
    assert [event["type"] for event in page["items"]] == ["test.pinged"] * 2
    event = page["items"][0]
    assert {"specversion", "id", "source", "type", "subject", "time", "data"} <= set(event)
    rest = admin.get("/events", params={"after": page["next_after"]}).json()
    assert len(rest["items"]) == 1
    assert rest["items"][0]["position"] > page["next_after"]


@pytest.mark.postgres
def test_a_filtered_event_read_moves_past_other_types(admin: TestClient, services) -> None:  # type: ignore[no-untyped-def]
    class Pinged(DomainEvent):
        type = "test.pinged"

    class Ponged(DomainEvent):
        type = "test.ponged"

    with services.uow() as uow:
        uow.record(Pinged(), Pinged(), Ponged())
        uow.commit()
    first = admin.get("/events", params={"type": "test.ponged"}).json()
    assert [e["type"] for e in first["items"]] == ["test.ponged"]
    assert first["next_after"] == first["items"][0]["position"]
    nothing = admin.get("/events", params={"type": "test.other"}).json()
    assert nothing["items"] == []
    assert nothing["next_after"] == first["next_after"]  # read up to here: no need to re-scan
    again = admin.get("/events", params={"type": "test.ponged", "after": nothing["next_after"]})
    assert again.json() == {"items": [], "next_after": nothing["next_after"]}


def test_openapi_documents_every_endpoint_and_its_problems(anonymous: TestClient) -> None:
    spec = anonymous.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert "Problem" in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path.startswith(("/healthz", "/readyz", "/problems")):
                continue
            assert "401" in operation["responses"], (method, path)
            assert PROBLEM in operation["responses"]["422"]["content"], (method, path)


def test_an_extension_named_like_a_standard_member_cannot_corrupt_the_problem(app, admin) -> None:  # type: ignore[no-untyped-def]
    from oms.domain.errors import Conflict

    @app.get("/test-only/clash")
    def clash() -> None:
        raise Conflict("refused", status="shipped", type="x")

    response = admin.get("/test-only/clash")
    assert response.status_code == 409
    body = response.json()
    assert body["type"] == "/problems/conflict"
    assert body["status"] == 409
    assert body["detail"] == "refused"
    assert body["context_status"] == "shipped"
    assert body["context_type"] == "x"
