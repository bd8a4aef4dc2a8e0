"""Process throughput: orders carried from capture to shipped through the default ``ship`` BPMN
process, with the real fulfillment activities and the worker.

Per order, one transaction each: capture (validation, sourcing, allocation, the process started
and the order released by its ``Release`` task, the fulfillment opened, the payment authorised
by the sandbox gateway in the same unit of work), pick, pack, ship (stock consumed, the
``shipped`` message correlated to the instance, which captures the payment and asks for the
customer email). Then one pass of the worker (outbox relay, due timers, pickup deadlines).

    python benchmarks/processes.py --size small [--database-url postgresql://.../oms_bench_processes]

Without ``--database-url`` (or ``OMS_BENCH_DATABASE_URL``) a temporary SQLite file is used. A
PostgreSQL database is emptied first, so its name must contain ``bench``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import harness
from oms.adapters.db import migrate
from oms.adapters.db.engine import make_engine
from oms.bootstrap import build_services
from oms.config import Settings, normalise_database_url
from oms.domain.fulfillment import Package
from oms.domain.orders import (
    Address,
    Customer,
    Delivery,
    DeliveryMethod,
    LineRequest,
    PaymentReference,
)
from oms.services.orders import CaptureOrder
from oms.services.ports import SnapshotLine
from oms.worker import Worker

ORDERS = {"small": 100, "medium": 1000, "large": 5000}
TARGET_ORDERS_PER_S = 300
HOME = Address(
    name="Bench Customer",
    line1="1 Main St",
    city="New York",
    postal_code="10001",
    country="US",
    latitude=40.75,
    longitude=-73.99,
)


def reset(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if "bench" not in (parsed.database or ""):
            raise SystemExit(f"refusing to empty '{parsed.database}': use a *bench* database")
        admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
            ).first()
            if not exists:
                connection.execute(text(f'CREATE DATABASE "{parsed.database}"'))
        admin.dispose()
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()


def run(size: str, database_url: str | None) -> dict[str, Any]:
    """Orders/s from capture to shipped through the default ship process, with the worker."""
    orders = ORDERS[size]
    workdir = Path(tempfile.mkdtemp(prefix="oms-bench-processes-"))
    url = normalise_database_url(database_url or f"sqlite:///{workdir / 'bench.db'}")
    reset(url)
    settings = Settings(database_url=url, data_dir=workdir)
    services = build_services(settings, engine=make_engine(url))
    try:
        return _carry(services, orders, url)
    finally:
        services.close()


def _carry(services: Any, orders: int, url: str) -> dict[str, Any]:
    inventory = services.inventory
    inventory.create_location(
        {
            "code": "DC-1",
            "name": "DC 1",
            "type": "dc",
            "latitude": 40.71,
            "longitude": -74.0,
            "capabilities": ["ship"],
        }
    )
    skus = [f"SKU-{n:03d}" for n in range(20)]
    for sku in skus:
        inventory.create_item({"sku": sku, "name": f"Item {sku}"})
    inventory.apply_snapshot(
        [SnapshotLine(sku, "DC-1", orders * 2) for sku in skus],
        as_of=services.clock.now(),
        source="bench",
    )
    services.fulfillment_processes.deploy_defaults()
    box = [Package("P1", Decimal("1.2"), Decimal("30"), Decimal("20"), Decimal("10"), {1: 1})]
    phases = dict.fromkeys(("capture", "pick", "pack", "ship", "worker"), 0.0)
    cpu_started = time.process_time()
    fulfillment_ids: list[str] = []
    for number in range(orders):
        started = time.perf_counter()
        captured = services.orders.capture(
            CaptureOrder(
                channel="web",
                channel_reference=f"B-{number}",
                customer=Customer(name="Bench Customer", email=f"c{number}@example.com"),
                currency="USD",
                lines=[
                    LineRequest(
                        skus[number % len(skus)],
                        1,
                        Decimal("10.00"),
                        Delivery(DeliveryMethod.SHIP, address=HOME),
                    )
                ],
                payments=[PaymentReference("card", "tok_bench")],
            )
        )
        order_id = captured.order.order_id
        phases["capture"] += time.perf_counter() - started
        [fulfillment] = services.fulfillments.for_order(order_id)
        fulfillment_ids.append(fulfillment.id)
    for name, step in (
        ("pick", lambda f_id: services.fulfillments.confirm_pick(f_id, 1, 1)),
        ("pack", lambda f_id: services.fulfillments.pack(f_id, box)),
        (
            "ship",
            lambda f_id: services.fulfillments.ship(
                f_id, carrier="UPS", service="ground", tracking={"P1": f"1Z{f_id[:8]}"}
            ),
        ),
    ):
        started = time.perf_counter()
        for f_id in fulfillment_ids:
            step(f_id)
        phases[name] = time.perf_counter() - started
    started = time.perf_counter()
    asyncio.run(Worker(services).run(once=True, handle_signals=False))
    phases["worker"] = time.perf_counter() - started
    cpu = time.process_time() - cpu_started

    waiting = 0
    for f_id in fulfillment_ids[:: max(1, orders // 20)]:
        f = services.fulfillments.get(f_id)
        [instance] = services.processes.instances_for(f.order_id)
        view = services.processes.instance(instance.id)
        waits = {element.get("element_id") for element in view.instance.active_elements}
        waiting += int(f.status.value == "shipped" and "WaitDelivered" in waits)
    total = sum(phases.values())
    transactions = 5 * orders  # capture, authorise, pick, pack, ship
    return {
        "database": make_url(url).get_backend_name(),
        "orders": orders,
        "seconds": {k: round(v, 3) for k, v in phases.items()},
        "orders_per_s": round(orders / total, 1),
        "transactions_per_s": round(transactions / total, 1),
        "client_cpu_ms_per_order": round(cpu * 1000 / orders, 2),
        "sampled_shipped_and_waiting_for_delivery": waiting,
        "targets": {"orders_per_s": f">= {TARGET_ORDERS_PER_S} (PostgreSQL)"},
        "notes": "single client process; each order: capture+authorise, pick, pack, ship",
    }


if __name__ == "__main__":
    raise SystemExit(harness.main("processes", run))
