"""Helpers for the events tests: sample events, a scripted webhook receiver, the relay."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

from oms.adapters.outbox_relay import NatsPublisher, OutboxRelay
from oms.bootstrap import Services
from oms.domain.events import DomainEvent


@dataclass(frozen=True, kw_only=True)
class OrderCreated(DomainEvent):
    type: ClassVar[str] = "order.created"
    order_number: str

    @property
    def subject(self) -> str:
        return f"orders/{self.order_number}"


@dataclass(frozen=True, kw_only=True)
class StockAdjusted(DomainEvent):
    type: ClassVar[str] = "inventory.adjusted"
    sku: str
    quantity: int


def commit_events(services: Services, *events: DomainEvent) -> None:
    with services.uow() as uow:
        uow.record(*events)
        uow.commit()


def event_ids(services: Services) -> list[str]:
    with services.uow(read_only=True) as uow:
        return [e.event_id for e in uow.outbox.read_after(0, limit=10_000).events]


def relay(services: Services, publisher: NatsPublisher | None = None, batch_size: int = 10) -> int:
    """Relay until the outbox is empty (webhook fan-out, and NATS when a publisher is given)."""
    outbox_relay = OutboxRelay(
        services.uow,
        clock=services.clock,
        ids=services.ids,
        publisher=publisher,
        batch_size=batch_size,
    )
    return asyncio.run(outbox_relay.drain())


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class WebhookReceiver:
    """Answers POSTs with the scripted statuses, then with ``then``; records every request."""

    script: list[int] = field(default_factory=list)
    then: int = 200
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self) -> int:
        with self._lock:
            return self.script.pop(0) if self.script else self.then


@contextmanager
def webhook_receiver(script: list[int], then: int = 200) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(script=list(script), then=then)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = receiver.answer()
            with receiver._lock:
                receiver.received.append(
                    Received({k.lower(): v for k, v in self.headers.items()}, body, status)
                )
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"not now")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/oms"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
