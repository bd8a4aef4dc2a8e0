"""Process engine throughput: instances of the default ``ship`` process carried from start to
completion (start, ``shipped`` message, ``delivered`` message), with stand-in activities.

It measures the engine and its persistence alone (fulfillment's real activities come later):

    .venv/bin/python benchmarks/processes.py --size small [--database-url URL]

Database: ``--database-url`` (default ``OMS_BENCH_DATABASE_URL``; a PostgreSQL one is created if
missing and its schema reset), else a temporary SQLite file. Writes ``processes.json``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import harness
from oms.adapters.db import migrate
from oms.adapters.db.engine import make_engine
from oms.bootstrap import build_services
from oms.config import Settings, normalise_database_url
from oms.processes.activities import ActivityCall

ROOT = Path(__file__).resolve().parents[1]
DEFINITION = ROOT / "src" / "oms" / "processes" / "definitions" / "ship.bpmn"
ORDERS = {"small": 200, "medium": 1_000, "large": 5_000}


def reset(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            for suffix in ("", "-wal", "-shm"):
                Path(parsed.database + suffix).unlink(missing_ok=True)
    else:
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


def stand_in(call: ActivityCall) -> dict[str, Any]:
    return {"element": call.element_id}


def run(size: str, database_url: str | None) -> dict[str, Any]:
    """Instances of the ``ship`` process carried from start to completion, per second."""
    temporary = None
    if database_url:
        url = normalise_database_url(database_url)
    else:
        temporary = tempfile.mkdtemp(prefix="oms-bench-processes-")
        url = f"sqlite:///{temporary}/oms.db"
    try:
        return measure(url, ORDERS[size])
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


def measure(url: str, orders: int) -> dict[str, Any]:
    reset(url)
    services = build_services(Settings(database_url=url), engine=make_engine(url))
    for name, required in (
        ("source", ("order_id",)),
        ("release", ("order_id", "fulfillment_id")),
        ("capture_payment", ("order_id", "fulfillment_id")),
    ):
        services.processes.activities.register(name, stand_in, required=required)
    services.processes.deploy(DEFINITION.read_text())
    phases: dict[str, float] = {}
    cpu_started = time.process_time()

    started = time.perf_counter()
    for number in range(orders):
        services.processes.start(
            "ship",
            correlation_key=f"ORD-{number}",
            variables={
                "order_id": f"ORD-{number}",
                "fulfillment_id": f"FUL-{number}",
                "location_code": "DC-1",
                "customer_email": "c@example.com",
            },
        )
    phases["start"] = time.perf_counter() - started

    started = time.perf_counter()
    for number in range(orders):
        services.processes.correlate("shipped", f"ORD-{number}", {"tracking": f"T{number}"})
    phases["shipped"] = time.perf_counter() - started

    started = time.perf_counter()
    for number in range(orders):
        services.processes.correlate("delivered", f"ORD-{number}", {})
    phases["delivered"] = time.perf_counter() - started

    cpu = time.process_time() - cpu_started
    completed = sum(
        1
        for number in range(0, orders, max(1, orders // 20))
        for i in services.processes.instances_for(f"ORD-{number}")
        if i.status.value == "completed"
    )
    services.close()
    total = sum(phases.values())
    return {
        "database": make_url(url).get_backend_name(),
        "orders": orders,
        "seconds": {k: round(v, 3) for k, v in phases.items()},
        "orders_per_second": round(orders / total, 1),
        "steps_per_second": round(3 * orders / total, 1),
        "client_cpu_ms_per_step": round(cpu * 1000 / (3 * orders), 2),
        "sampled_completed": completed,
        "notes": [
            "start, 'shipped' and 'delivered' are one unit of work each; stand-in activities",
            f"{completed} of the sampled instances completed",
        ],
    }


if __name__ == "__main__":
    raise SystemExit(harness.main("processes", run))
