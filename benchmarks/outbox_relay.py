"""Outbox relay throughput: committed events -> NATS JetStream, on SQLite and PostgreSQL.

Seeds N committed events (in transactions of 10), then relays them with one relay in batches
and reports events/s. Run alone: ``.venv/bin/python benchmarks/outbox_relay.py --size small``.
Needs the local NATS server (JetStream, ``OMS_BENCH_NATS_URL``): without it the benchmark fails.
SQLite always (a temporary file); PostgreSQL from ``--database-url`` / ``OMS_BENCH_DATABASE_URL``
(default ``postgresql://postgres@127.0.0.1:5432/oms_bench``; its schema is reset), skipped with a
note when unreachable.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import ClassVar

import nats
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import harness
from oms.adapters.db import migrate
from oms.adapters.db.engine import make_engine
from oms.adapters.outbox_relay import NatsPublisher, OutboxRelay
from oms.bootstrap import Services, build_services
from oms.config import Settings, normalise_database_url
from oms.domain.events import DomainEvent

NATS_URL = os.environ.get("OMS_BENCH_NATS_URL", "nats://127.0.0.1:4222")
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/oms_bench"
EVENTS = {"small": 2_000, "medium": 10_000, "large": 50_000}
BATCH_SIZE = 100


@dataclass(frozen=True, kw_only=True)
class BenchOrderCreated(DomainEvent):
    type: ClassVar[str] = "order.created"
    order_number: str
    lines: int


def postgres_ready(postgres_url: str) -> str | None:
    url = make_url(postgres_url)
    try:
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            if not connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database}
            ).first():
                connection.execute(text(f'CREATE DATABASE "{url.database}"'))
        admin.dispose()
        engine = create_engine(postgres_url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    except Exception as error:
        return str(error).splitlines()[0]
    return None


def seed(services: Services, count: int) -> float:
    started = time.perf_counter()
    for start in range(0, count, 10):
        with services.uow() as uow:
            uow.record(
                *(
                    BenchOrderCreated(order_number=f"ORD-{n}", lines=3)
                    for n in range(start, min(start + 10, count))
                )
            )
            uow.commit()
    return time.perf_counter() - started


async def relay_all(services: Services, batch_size: int) -> tuple[int, float, str]:
    token = uuid.uuid4().hex[:10]
    publisher = NatsPublisher(
        url=NATS_URL,
        stream=f"OMS_BENCH_{token}",
        subject_prefix=f"omsbench_{token}",
        duplicate_window_seconds=120,
        clock=services.clock,
    )
    await publisher.connect()
    relay = OutboxRelay(
        services.uow,
        clock=services.clock,
        ids=services.ids,
        publisher=publisher,
        batch_size=batch_size,
    )
    try:
        started = time.perf_counter()
        relayed = await relay.drain()
        elapsed = time.perf_counter() - started
    finally:
        await publisher.close()
        connection = await nats.connect(NATS_URL)
        await connection.jetstream().delete_stream(publisher.stream)
        await connection.close()
    return relayed, elapsed, publisher.stream


def measure(database: str, url: str, events: int, batch_size: int) -> dict[str, object]:
    engine = make_engine(url)
    migrate.upgrade(engine)
    services = build_services(Settings(database_url=url), engine=engine)
    try:
        seed_seconds = seed(services, events)
        relayed, seconds, _ = asyncio.run(relay_all(services, batch_size))
    finally:
        services.close()
    if relayed != events:
        raise RuntimeError(f"relayed {relayed} of {events} events")
    return {
        "events": events,
        "batch_size": batch_size,
        "relay_seconds": round(seconds, 3),
        "events_per_second": round(events / seconds),
        "seed_events_per_second": round(events / seed_seconds),
    }


def run(size: str, database_url: str | None) -> dict[str, object]:
    """Committed outbox events relayed to NATS JetStream, per second."""
    events = EVENTS[size]
    figures: dict[str, object] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as directory:
        figures["sqlite"] = measure("sqlite", f"sqlite:///{directory}/bench.db", events, BATCH_SIZE)
    postgres_url = normalise_database_url(database_url or DEFAULT_POSTGRES)
    if make_url(postgres_url).get_backend_name() == "postgresql":
        problem = postgres_ready(postgres_url)
        if problem:
            notes.append(f"PostgreSQL skipped: {problem}")
        else:
            figures["postgresql"] = measure("postgresql", postgres_url, events, BATCH_SIZE)
    notes.append(f"one relay, batches of {BATCH_SIZE}; seeding commits 10 events per transaction")
    return {**figures, "notes": notes}


if __name__ == "__main__":
    raise SystemExit(harness.main("outbox_relay", run))
