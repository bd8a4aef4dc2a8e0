"""``oms worker``: the outbox relay plus periodic jobs, until SIGTERM or SIGINT.

Several workers may run at once: the relay claims outbox rows with row locks (SQLite: the
write lock), and every job must claim its own work with row locks or conditional updates.

Adding a job (other areas do this here, in the registry below)::

    @periodic_job("inventory.release_expired_reservations", every_seconds=30)
    def release_expired_reservations(services: Services) -> object:
        return services.inventory.release_expired_reservations()

``every_seconds=None`` runs the job once per poll (``OMS_WORKER_POLL_SECONDS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from oms.adapters.outbox_relay import NatsPublisher, OutboxRelay
from oms.bootstrap import Services

log = logging.getLogger("oms.worker")

JobFunction = Callable[[Services], object]


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    run: JobFunction
    every_seconds: float | None = None
    """None: every poll of the worker."""


class JobRegistry:
    def __init__(self) -> None:
        self._jobs: dict[str, PeriodicJob] = {}

    def add(self, job: PeriodicJob) -> PeriodicJob:
        if job.name in self._jobs:
            raise ValueError(f"a periodic job '{job.name}' is registered already")
        if job.every_seconds is not None and job.every_seconds <= 0:
            raise ValueError("a job's interval must be positive")
        self._jobs[job.name] = job
        return job

    def __iter__(self) -> Iterator[PeriodicJob]:
        return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)

    def names(self) -> list[str]:
        return list(self._jobs)


JOBS = JobRegistry()


def periodic_job(
    name: str, *, every_seconds: float | None = None, registry: JobRegistry = JOBS
) -> Callable[[JobFunction], JobFunction]:
    def register(function: JobFunction) -> JobFunction:
        registry.add(PeriodicJob(name=name, run=function, every_seconds=every_seconds))
        return function

    return register


# --- the registry: one entry per job, grouped by area -------------------------------------------


@periodic_job("webhooks.deliver_due")
def deliver_webhooks(services: Services) -> object:
    """Attempt the due deliveries, batch after batch while batches come back full."""
    attempted = 0
    for _ in range(20):
        run = services.webhooks.deliver_due()
        attempted += run.attempted
        if run.attempted < services.webhooks.policy.batch_size:
            break
    return attempted


@periodic_job("notifications.dispatch")
def dispatch_notifications(services: Services) -> object:
    """Turn new events into customer emails and send the due ones (retries included)."""
    return services.notifications.dispatch()


@periodic_job("orders.allocate_backorders", every_seconds=60)
def allocate_backorders(services: Services) -> object:
    """Safety net: the after-commit hook of receipts normally allocates backorders at once."""
    return services.orders.allocate_waiting_backorders()


@periodic_job("idempotency.purge_expired", every_seconds=3600)
def purge_idempotency_records(services: Services) -> object:
    return services.idempotency.purge_expired()


@periodic_job("processes.run_due_timers")
def run_due_timers(services: Services) -> object:
    """Fire the due BPMN timers (pickup reminders, expiries), batch after batch."""
    fired = 0
    for _ in range(20):
        run = services.processes.run_due_timers(limit=100)
        fired += run.fired + run.failed
        if run.fired + run.failed < 100:
            break
    return fired


@periodic_job("inventory.release_expired_reservations", every_seconds=30)
def release_expired_reservations(services: Services) -> object:
    return services.inventory.release_expired_reservations()


@periodic_job("fulfillment.pickup_deadlines", every_seconds=60)
def pickup_deadlines(services: Services) -> object:
    """Reminders and expiry of uncollected pickups of orders that run without a process."""
    return services.fulfillments.run_pickup_deadlines()


@periodic_job("sourcing.batch_wave", every_seconds=15 * 60)
def batch_wave(services: Services) -> object:
    """Plan the orders waiting for batch (wave) sourcing together, every 15 minutes."""
    return services.order_sourcing.run_wave().orders


@periodic_job("sourcing.bid_prices", every_seconds=60 * 60)
def refresh_bid_prices(services: Services) -> object:
    """The opportunity cost of stock from the recent orders, for profiles that weigh it."""
    return services.order_sourcing.refresh_bid_prices().status


@periodic_job("sourcing.capacity_exhausted", every_seconds=5 * 60)
def capacity_exhausted(services: Services) -> object:
    """Locations over today's capacity move their newest unreleased allocations elsewhere."""
    return services.order_sourcing.replan_over_capacity()


# --- the loop -----------------------------------------------------------------------------------


class Worker:
    def __init__(
        self,
        services: Services,
        *,
        jobs: JobRegistry = JOBS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.services = services
        self.jobs = jobs
        self._monotonic = monotonic
        self._stop: asyncio.Event | None = None
        self._last_run: dict[str, float] = {}
        self.relay_error: str | None = None
        """Why the last relay pass failed (None when it succeeded)."""

    @property
    def poll_seconds(self) -> float:
        return self.services.settings.worker_poll_seconds

    def stop(self) -> None:
        if self._stop is not None and not self._stop.is_set():
            log.info("worker stopping")
            self._stop.set()

    def stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _publisher(self) -> NatsPublisher | None:
        settings = self.services.settings
        if not settings.nats_url:
            return None
        return NatsPublisher(
            url=settings.nats_url,
            stream=settings.nats_stream,
            subject_prefix=settings.nats_subject_prefix,
            duplicate_window_seconds=settings.nats_duplicate_window_seconds,
            clock=self.services.clock,
            publish_delay_seconds=settings.relay_publish_delay_seconds,
        )

    async def run(self, *, once: bool = False, handle_signals: bool = True) -> None:
        """Poll until stopped; ``once`` makes one pass (relay until empty, each job once)."""
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.stop)
        publisher = self._publisher()
        relay = OutboxRelay(
            self.services.uow,
            clock=self.services.clock,
            ids=self.services.ids,
            publisher=publisher,
            batch_size=self.services.settings.relay_batch_size,
        )
        log.info(
            "worker started",
            extra={
                "nats": publisher.url if publisher else None,
                "stream": publisher.stream if publisher else None,
                "jobs": self.jobs.names(),
                "poll_seconds": self.poll_seconds,
            },
        )
        try:
            if once:
                await self._relay(relay)
                await self._run_due_jobs()
            else:
                # Two loops, so that a slow webhook endpoint never holds up the relay.
                await asyncio.gather(
                    self._every_poll(lambda: self._relay(relay)),
                    self._every_poll(self._run_due_jobs),
                )
        finally:
            if publisher is not None:
                await publisher.close()
            if handle_signals:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(signum)
            log.info("worker stopped")

    async def _every_poll(self, step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        assert self._stop is not None
        while not self.stopping():
            await step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.poll_seconds)

    async def _relay(self, relay: OutboxRelay) -> None:
        publisher = relay.publisher
        try:
            connecting = publisher is not None and not publisher.connected
            if connecting and publisher and not await self._unless_stopped(publisher.connect()):
                return  # stopped while connecting
            await relay.drain(stopping=self.stopping)
            self.relay_error = None
        except Exception as error:
            # The batch rolled back: its events stay in the outbox for the next poll.
            self.relay_error = str(error) or type(error).__name__
            log.warning(
                "outbox relay failed; retrying at the next poll",
                extra={"error": repr(error)},
                exc_info=not isinstance(error, ConnectionError | TimeoutError),
            )
            if publisher is not None and not publisher.connected:
                await publisher.close()

    async def _unless_stopped(self, work: Coroutine[Any, Any, object]) -> bool:
        """Run ``work`` unless a stop comes first (then cancel it); True when it finished."""
        assert self._stop is not None
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return False
        task.result()
        return True

    async def _run_due_jobs(self) -> None:
        for job in self.jobs:
            if self.stopping():
                return
            now = self._monotonic()
            last = self._last_run.get(job.name)
            if (
                job.every_seconds is not None
                and last is not None
                and now - last < job.every_seconds
            ):
                continue
            self._last_run[job.name] = now
            started = time.perf_counter()
            try:
                result = await asyncio.to_thread(job.run, self.services)
            except Exception:
                log.exception("periodic job failed", extra={"job": job.name})
                continue
            log.debug(
                "periodic job ran",
                extra={
                    "job": job.name,
                    "result": result,
                    "duration_ms": round((time.perf_counter() - started) * 1000),
                },
            )
