"""The one place where things are wired: engine, unit of work, clock, ids and services."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from oms.adapters.clock import RandomIds, SystemClock
from oms.adapters.db import migrate
from oms.adapters.db.engine import is_sqlite, make_engine
from oms.adapters.db.unit_of_work import SqlUnitOfWork
from oms.adapters.gateways.payments_sandbox import SandboxGateway
from oms.adapters.gateways.smtp import SmtpEmailSender
from oms.adapters.rendering import JinjaDocumentRenderer, JinjaEmailTemplates
from oms.adapters.webhook_http import HttpWebhookSender
from oms.config import Settings
from oms.domain.access import Role
from oms.domain.errors import SchemaOutOfDate
from oms.domain.payments import SplitTenderOrder, TenderPolicy
from oms.queries.care import CareQueries
from oms.queries.orders import OrderQueries
from oms.services.access import AccessService
from oms.services.care import CareService
from oms.services.events import EventService
from oms.services.fulfillment import FulfillmentService
from oms.services.fulfillment_processes import FulfillmentProcesses
from oms.services.idempotency import IdempotencyService
from oms.services.inventory import InventoryService
from oms.services.invoices import InvoiceService
from oms.services.notifications import NotificationService
from oms.services.order_sourcing import EngineSourcing, OrderSourcingService
from oms.services.orders import OrderService
from oms.services.payments import PaymentService
from oms.services.ports import Clock, Ids
from oms.services.processes import ProcessService
from oms.services.returns import ReturnService
from oms.services.sourcing import SourcingService
from oms.services.webhooks import WebhookPolicy, WebhookService


@dataclass
class Services:
    settings: Settings
    engine: Engine
    clock: Clock
    ids: Ids
    access: AccessService = field(init=False)
    idempotency: IdempotencyService = field(init=False)
    events: EventService = field(init=False)
    payments: PaymentService = field(init=False)
    invoices: InvoiceService = field(init=False)
    notifications: NotificationService = field(init=False)
    payment_gateway: SandboxGateway = field(init=False)
    _gateway_engine: Engine | None = field(init=False, default=None)
    processes: ProcessService = field(init=False)
    webhooks: WebhookService = field(init=False)
    inventory: InventoryService = field(init=False)
    orders: OrderService = field(init=False)
    order_queries: OrderQueries = field(init=False)
    returns: ReturnService = field(init=False)
    care: CareService = field(init=False)
    care_queries: CareQueries = field(init=False)
    sourcing: SourcingService = field(init=False)
    fulfillments: FulfillmentService = field(init=False)
    fulfillment_processes: FulfillmentProcesses = field(init=False)
    order_sourcing: OrderSourcingService = field(init=False)

    def __post_init__(self) -> None:
        self.access = AccessService(self.uow, clock=self.clock, ids=self.ids)
        self.idempotency = IdempotencyService(
            self.uow, clock=self.clock, ttl=timedelta(hours=self.settings.idempotency_ttl_hours)
        )
        self.events = EventService(self.uow, clock=self.clock)
        self.inventory = InventoryService(self.uow, clock=self.clock, ids=self.ids)
        self.order_queries = OrderQueries(self.engine)
        self.sourcing = SourcingService(self.uow, clock=self.clock)
        self.order_sourcing = OrderSourcingService(
            self.uow, clock=self.clock, sourcing=self.sourcing
        )
        # A location going offline, dark or closed re-plans the orders allocated there.
        self.inventory.on_location_status_change(self.order_sourcing.location_changed)
        # Supply that comes later (or not at all) moves the promises of the lines waiting for it.
        self.inventory.on_supply_delayed(self.order_sourcing.supply_delayed)
        self.processes = ProcessService(self.uow, clock=self.clock, ids=self.ids)
        self._webhook_sender = HttpWebhookSender()
        self.webhooks = WebhookService(
            self.uow,
            clock=self.clock,
            ids=self.ids,
            sender=self._webhook_sender,
            policy=webhook_policy(self.settings),
        )
        self.payment_gateway = SandboxGateway(self._sandbox_engine(), clock=self.clock)
        self.payments = PaymentService(
            self.uow,
            gateway=self.payment_gateway,
            clock=self.clock,
            policy=TenderPolicy(
                SplitTenderOrder(self.settings.payment_capture_order),
                SplitTenderOrder(self.settings.payment_refund_order),
            ),
            max_attempts=self.settings.payment_retry_attempts,
            retry_backoff_seconds=self.settings.payment_retry_backoff_seconds,
        )
        # Orders are sourced by the sourcing engine (nearest-location rule as its fallback).
        self.orders = OrderService(
            self.uow,
            clock=self.clock,
            ids=self.ids,
            sourcing=EngineSourcing(),
            payments=self.payments,
        )
        # Receipts and other stock increases allocate waiting backorders, oldest order first.
        self.inventory.on_stock_increase(self._allocate_backorders)
        self.returns = ReturnService(
            self.uow,
            clock=self.clock,
            ids=self.ids,
            orders=self.orders,
            payments=self.payments,
            window_days=self.settings.return_window_days,
        )
        self.care = CareService(
            self.uow,
            clock=self.clock,
            ids=self.ids,
            payments=self.payments,
            limits={
                Role.ADMIN: None,
                Role.CARE_AGENT: self.settings.care_agent_appeasement_limit,
            },
        )
        self.care_queries = CareQueries(self.engine)
        self.invoices = InvoiceService(
            self.uow, clock=self.clock, ids=self.ids, renderer=JinjaDocumentRenderer()
        )
        self.notifications = NotificationService(
            self.uow,
            clock=self.clock,
            templates=JinjaEmailTemplates(),
            sender=SmtpEmailSender(
                host=self.settings.smtp_host,
                port=self.settings.smtp_port,
                sender=self.settings.smtp_from,
                timeout=self.settings.smtp_timeout_seconds,
            ),
            max_attempts=self.settings.notification_max_attempts,
            retry_seconds=self.settings.notification_retry_seconds,
            care_email=self.settings.care_email,
        )
        self.fulfillments = FulfillmentService(
            self.uow,
            clock=self.clock,
            ids=self.ids,
            orders=self.orders,
            payments=self.payments,
            invoices=self.invoices,
            seller=self.settings.seller(),
        )
        self.orders.on_release = self.fulfillments.released_in
        # after the re-plan of allocated units: released, unpicked work is handed back too
        self.inventory.on_location_status_change(self.fulfillments.location_changed)
        self.fulfillment_processes = FulfillmentProcesses(
            processes=self.processes, orders=self.orders, fulfillments=self.fulfillments
        )
        self.fulfillment_processes.register()

    def _sandbox_engine(self) -> Engine:
        """The sandbox gateway's own store: see :mod:`oms.adapters.gateways.payments_sandbox`."""
        if self.settings.sandbox_gateway_database_url:
            url = self.settings.sandbox_gateway_database_url
        elif not is_sqlite(self.engine):
            return self.engine
        else:
            database = make_url(str(self.engine.url)).database or ""
            if not database or database == ":memory:":
                raise ValueError("the sandbox gateway needs a file database next to SQLite")
            stem = database[:-3] if database.endswith(".db") else database
            url = f"sqlite:///{stem}-sandbox-gateway.db"
        self._gateway_engine = make_engine(url)
        return self._gateway_engine

    def _allocate_backorders(self, skus: Sequence[str]) -> None:
        self.orders.allocate_waiting_backorders(skus)

    def uow(self, *, read_only: bool = False, single_statement: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(
            self.engine,
            clock=self.clock,
            ids=self.ids,
            event_source=self.settings.event_source,
            read_only=read_only,
            single_statement=single_statement,
        )

    def close(self) -> None:
        self._webhook_sender.close()
        self.engine.dispose()
        if self._gateway_engine is not None:
            self._gateway_engine.dispose()


def webhook_policy(settings: Settings) -> WebhookPolicy:
    return WebhookPolicy(
        max_attempts=settings.webhook_max_attempts,
        retry_base=timedelta(seconds=settings.webhook_retry_base_seconds),
        retry_cap=timedelta(seconds=settings.webhook_retry_max_seconds),
        timeout_seconds=settings.webhook_timeout_seconds,
        batch_size=settings.webhook_batch_size,
        concurrency=settings.webhook_concurrency,
    )


def freeze_startup_heap() -> None:
    """Once a process has built its services (server, worker, CLI): collect, then move every
    object alive (modules, classes, functions, SQLAlchemy's tables and compiled statements)
    out of the garbage collector's reach (``gc.freeze``). A full collection otherwise walks
    those ~150k objects each time, and bulk work (a snapshot chunk keeps ~30k objects alive
    while it runs) triggers one every chunk or two: ~200 ms each, a third of a SQLite recount's
    time. Objects made later are collected as usual."""
    gc.collect()
    gc.freeze()


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
