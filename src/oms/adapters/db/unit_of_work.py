"""The SQL unit of work: one connection, one transaction, events into the outbox at commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from types import TracebackType
from typing import Self

from sqlalchemy import Connection, Engine, RootTransaction

from oms.adapters.db.care import SqlCareRepository
from oms.adapters.db.engine import READ_ONLY
from oms.adapters.db.events import SqlEventDeliveryRepository, SqlWebhookRepository
from oms.adapters.db.fulfillment import SqlFulfillmentRepository
from oms.adapters.db.inventory import (
    SqlInventoryRepository,
    SqlItemRepository,
    SqlLocationRepository,
)
from oms.adapters.db.notifications import SqlNotificationRepository
from oms.adapters.db.order_sourcing import SqlOrderRefusalRepository
from oms.adapters.db.orders import SqlOrderRepository
from oms.adapters.db.payments import SqlInvoiceRepository, SqlPaymentRepository
from oms.adapters.db.processes import SqlProcessRepository
from oms.adapters.db.reference import ReferenceView, cache_for
from oms.adapters.db.repositories import (
    SqlApiKeyRepository,
    SqlIdempotencyRepository,
    SqlOutboxRepository,
)
from oms.adapters.db.sourcing import (
    SqlSourcingBidPriceRepository,
    SqlSourcingDecisionRepository,
    SqlSourcingProfileRepository,
)
from oms.domain.events import DomainEvent
from oms.services.ports import Clock, Ids, OutboxEvent


class SqlUnitOfWork:
    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock,
        ids: Ids,
        event_source: str,
        read_only: bool = False,
        single_statement: bool = False,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._ids = ids
        self._event_source = event_source
        self._read_only = read_only
        self._autocommit = single_statement and engine.dialect.name == "postgresql"
        """A use case that is one statement writing its own events (a one-line hold) runs in
        autocommit on PostgreSQL: no BEGIN and COMMIT round trips, and the row locks it takes
        last only while the statement runs. Elsewhere it is an ordinary transaction."""
        self._events: list[DomainEvent] = []
        self._connection: Connection | None = None
        self._transaction: RootTransaction | None = None

    # -- transaction -----------------------------------------------------------------------

    def __enter__(self) -> Self:
        connection = self._engine.connect()
        if self._read_only:
            options: dict[str, object] = {READ_ONLY: True}
            if connection.dialect.name == "postgresql":
                # Under READ COMMITTED every statement reads its own snapshot, in a transaction
                # or not: a read-only unit of work in autocommit reads the same and saves the
                # BEGIN and ROLLBACK round trips (every authenticated request makes one).
                options["isolation_level"] = "AUTOCOMMIT"
            connection = connection.execution_options(**options)
        elif self._autocommit:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        self._connection = connection
        self._transaction = connection.begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._transaction is not None and self._transaction.is_active:
                self._transaction.rollback()
        finally:
            if self._connection is not None:
                self._connection.close()
            self._connection = None
            self._transaction = None
            self._events.clear()

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("the unit of work is not open: use it in a 'with' block")
        return self._connection

    def record(self, *events: DomainEvent) -> None:
        if self._read_only:
            raise RuntimeError("a read-only unit of work cannot record events")
        if self._autocommit:
            raise RuntimeError("a single-statement unit of work writes its events itself")
        self._events.extend(events)

    def commit(self) -> None:
        if self._transaction is None:
            raise RuntimeError("the unit of work is not open")
        if self._events:
            at = self._clock.now()
            self.outbox.add(
                [
                    OutboxEvent(
                        position=0,
                        event_id=self._ids.new_id(),
                        type=event.type,
                        source=self._event_source,
                        subject=event.subject,
                        time=at,
                        data=event.data(),
                    )
                    for event in self._events
                ]
            )
            self._events.clear()
        self._transaction.commit()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        recorded = len(self._events)
        nested = self.connection.begin_nested()
        try:
            yield
        except BaseException:
            if nested.is_active:
                nested.rollback()
            del self._events[recorded:]
            if "orders" in self.__dict__:
                self.orders.forget()
            raise
        else:
            if nested.is_active:
                nested.commit()

    def rollback(self) -> None:
        self._events.clear()
        if "orders" in self.__dict__:  # what it kept may be ahead of the rows rolled back
            self.orders.forget()
        if self._transaction is not None and self._transaction.is_active:
            self._transaction.rollback()

    # -- repositories ----------------------------------------------------------------------

    @cached_property
    def reference(self) -> ReferenceView:
        """Locations, sourcing profiles and process definitions, cached per engine behind one
        signature read per unit of work."""
        return ReferenceView(self.connection, cache_for(self._engine))

    @cached_property
    def api_keys(self) -> SqlApiKeyRepository:
        return SqlApiKeyRepository(self.connection)

    @cached_property
    def idempotency(self) -> SqlIdempotencyRepository:
        return SqlIdempotencyRepository(self.connection)

    @cached_property
    def outbox(self) -> SqlOutboxRepository:
        return SqlOutboxRepository(self.connection)

    @cached_property
    def payments(self) -> SqlPaymentRepository:
        return SqlPaymentRepository(self.connection)

    @cached_property
    def invoices(self) -> SqlInvoiceRepository:
        return SqlInvoiceRepository(self.connection)

    @cached_property
    def notifications(self) -> SqlNotificationRepository:
        return SqlNotificationRepository(self.connection)

    @cached_property
    def processes(self) -> SqlProcessRepository:
        return SqlProcessRepository(self.connection, reference=self.reference)

    @cached_property
    def event_deliveries(self) -> SqlEventDeliveryRepository:
        return SqlEventDeliveryRepository(self.connection)

    @cached_property
    def webhooks(self) -> SqlWebhookRepository:
        return SqlWebhookRepository(self.connection)

    @cached_property
    def locations(self) -> SqlLocationRepository:
        return SqlLocationRepository(self.connection, reference=self.reference)

    @cached_property
    def items(self) -> SqlItemRepository:
        return SqlItemRepository(self.connection)

    @cached_property
    def inventory(self) -> SqlInventoryRepository:
        return SqlInventoryRepository(
            self.connection,
            record=self.record,
            new_id=self._ids.new_id,
            event_source=self._event_source,
            reference=self.reference,
        )

    @cached_property
    def orders(self) -> SqlOrderRepository:
        return SqlOrderRepository(self.connection)

    @cached_property
    def care(self) -> SqlCareRepository:
        return SqlCareRepository(self.connection)

    @cached_property
    def sourcing_profiles(self) -> SqlSourcingProfileRepository:
        return SqlSourcingProfileRepository(self.connection, reference=self.reference)

    @cached_property
    def sourcing_decisions(self) -> SqlSourcingDecisionRepository:
        return SqlSourcingDecisionRepository(self.connection)

    @cached_property
    def sourcing_bid_prices(self) -> SqlSourcingBidPriceRepository:
        return SqlSourcingBidPriceRepository(self.connection)

    @cached_property
    def fulfillments(self) -> SqlFulfillmentRepository:
        return SqlFulfillmentRepository(self.connection)

    @cached_property
    def order_refusals(self) -> SqlOrderRefusalRepository:
        return SqlOrderRefusalRepository(self.connection)
