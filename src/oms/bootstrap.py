"""The one place where things are wired: engine, unit of work, clock, ids and services."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine

from oms.adapters.clock import RandomIds, SystemClock
from oms.adapters.db import migrate
from oms.adapters.db.engine import is_sqlite, make_engine
from oms.adapters.db.unit_of_work import SqlUnitOfWork
from oms.config import Settings
from oms.domain.errors import SchemaOutOfDate
from oms.services.access import AccessService
from oms.services.events import EventService
from oms.services.idempotency import IdempotencyService
from oms.services.ports import Clock, Ids
from oms.services.sourcing import SourcingService


@dataclass
class Services:
    settings: Settings
    engine: Engine
    clock: Clock
    ids: Ids
    access: AccessService = field(init=False)
    idempotency: IdempotencyService = field(init=False)
    events: EventService = field(init=False)
    sourcing: SourcingService = field(init=False)

    def __post_init__(self) -> None:
        self.access = AccessService(self.uow, clock=self.clock, ids=self.ids)
        self.idempotency = IdempotencyService(
            self.uow, clock=self.clock, ttl=timedelta(hours=self.settings.idempotency_ttl_hours)
        )
        self.events = EventService(self.uow)
        self.sourcing = SourcingService(self.uow, clock=self.clock)

    def uow(self, *, read_only: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(
            self.engine,
            clock=self.clock,
            ids=self.ids,
            event_source=self.settings.event_source,
            read_only=read_only,
        )

    def close(self) -> None:
        self.engine.dispose()


def build_services(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    ids: Ids | None = None,
    engine: Engine | None = None,
) -> Services:
    settings = settings or Settings()
    engine = engine or make_engine(
        settings.resolved_database_url(), busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    return Services(
        settings=settings, engine=engine, clock=clock or SystemClock(), ids=ids or RandomIds()
    )


def prepare_schema(engine: Engine) -> None:
    """SQLite (embedded) upgrades itself; PostgreSQL must be upgraded on purpose by an operator."""
    if migrate.is_current(engine):
        return
    if is_sqlite(engine):
        migrate.upgrade(engine)
        return
    raise SchemaOutOfDate(
        f"the database schema is at revision {migrate.current_revision(engine) or 'none'} but this "
        f"version needs {migrate.head_revision(engine)}: run 'oms db upgrade' first"
    )
