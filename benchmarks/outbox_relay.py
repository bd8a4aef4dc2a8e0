"""Outbox relay throughput: committed events -> NATS JetStream, on SQLite and PostgreSQL.

Seeds N committed events (in transactions of 10), then relays them with one relay in batches
and reports events/s. Run alone: ``.venv/bin/python benchmarks/outbox_relay.py [--events N]``.
Needs the local NATS server (JetStream); PostgreSQL from OMS_BENCH_DATABASE_URL (default
``postgresql://postgres@127.0.0.1:5432/oms_bench``), skipped when unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import nats
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from oms.adapters.db import migrate
from oms.adapters.db.engine import make_engine
from oms.adapters.outbox_relay import NatsPublisher, OutboxRelay
from oms.bootstrap import Services, build_services
from oms.config import Settings, normalise_database_url
from oms.domain.events import DomainEvent

NATS_URL = os.environ.get("OMS_BENCH_NATS_URL", "nats://127.0.0.1:4222")
POSTGRES_URL = normalise_database_url(
    os.environ.get("OMS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/oms_bench")
)
RESULTS = Path(__file__).with_name("results") / "outbox_relay.json"


@dataclass(frozen=True, kw_only=True)
class BenchOrderCreated(DomainEvent):
    type: ClassVar[str] = "order.created"
    order_number: str
    lines: int


def postgres_ready() -> str | None:
    url = make_url(POSTGRES_URL)
    try:
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            if not connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database}
            ).first():
                connection.execute(text(f'CREATE DATABASE "{url.database}"'))
        admin.dispose()
        engine = create_engine(POSTGRES_URL)
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


def run(database: str, url: str, events: int, batch_size: int) -> dict[str, object]:
    engine = make_engine(url)
    migrate.upgrade(engine)
    services = build_services(Settings(database_url=url), engine=engine)
    try:
        seed_seconds = seed(services, events)
        relayed, seconds, _ = asyncio.run(relay_all(services, batch_size))
    finally:
        services.close()
    assert relayed == events, (relayed, events)
    return {
        "database": database,
        "events": events,
        "batch_size": batch_size,
        "relay_seconds": round(seconds, 3),
        "events_per_second": round(events / seconds),
        "seed_events_per_second": round(events / seed_seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as directory:
        rows.append(run("sqlite", f"sqlite:///{directory}/bench.db", args.events, args.batch_size))
    problem = postgres_ready()
    if problem:
        print(f"PostgreSQL skipped: {problem}", file=sys.stderr)
    else:
        rows.append(run("postgresql", POSTGRES_URL, args.events, args.batch_size))

    print(f"{'database':<12}{'events':>8}{'batch':>7}{'seconds':>10}{'events/s':>10}")
    for row in rows:
        print(
            f"{row['database']:<12}{row['events']:>8}{row['batch_size']:>7}"
            f"{row['relay_seconds']:>10}{row['events_per_second']:>10}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "outbox_relay", "results": rows}, indent=2))


if __name__ == "__main__":
    main()
