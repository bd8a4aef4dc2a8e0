"""The outbox relay: committed events -> NATS JetStream and webhook deliveries.

One batch is one database transaction:

1. claim the oldest unpublished outbox rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so that
   several relays share the work; SQLite's write lock lets one relay at a time in);
2. publish each event to JetStream with its id as ``Nats-Msg-Id`` and wait for the acks;
3. record the deliveries, create the webhook deliveries, mark the rows published; commit.

If the process dies anywhere before the commit, the rows are still unpublished and the next
relay publishes them again under the same ``Nats-Msg-Id``: JetStream drops the repeats that
arrive within the stream's duplicate window, so the stream holds each event exactly once.
An event of a rolled-back transaction never reaches the outbox table, so it is never published.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import nats
from nats.js.errors import NotFoundError

from oms.services.ports import Clock, EventDelivery, Ids, OutboxEvent, UnitOfWorkFactory
from oms.services.webhooks import fan_out

log = logging.getLogger("oms.relay")

NATS_CHANNEL = "nats"
MSG_ID_HEADER = "Nats-Msg-Id"


class NatsPublisher:
    """Publishes CloudEvents JSON to a JetStream stream, one subject per event type."""

    def __init__(
        self,
        *,
        url: str,
        stream: str,
        subject_prefix: str,
        duplicate_window_seconds: float,
        clock: Clock,
        publish_delay_seconds: float = 0.0,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.url = url
        self.stream = stream
        self.subject_prefix = subject_prefix
        self._duplicate_window = duplicate_window_seconds
        self._clock = clock
        self._delay = publish_delay_seconds
        self._timeout = timeout_seconds
        self._connection: Any = None
        self._jetstream: Any = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and bool(self._connection.is_connected)

    async def connect(self) -> None:
        """Connect and ensure the stream; gives up after the timeout (the caller retries)."""

        async def on_error(error: Exception) -> None:
            log.warning("NATS connection problem", extra={"error": repr(error)})

        async def on_disconnected() -> None:
            if self._connection is not None:  # not when we close it ourselves
                log.warning("NATS disconnected", extra={"url": self.url})

        async def on_reconnected() -> None:
            log.info("NATS reconnected", extra={"url": self.url})

        try:
            self._connection = await asyncio.wait_for(
                nats.connect(
                    self.url,
                    name="oms-relay",
                    connect_timeout=self._timeout,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    error_cb=on_error,
                    disconnected_cb=on_disconnected,
                    reconnected_cb=on_reconnected,
                ),
                self._timeout,
            )
        except TimeoutError:
            raise ConnectionError(
                f"NATS at {self.url} did not answer within {self._timeout:g}s"
            ) from None
        self._jetstream = self._connection.jetstream(timeout=self._timeout)
        try:
            await self.ensure_stream()
        except Exception:
            await self.close()
            raise

    async def ensure_stream(self) -> None:
        """Create the stream (subjects ``<prefix>.>``) unless it exists already."""
        try:
            await self._jetstream.stream_info(self.stream)
        except NotFoundError:
            await self._jetstream.add_stream(
                name=self.stream,
                subjects=[f"{self.subject_prefix}.>"],
                duplicate_window=self._duplicate_window,
            )
            log.info(
                "created JetStream stream",
                extra={"stream": self.stream, "subjects": f"{self.subject_prefix}.>"},
            )

    def subject_of(self, event: OutboxEvent) -> str:
        return f"{self.subject_prefix}.{event.type}"

    async def publish(self, events: Sequence[OutboxEvent]) -> list[EventDelivery]:
        """Publish in order and wait for every ack; raises if any publish fails."""
        if self._jetstream is None:
            raise RuntimeError("NatsPublisher.connect() first")
        acks = []
        if self._delay:
            # Test hook: one at a time, pausing after each ack (a slow broker, a long batch).
            for event in events:
                acks.append(await self._jetstream.publish(**self._message(event)))
                await asyncio.sleep(self._delay)
        else:
            futures = [await self._jetstream.publish_async(**self._message(e)) for e in events]
            acks = list(await asyncio.wait_for(asyncio.gather(*futures), self._timeout))
        at = self._clock.now()
        return [
            EventDelivery(
                event_id=event.event_id,
                channel=NATS_CHANNEL,
                target=f"{ack.stream}:{self.subject_of(event)}",
                sequence=ack.seq,
                duplicate=bool(ack.duplicate),
                delivered_at=at,
            )
            for event, ack in zip(events, acks, strict=True)
        ]

    def _message(self, event: OutboxEvent) -> dict[str, Any]:
        return {
            "subject": self.subject_of(event),
            "payload": json.dumps(event.cloud_event(), separators=(",", ":")).encode(),
            "headers": {MSG_ID_HEADER: event.event_id, "Content-Type": "application/json"},
            "stream": self.stream,
        }

    async def close(self) -> None:
        connection, self._connection, self._jetstream = self._connection, None, None
        if connection is not None:
            try:
                await connection.drain()
            except Exception:  # closing anyway: a drain can fail on a broken connection
                await connection.close()


class OutboxRelay:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        ids: Ids,
        publisher: NatsPublisher | None,
        batch_size: int,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._ids = ids
        self.publisher = publisher
        self.batch_size = batch_size

    async def relay_batch(self) -> int:
        """Relay one batch in one transaction; returns how many events it handled."""
        with self._uow() as uow:
            events = uow.outbox.claim_unpublished(limit=self.batch_size)
            if not events:
                return 0
            duplicates = 0
            if self.publisher is not None:
                deliveries = await self.publisher.publish(events)
                uow.event_deliveries.add(deliveries)
                duplicates = sum(d.duplicate for d in deliveries)
            webhooks = fan_out(uow, events, clock=self._clock, ids=self._ids)
            uow.outbox.mark_published([e.position for e in events], at=self._clock.now())
            uow.commit()
        log.info(
            "relayed events",
            extra={
                "count": len(events),
                "first_position": events[0].position,
                "last_position": events[-1].position,
                "nats": self.publisher is not None,
                "nats_duplicates": duplicates,
                "webhook_deliveries": webhooks,
            },
        )
        return len(events)

    async def drain(self, *, stopping: Callable[[], bool] = lambda: False) -> int:
        """Relay batches until the outbox is empty (or a stop is asked for between batches)."""
        total = 0
        while not stopping():
            count = await self.relay_batch()
            total += count
            if count < self.batch_size:
                break
        return total
