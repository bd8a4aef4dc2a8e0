"""ASGI middleware: request ids with access logs, and idempotent POST requests."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oms.domain.errors import DomainError
from oms.observability import request_id_var
from oms.services.idempotency import StoredResponse, request_fingerprint

access_log = logging.getLogger("oms.access")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
REPLAY_HEADER = "idempotent-replayed"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestIdMiddleware:
    """Accept ``X-Request-ID`` (or make one), echo it, and write one JSON access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = (
            incoming if incoming and _VALID_REQUEST_ID.match(incoming) else str(uuid.uuid4())
        )
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            request_id_var.reset(token)


class IdempotencyMiddleware:
    """POST with ``Idempotency-Key``: replay the stored response of an identical earlier request.

    Keys are scoped to the credential that sent them. Responses of 5xx (and of requests refused
    for authentication) are not stored, so a client may retry them with the same key.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        key = _header(scope, b"idempotency-key")
        if key is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        services = scope["app"].state.services
        credential = _header(scope, b"x-api-key") or _header(scope, b"authorization") or ""
        scope_id = hashlib.sha256(credential.encode()).hexdigest()
        fingerprint = request_fingerprint(
            scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"), body
        )
        try:
            stored = await run_in_threadpool(services.idempotency.begin, scope_id, key, fingerprint)
        except DomainError as error:
            await _send_problem(scope, send, error)
            return
        if stored is not None:
            headers = [(k.encode(), v.encode()) for k, v in stored.headers.items()]
            headers.append((REPLAY_HEADER.encode(), b"true"))
            await send({"type": "http.response.start", "status": stored.status, "headers": headers})
            await send({"type": "http.response.body", "body": stored.body})
            return

        captured: dict[str, Any] = {"status": 500, "headers": [], "body": bytearray()}

        async def replay_body() -> Message:
            nonlocal body
            chunk, body = body, b""
            return {"type": "http.request", "body": chunk, "more_body": False}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                captured["body"].extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_body, capture)
        except BaseException:
            await run_in_threadpool(services.idempotency.abandon, scope_id, key)
            raise
        status = int(captured["status"])
        if status >= 500 or status in (401, 429):
            await run_in_threadpool(services.idempotency.abandon, scope_id, key)
            return
        keep = {"content-type", "location"}
        kept_headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in captured["headers"]
            if k.decode("latin-1").lower() in keep
        }
        await run_in_threadpool(
            services.idempotency.complete,
            scope_id,
            key,
            StoredResponse(status, kept_headers, bytes(captured["body"])),
        )


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_problem(scope: Scope, send: Send, error: DomainError) -> None:
    from oms.api.errors import PROBLEM_MEDIA_TYPE, problem_body, status_for

    status = status_for(error)
    body = problem_body(
        status, error.slug, error.title, error.detail, scope["path"], error.extensions
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode())],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
