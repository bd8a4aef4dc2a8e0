"""The outbox relay against the real local NATS JetStream server.

Each test uses its own stream and subject prefix, deleted afterwards. Where NATS is unreachable
these tests are skipped, except under CI (``CI=true``), where that fails them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import nats
import pytest
from sqlalchemy import delete, func, select, update

from oms.adapters.db.tables import event_deliveries, outbox_events
from oms.adapters.outbox_relay import NatsPublisher, OutboxRelay
from oms.bootstrap import Services
from oms.domain.access import Role
from oms.services.ports import StoredApiKey
from tests.conftest import IN_CI
from tests.events_support import OrderCreated, StockAdjusted, commit_events, event_ids

pytestmark = pytest.mark.nats
NATS_URL = os.environ.get("OMS_TEST_NATS_URL", "nats://127.0.0.1:4222")


async def _jetstream_problem() -> str | None:
    async def quiet(error: Exception) -> None:
        pass

    try:
        connection = await asyncio.wait_for(
            nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False, error_cb=quiet),
            timeout=3,
        )
    except Exception as error:
        return f"NATS at {NATS_URL} unreachable: {error!r}"
    try:
        await connection.jetstream().account_info()
    except Exception as error:
        return f"NATS at {NATS_URL} has no JetStream: {error!r}"
    finally:
        await connection.close()
    return None


@cache
def nats_problem() -> str | None:
    """None when the NATS server with JetStream answers (asked once per session), else why not."""
    return asyncio.run(_jetstream_problem())


@dataclass(frozen=True)
class Stream:
    name: str
    prefix: str

    def publisher(self, services: Services, **options: Any) -> NatsPublisher:
        return NatsPublisher(
            url=NATS_URL,
            stream=self.name,
            subject_prefix=self.prefix,
            duplicate_window_seconds=120,
            clock=services.clock,
            **options,
        )

    def messages(self) -> list[Any]:
        async def read() -> list[Any]:
            connection = await nats.connect(NATS_URL)
            try:
                jetstream = connection.jetstream()
                state = (await jetstream.stream_info(self.name)).state
                if state.messages == 0:
                    return []
                return [
                    await jetstream.get_msg(self.name, seq)
                    for seq in range(state.first_seq, state.last_seq + 1)
                ]
            finally:
                await connection.close()

        return asyncio.run(read())

    def count(self) -> int:
        async def read() -> int:
            connection = await nats.connect(NATS_URL)
            try:
                try:
                    info = await connection.jetstream().stream_info(self.name)
                except nats.js.errors.NotFoundError:
                    return 0
                return int(info.state.messages)
            finally:
                await connection.close()

        return asyncio.run(read())


@pytest.fixture
def stream() -> Iterator[Stream]:
    problem = nats_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"{problem} (CI=true: NATS tests must run)", pytrace=False)
        pytest.skip(problem)
    token = uuid.uuid4().hex[:12]
    created = Stream(name=f"OMS_TEST_{token}", prefix=f"omstest_{token}")
    yield created

    async def remove() -> None:
        connection = await nats.connect(NATS_URL)
        try:
            await connection.jetstream().delete_stream(created.name)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await connection.close()

    asyncio.run(remove())


def a_key(name: str) -> StoredApiKey:
    return StoredApiKey(
        key_id=name[:8],
        name=name,
        role=Role.INTEGRATION,
        location_codes=frozenset(),
        secret_hash="0" * 64,
        created_at=datetime(2026, 1, 5, tzinfo=UTC),
        revoked_at=None,
    )


def relay_to_nats(
    services: Services, stream: Stream, *, batch_size: int = 5, delay: float = 0.0
) -> int:
    async def run() -> int:
        publisher = stream.publisher(services, publish_delay_seconds=delay)
        await publisher.connect()
        try:
            relay = OutboxRelay(
                services.uow,
                clock=services.clock,
                ids=services.ids,
                publisher=publisher,
                batch_size=batch_size,
            )
            return await relay.drain()
        finally:
            await publisher.close()

    return asyncio.run(run())


def published_count(services: Services) -> int:
    with services.uow(read_only=True) as uow:
        return int(
            uow.connection.execute(
                select(func.count()).where(outbox_events.c.published_at.is_not(None))
            ).scalar_one()
        )


def duplicate_acks(services: Services) -> int:
    with services.uow(read_only=True) as uow:
        return int(
            uow.connection.execute(
                select(func.count()).where(event_deliveries.c.duplicate.is_(True))
            ).scalar_one()
        )


@pytest.mark.postgres
def test_committed_events_reach_the_stream_once_and_rolled_back_ones_never(
    services: Services, stream: Stream
) -> None:
    with services.uow() as uow:  # a change and its events, in one transaction
        uow.api_keys.add(a_key("committed"))
        uow.record(*(OrderCreated(order_number=f"ORD-{n}") for n in range(7)))
        uow.commit()
    with services.uow() as uow:  # rolled back explicitly: neither the change nor the event
        uow.api_keys.add(a_key("rolled-back"))
        uow.record(OrderCreated(order_number="ROLLED-BACK-1"))
        uow.rollback()
    with pytest.raises(RuntimeError), services.uow() as uow:  # an error before the commit
        uow.record(OrderCreated(order_number="ROLLED-BACK-2"))
        raise RuntimeError("the change failed")
    assert [k.name for k in services.access.list_keys()] == ["committed"]
    commit_events(services, StockAdjusted(sku="LAMP-01", quantity=-2))
    ids = event_ids(services)
    assert len(ids) == 8

    assert relay_to_nats(services, stream, batch_size=3) == 8
    assert relay_to_nats(services, stream, batch_size=3) == 0

    messages = stream.messages()
    assert [m.headers["Nats-Msg-Id"] for m in messages] == ids  # in outbox order
    bodies = [json.loads(m.data) for m in messages]
    assert [b["id"] for b in bodies] == ids
    assert {m.subject for m in messages} == {
        f"{stream.prefix}.order.created",
        f"{stream.prefix}.inventory.adjusted",
    }
    assert bodies[0]["specversion"] == "1.0"
    assert bodies[0]["subject"] == "orders/ORD-0"
    assert bodies[-1]["data"] == {"sku": "LAMP-01", "quantity": -2}
    assert "ROLLED-BACK" not in b"".join(m.data for m in messages).decode()
    assert published_count(services) == 8
    with services.uow(read_only=True) as uow:
        recorded = uow.event_deliveries.for_event(ids[3])
    assert [(d.channel, d.sequence, d.duplicate) for d in recorded] == [("nats", 4, False)]
    assert recorded[0].target == f"{stream.name}:{stream.prefix}.order.created"


@pytest.mark.postgres
def test_republishing_after_a_crash_before_the_commit_is_dropped_by_jetstream(
    services: Services, stream: Stream
) -> None:
    commit_events(services, *(OrderCreated(order_number=f"ORD-{n}") for n in range(6)))
    relay_to_nats(services, stream)
    # What a relay that died after publishing and before committing leaves behind:
    with services.uow() as uow:
        uow.connection.execute(update(outbox_events).values(published_at=None))
        uow.connection.execute(delete(event_deliveries))
        uow.commit()

    assert relay_to_nats(services, stream) == 6

    assert len(stream.messages()) == 6
    assert duplicate_acks(services) == 6


@pytest.mark.postgres
def test_two_relays_at_once_share_the_outbox_and_never_publish_an_event_twice(
    services: Services, stream: Stream
) -> None:
    commit_events(services, *(OrderCreated(order_number=f"ORD-{n}") for n in range(30)))
    relayed: list[int] = []

    def run_relay() -> None:
        relayed.append(relay_to_nats(services, stream, batch_size=3, delay=0.01))

    relays = [threading.Thread(target=run_relay) for _ in range(2)]
    for thread in relays:
        thread.start()
    for thread in relays:
        thread.join()

    assert sum(relayed) == 30
    if services.engine.dialect.name == "postgresql":  # SKIP LOCKED: both got work at once
        assert min(relayed) > 0
    assert duplicate_acks(services) == 0  # no event was handed to JetStream twice
    assert sorted(m.headers["Nats-Msg-Id"] for m in stream.messages()) == sorted(
        event_ids(services)
    )


class WorkerProcess:
    """``oms worker`` in a subprocess, its JSON log lines collected as they come."""

    def __init__(self, services: Services, stream: Stream, *, delay: float) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
        env = {
            **clean,
            "OMS_DATABASE_URL": services.settings.resolved_database_url(),
            "OMS_DATA_DIR": str(services.settings.data_dir),
            "OMS_NATS_URL": NATS_URL,
            "OMS_NATS_STREAM": stream.name,
            "OMS_NATS_SUBJECT_PREFIX": stream.prefix,
            "OMS_RELAY_BATCH_SIZE": "5",
            "OMS_RELAY_PUBLISH_DELAY_SECONDS": str(delay),
            "OMS_WORKER_POLL_SECONDS": "0.1",
            "OMS_LOG_LEVEL": "INFO",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "oms.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def logged(self, message: str) -> bool:
        return any(f'"message": "{message}"' in line for line in self.lines)

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        return code


def wait_for(condition: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.postgres
@pytest.mark.slow
def test_a_worker_killed_mid_batch_and_restarted_publishes_every_event_exactly_once(
    services: Services, stream: Stream
) -> None:
    for batch in range(8):
        commit_events(services, *(OrderCreated(order_number=f"ORD-{batch}-{n}") for n in range(5)))
    with services.uow() as uow:
        uow.record(OrderCreated(order_number="ROLLED-BACK"))
        uow.rollback()
    ids = event_ids(services)
    assert len(ids) == 40

    # Kill the worker (SIGKILL) while a batch is published but not committed.
    for _ in range(3):
        killed = WorkerProcess(services, stream, delay=0.05)
        try:
            wait_for(
                lambda: stream.count() > published_count(services) + 1,
                timeout=60,
                what="a batch in flight",
            )
        finally:
            killed.stop(signal.SIGKILL)
        in_stream, committed = stream.count(), published_count(services)
        if in_stream > committed:
            break
    assert in_stream > committed, "the kill did not land inside a batch"
    assert committed < 40

    # Restart: two workers at once share the rest.
    workers = [WorkerProcess(services, stream, delay=0.05) for _ in range(2)]
    try:
        wait_for(
            lambda: all(w.logged("worker started") for w in workers),
            timeout=60,
            what="the workers to start",
        )
        wait_for(lambda: published_count(services) == 40, timeout=90, what="all events relayed")
    finally:
        outcomes = [worker.stop(signal.SIGTERM) for worker in workers]
    logs = "".join(line for worker in workers for line in worker.lines)
    assert outcomes == [0, 0], logs  # SIGTERM is a graceful stop
    assert all(worker.logged("worker stopped") for worker in workers), logs

    messages = stream.messages()
    msg_ids = [m.headers["Nats-Msg-Id"] for m in messages]
    assert len(msg_ids) == len(set(msg_ids)) == 40
    assert set(msg_ids) == set(ids)
    assert {json.loads(m.data)["id"] for m in messages} == set(ids)
    assert b"ROLLED-BACK" not in b"".join(m.data for m in messages)
    # the events of the killed batch were published again and dropped by JetStream
    assert duplicate_acks(services) >= in_stream - committed > 0
