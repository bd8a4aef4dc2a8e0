"""Order capture throughput, end to end in-process, against a raw-SQL ceiling.

Each capture of a 3-line order validates, reads availability, sources (the simple "nearest
location that can serve the line" rule), allocates with conditional updates, persists the order
and writes its events to the outbox, in one transaction: ``services.orders.capture``. The same
run times a hand-written raw-SQL transaction doing the same writes (order, lines, line
quantities, three conditional stock updates, an outbox row): what the database itself allows.
Both run with 1 and with 8 client processes, on SQLite and on PostgreSQL; then ``oms serve``
takes 3-line orders over HTTP from 8 concurrent clients, once with ``--workers`` one per core
(at least 2: the production shape) and once with a single worker process.

    python benchmarks/orders.py --size small [--database-url postgresql://...]

writes ``benchmarks/results/orders.json`` (``harness.main``) and prints a table. Where the time
goes: each run sums the time spent inside the database driver (``before/after_cursor_execute``,
"in driver", waiting for the server included), the rest is Python (validation, domain,
SQLAlchemy, JSON); "cpu ms" is the CPU the client processes spent per order, next to the same
figure of the raw-SQL transaction: on a small machine the two sides share the cores, so client
CPU per order is what bounds the 8-process rows.

On PostgreSQL an extra, clearly labelled run repeats the 8-process capture and both raw-SQL runs
with ``synchronous_commit = off`` set per session inside this benchmark only (never a default of
the system): how much of the ceiling is commit latency (WAL flush) on this machine.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

import harness
from oms.adapters.db import migrate
from oms.adapters.db.engine import make_engine
from oms.bootstrap import build_services
from oms.config import Settings, normalise_database_url
from oms.domain.orders import Address, Customer, Delivery, DeliveryMethod, LineRequest
from oms.services.orders import CaptureOrder
from oms.services.ports import SnapshotLine

SIZES: dict[str, dict[str, int]] = {
    # orders per process for the 1-process run and for each of the 8 processes
    "small": {"single": 100, "each_of_8": 25, "skus": 60},
    "medium": {"single": 1000, "each_of_8": 250, "skus": 200},
    "large": {"single": 5000, "each_of_8": 1250, "skus": 1000},
}
PROCESS_COUNTS = (1, 8)
HTTP_CLIENTS = 8
HTTP_WORKERS = max(2, os.cpu_count() or 2)
"""``oms serve --workers``: one worker process per core, the production shape."""
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/oms_orders_bench"
SYNC_OFF = "SET synchronous_commit = off"
"""Benchmark-only session setting for the labelled extra rows: commits without waiting for WAL."""
ADDRESS = Address(
    name="Bench Customer",
    line1="1 Main St",
    city="New York",
    postal_code="10001",
    country="US",
    latitude=40.75,
    longitude=-73.99,
)


# --- database set-up ----------------------------------------------------------------------------


def prepare(url: str, skus: int) -> None:
    """A fresh schema with two DCs and ``skus`` items stocked plenty at both."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
    else:
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    engine = make_engine(url)
    migrate.upgrade(engine)
    services = build_services(Settings(database_url=url), engine=engine)
    for code, latitude, longitude in (("DC-EAST", 40.71, -74.0), ("DC-WEST", 34.05, -118.24)):
        services.inventory.create_location(
            {
                "code": code,
                "name": code,
                "type": "dc",
                "latitude": latitude,
                "longitude": longitude,
                "timezone": "UTC",
                "capabilities": ["ship"],
            }
        )
    names = [f"SKU-{index:05d}" for index in range(skus)]
    services.inventory.import_items([{"sku": sku, "name": f"Item {sku}"} for sku in names])
    lines = [SnapshotLine(sku, code, 1_000_000) for sku in names for code in ("DC-EAST", "DC-WEST")]
    services.inventory.apply_snapshot(lines, as_of=services.clock.now(), source="bench")
    services.close()


def can_reach(url: str) -> str | None:
    parsed = make_url(url)
    try:
        admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            found = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
            ).first()
            if not found:
                connection.execute(text(f'CREATE DATABASE "{parsed.database}"'))
        admin.dispose()
    except Exception as error:
        return str(error).splitlines()[0]
    return None


# --- the two workloads --------------------------------------------------------------------------


def _order(worker: int, number: int, skus: int) -> CaptureOrder:
    picks = [(worker * 7919 + number * 3 + offset) % skus for offset in range(3)]
    return CaptureOrder(
        channel="web",
        channel_reference=f"bench-{worker}-{number}-{uuid.uuid4().hex[:8]}",
        customer=Customer(customer_id=f"C-{number}", email=f"c{number}@example.com"),
        currency="USD",
        lines=[
            LineRequest(
                f"SKU-{sku:05d}",
                1 + offset,
                Decimal("19.99"),
                Delivery(DeliveryMethod.SHIP, address=ADDRESS),
            )
            for offset, sku in enumerate(picks)
        ],
    )


def capture_worker(
    url: str, worker: int, count: int, skus: int, barrier: Any, out: Any, sync_off: bool = False
) -> None:
    services = build_services(Settings(database_url=url))
    if sync_off:

        @event.listens_for(services.engine, "connect")
        def _no_flush_wait(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(SYNC_OFF)
            dbapi_connection.commit()

    driver_seconds = [0.0]
    started_at: dict[int, float] = {}

    @event.listens_for(services.engine, "before_cursor_execute")
    def _before(
        conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: Any
    ) -> None:
        started_at[id(cursor)] = time.perf_counter()

    @event.listens_for(services.engine, "after_cursor_execute")
    def _after(
        conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: Any
    ) -> None:
        driver_seconds[0] += time.perf_counter() - started_at.pop(id(cursor), time.perf_counter())

    services.orders.capture(_order(worker, -1, skus))  # warm the pool and statement caches
    driver_seconds[0] = 0.0
    latencies = []
    barrier.wait(timeout=120)
    cpu = time.process_time()
    for number in range(count):
        began = time.perf_counter()
        services.orders.capture(_order(worker, number, skus))
        latencies.append(time.perf_counter() - began)
    cpu = time.process_time() - cpu
    services.close()
    out.put({"latencies": latencies, "driver_seconds": driver_seconds[0], "cpu_seconds": cpu})


def _raw_connection(url: str) -> Any:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        connection = sqlite3.connect(parsed.database or "", isolation_level=None, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA busy_timeout=30000")
        return connection
    import psycopg

    return psycopg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
    )


def raw_worker(
    url: str, worker: int, count: int, skus: int, barrier: Any, out: Any, sync_off: bool = False
) -> None:
    """The same writes as a capture, hand-written: the database's ceiling."""
    sqlite = make_url(url).get_backend_name() == "sqlite"
    connection = _raw_connection(url)
    if sync_off and not sqlite:
        connection.execute(SYNC_OFF)
        connection.commit()
    mark = "?" if sqlite else "%s"
    json_mark = "?" if sqlite else "%s::jsonb"
    cursor = connection.cursor()
    cursor.execute("SELECT id, sku FROM items")
    item_ids = {sku: item_id for item_id, sku in cursor.fetchall()}
    cursor.execute("SELECT id FROM locations WHERE code = 'DC-EAST'")
    location_id = cursor.fetchone()[0]
    if not sqlite:
        connection.commit()
    insert_order = (
        "INSERT INTO orders (order_id, order_number, channel, channel_reference, customer_id, "
        "customer_email, currency, subtotal, discount_total, tax_total, shipping_charge, total, "
        "status, on_hold, payments, tags, created_at, updated_at, version) VALUES ("
        + ", ".join([mark] * 14 + [json_mark, json_mark] + [mark] * 3)
        + ")"
    )
    insert_line = (
        "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price, discount, tax, "
        "delivery_method, ship_address, gift, status) VALUES ("
        + ", ".join([mark] * 8 + [json_mark] + [mark] * 2)
        + ")"
    )
    insert_quantity = (
        "INSERT INTO order_line_quantities (order_id, line_no, state, location_code, quantity) "
        f"VALUES ({', '.join([mark] * 5)})"
    )
    allocate = (
        f"UPDATE inventory_positions SET allocated = allocated + {mark}, updated_at = {mark} "
        f"WHERE item_id = {mark} AND location_id = {mark} AND on_hand - allocated - reserved "
        f"- blocked - safety_stock >= {mark}"
    )
    insert_event = (
        "INSERT INTO outbox_events (event_id, type, source, subject, time, data) VALUES ("
        + ", ".join([mark] * 5 + [json_mark])
        + ")"
    )
    address = json.dumps({"name": ADDRESS.name, "city": ADDRESS.city})

    def once(number: int) -> None:
        order = _order(worker, number, skus)
        order_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        stamp: Any = now.replace(tzinfo=None).isoformat(sep=" ") if sqlite else now
        money: Callable[[Decimal], Any] = (lambda d: str(d)) if sqlite else (lambda d: d)
        total = sum(line.unit_price * line.quantity for line in order.lines)
        if sqlite:
            cursor.execute("BEGIN IMMEDIATE")
        cursor.execute(
            insert_order,
            (
                order_id,
                order_id[:12],
                "web",
                order.channel_reference,
                "C",
                "c@example.com",
                "USD",
                money(total),
                money(Decimal(0)),
                money(Decimal(0)),
                money(Decimal(0)),
                money(total),
                "allocated",
                False,
                "[]",
                "[]",
                stamp,
                stamp,
                0,
            ),
        )
        cursor.executemany(
            insert_line,
            [
                (
                    order_id,
                    index + 1,
                    line.sku,
                    line.quantity,
                    money(line.unit_price),
                    money(Decimal(0)),
                    money(Decimal(0)),
                    "ship",
                    address,
                    False,
                    "allocated",
                )
                for index, line in enumerate(order.lines)
            ],
        )
        cursor.executemany(
            insert_quantity,
            [
                (order_id, index + 1, "allocated", "DC-EAST", line.quantity)
                for index, line in enumerate(order.lines)
            ],
        )
        for _offset, line in sorted(enumerate(order.lines), key=lambda pair: item_ids[pair[1].sku]):
            cursor.execute(
                allocate, (line.quantity, stamp, item_ids[line.sku], location_id, line.quantity)
            )
            if cursor.rowcount != 1:
                raise RuntimeError("out of stock in the raw benchmark")
        cursor.execute(
            insert_event,
            (
                str(uuid.uuid4()),
                "order.created",
                "/oms",
                f"orders/{order_id}",
                stamp,
                json.dumps({"order_id": order_id}),
            ),
        )
        if sqlite:
            cursor.execute("COMMIT")
        else:
            connection.commit()

    once(-1)
    latencies = []
    barrier.wait(timeout=120)
    cpu = time.process_time()
    for number in range(count):
        began = time.perf_counter()
        once(number)
        latencies.append(time.perf_counter() - began)
    cpu = time.process_time() - cpu
    connection.close()
    out.put({"latencies": latencies, "driver_seconds": 0.0, "cpu_seconds": cpu})


def http_measure(
    url: str, clients: int, per_client: int, skus: int, *, workers: int = 1
) -> dict[str, Any]:
    """``oms serve --workers N`` and ``clients`` concurrent HTTP clients."""
    import socket
    import subprocess
    import threading

    import httpx

    services = build_services(Settings(database_url=url))
    secret = services.access.create_key(name="bench", role="integration").secret
    services.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMS_DATABASE_URL": url, "OMS_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("oms")),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.2)
        latencies: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(clients + 1)

        def client(worker: int) -> None:
            with httpx.Client(base_url=base, headers={"X-API-Key": secret}, timeout=60) as http:
                http.post("/orders", json=_order_json(worker, -1, skus))
                start.wait()
                for number in range(per_client):
                    began = time.perf_counter()
                    response = http.post("/orders", json=_order_json(worker, number, skus))
                    took = time.perf_counter() - began
                    with lock:
                        latencies.append(took)
                        if response.status_code != 201:
                            failures.append(f"{response.status_code}: {response.text[:200]}")

        threads = [threading.Thread(target=client, args=(100 + i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(timeout=30)
    if failures:
        raise RuntimeError(f"{len(failures)} HTTP captures failed, e.g. {failures[0]}")
    return {
        "workers": workers,
        "clients": clients,
        "orders": len(latencies),
        "seconds": round(elapsed, 3),
        "orders_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
    }


def _order_json(worker: int, number: int, skus: int) -> dict[str, Any]:
    order = _order(worker, number, skus)
    address = {
        "name": ADDRESS.name,
        "line1": ADDRESS.line1,
        "city": ADDRESS.city,
        "postal_code": ADDRESS.postal_code,
        "country": ADDRESS.country,
        "latitude": ADDRESS.latitude,
        "longitude": ADDRESS.longitude,
    }
    return {
        "channel": order.channel,
        "channel_reference": order.channel_reference,
        "customer": {"customer_id": order.customer.customer_id, "email": order.customer.email},
        "currency": order.currency,
        "lines": [
            {
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price": str(line.unit_price),
                "delivery": {"method": "ship", "address": address},
            }
            for line in order.lines
        ],
    }


# --- running ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def measure(
    worker: Callable[..., None],
    url: str,
    processes: int,
    per_process: int,
    skus: int,
    *,
    sync_off: bool = False,
) -> dict[str, Any]:
    # fork: the children start with everything imported (spawn would re-import per process)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    barrier = context.Barrier(processes + 1)
    out = context.Queue()
    children = [
        context.Process(target=worker, args=(url, index, per_process, skus, barrier, out, sync_off))
        for index in range(processes)
    ]
    for child in children:
        child.start()
    barrier.wait(timeout=180)
    began = time.perf_counter()
    reports = [out.get(timeout=600) for _ in children]
    elapsed = time.perf_counter() - began
    for child in children:
        child.join(timeout=60)
        if child.exitcode != 0:
            raise RuntimeError(f"a benchmark process failed (exit {child.exitcode})")
    latencies = [value for report in reports for value in report["latencies"]]
    busy = sum(latencies)
    return {
        "processes": processes,
        "orders": len(latencies),
        "seconds": round(elapsed, 3),
        "orders_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "driver_share": round(sum(r["driver_seconds"] for r in reports) / busy, 3) if busy else 0,
        # CPU of the client processes (Python, SQLAlchemy, the driver) per order
        "client_cpu_ms_per_order": round(
            sum(r["cpu_seconds"] for r in reports) / len(latencies) * 1000, 3
        ),
    }


def run(size: str, database_url: str | None) -> dict[str, Any]:
    """Order capture throughput (3-line orders) against the raw-SQL ceiling."""
    plan = SIZES[size]
    targets: list[tuple[str, str]] = []
    workdir = tempfile.mkdtemp(prefix="oms-bench-orders-")
    targets.append(("sqlite", f"sqlite:///{workdir}/oms.db"))
    postgres = normalise_database_url(
        database_url or os.environ.get("OMS_BENCH_DATABASE_URL") or DEFAULT_POSTGRES
    )
    skipped = (
        can_reach(postgres)
        if make_url(postgres).get_backend_name() == "postgresql"
        else f"{make_url(postgres).get_backend_name()} URL given, not PostgreSQL"
    )
    if skipped is None:
        targets.append(("postgresql", postgres))
    results: dict[str, Any] = {"databases": {}}
    notes: list[str] = []
    if skipped:
        notes.append(f"PostgreSQL skipped: {skipped}")
    for name, url in targets:
        per_database: dict[str, Any] = {}
        prepare(url, plan["skus"])  # stock for every run: they only add orders
        for processes in PROCESS_COUNTS:
            count = plan["single"] if processes == 1 else plan["each_of_8"]
            capture = measure(capture_worker, url, processes, count, plan["skus"])
            ceiling = measure(raw_worker, url, processes, count, plan["skus"])
            per_database[f"{processes}_process"] = {
                "capture": capture,
                "raw_sql": ceiling,
                "ratio": round(capture["orders_per_second"] / ceiling["orders_per_second"], 3),
            }
        if name == "postgresql":
            # The labelled extra rows: is the ceiling commit latency? (benchmark sessions only)
            extra: dict[str, Any] = {}
            for processes in PROCESS_COUNTS:
                count = plan["single"] if processes == 1 else plan["each_of_8"]
                ceiling = measure(raw_worker, url, processes, count, plan["skus"], sync_off=True)
                extra[f"{processes}_process"] = {"raw_sql": ceiling}
            capture = measure(
                capture_worker, url, 8, plan["each_of_8"], plan["skus"], sync_off=True
            )
            extra["8_process"]["capture"] = capture
            extra["8_process"]["ratio"] = round(
                capture["orders_per_second"] / extra["8_process"]["raw_sql"]["orders_per_second"],
                3,
            )
            per_database["synchronous_commit_off_benchmark_only"] = extra
        per_database["http"] = http_measure(
            url, HTTP_CLIENTS, plan["each_of_8"], plan["skus"], workers=HTTP_WORKERS
        )
        per_database["http_1_worker"] = http_measure(
            url, HTTP_CLIENTS, plan["each_of_8"], plan["skus"], workers=1
        )
        results["databases"][name] = per_database
    print_table(size, results, notes)
    notes.append(
        "ratio = capture orders/s divided by the raw-SQL orders/s measured in the same run; "
        "'in driver' = share of the capture time spent inside the database driver (waiting for "
        "the server included); 'cpu ms' / 'raw cpu' = CPU of the client processes per order"
    )
    notes.append(
        "synchronous_commit_off_benchmark_only: the same runs with 'SET synchronous_commit = off' "
        "per benchmark session (never the system's default)"
    )
    return {
        **results,
        "targets": {
            "postgresql_8_process_capture_orders_per_second": ">= 1000",
            "ratio_to_raw_sql": ">= 0.5",
            "http_orders_per_second": ">= 200",
            "http_p99_ms": "<= 100",
        },
        "notes": notes,
    }


def print_table(size: str, results: dict[str, Any], notes: list[str]) -> None:
    header = (
        f"{'database':<11} {'procs':>5} {'capture/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'in driver':>9} {'cpu ms':>7} {'raw SQL/s':>10} {'raw p50':>8} {'raw cpu':>7} "
        f"{'ratio':>6}"
    )
    print(f"order capture, 3-line orders, size {size}")
    print(header)
    print("-" * len(header))
    for database, runs in results["databases"].items():
        rows = [
            (database, name, figures)
            for name, figures in runs.items()
            if not name.startswith("http")
        ]
        extra = runs.get("synchronous_commit_off_benchmark_only", {})
        rows = [row for row in rows if row[1] != "synchronous_commit_off_benchmark_only"]
        rows += [(f"{database}*", name, figures) for name, figures in extra.items()]
        for label, _name, figures in rows:
            raw = figures["raw_sql"]
            capture = figures.get("capture")
            processes = raw["processes"]
            if capture is None:
                print(
                    f"{label:<11} {processes:>5} {'-':>10} {'-':>8} {'-':>8} {'-':>9} {'-':>7} "
                    f"{raw['orders_per_second']:>10.1f} {raw['p50_ms']:>8.2f} "
                    f"{raw['client_cpu_ms_per_order']:>7.2f} {'-':>6}"
                )
                continue
            print(
                f"{label:<11} {processes:>5} {capture['orders_per_second']:>10.1f} "
                f"{capture['p50_ms']:>8.2f} {capture['p99_ms']:>8.2f} "
                f"{capture['driver_share']:>9.0%} {capture['client_cpu_ms_per_order']:>7.2f} "
                f"{raw['orders_per_second']:>10.1f} {raw['p50_ms']:>8.2f} "
                f"{raw['client_cpu_ms_per_order']:>7.2f} {figures['ratio']:>6.0%}"
            )
    print()
    print(f"over HTTP ('oms serve --workers N', {HTTP_CLIENTS} concurrent clients)")
    for database, runs in results["databases"].items():
        for name in ("http", "http_1_worker"):
            http = runs[name]
            print(
                f"{database:<11} {http['workers']:>2} worker(s) "
                f"{http['orders_per_second']:>8.1f} orders/s  p50 {http['p50_ms']:.2f} ms  "
                f"p99 {http['p99_ms']:.2f} ms  ({http['orders']} orders)"
            )
    if any("synchronous_commit_off_benchmark_only" in r for r in results["databases"].values()):
        print("* extra rows: synchronous_commit = off in the benchmark's sessions only")
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    raise SystemExit(harness.main("orders", run))
