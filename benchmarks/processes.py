"""Process engine throughput: instances of the default ``ship`` process carried from start to
completion (start, ``shipped`` message, ``delivered`` message), with stand-in activities.

It measures the engine and its persistence alone (fulfillment's real activities come later):

    .venv/bin/python benchmarks/processes.py [--orders 500] [--database-url URL]

Default database: PostgreSQL ``oms_bench_processes`` on 127.0.0.1 (created and reset), else
``--database-url sqlite:////tmp/oms-bench-processes.db``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from oms.adapters.db import migrate
from oms.adapters.db.engine import make_engine
from oms.bootstrap import build_services
from oms.config import Settings, normalise_database_url
from oms.processes.activities import ActivityCall

ROOT = Path(__file__).resolve().parents[1]
DEFINITION = ROOT / "src" / "oms" / "processes" / "definitions" / "ship.bpmn"
RESULTS = ROOT / "benchmarks" / "results" / "processes.json"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/oms_bench_processes"


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


def run(url: str, orders: int) -> dict[str, Any]:
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
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()
    result = run(normalise_database_url(args.database_url), args.orders)
    print(
        f"{'database':<10} {'orders':>7} {'start s':>8} {'shipped s':>10} {'delivered s':>12} "
        f"{'orders/s':>9} {'steps/s':>8}"
    )
    seconds = result["seconds"]
    print(
        f"{result['database']:<10} {result['orders']:>7} {seconds['start']:>8} "
        f"{seconds['shipped']:>10} {seconds['delivered']:>12} "
        f"{result['orders_per_second']:>9} {result['steps_per_second']:>8} "
        f"{result['client_cpu_ms_per_step']:>11}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
