"""Process throughput: orders carried from capture to shipped through the default ``ship`` BPMN
process, with the real fulfillment activities, several client processes and the worker.

Each client process (``--clients``, default 4) carries its share of the orders one after the
other, one unit of work per step: capture (validation, sourcing, allocation, the process started
and the order released by its ``Release`` task, the fulfillment opened, the payment authorised),
pick, pack, ship (stock consumed, the ``shipped`` message correlated to the instance, which
captures the payment and asks for the customer email). Meanwhile a worker process polls (outbox
relay, notifications, due timers, ...); the clock stops when every client is done and the
worker has drained what they left. Every SQL statement and transaction of every process
(clients and worker) is counted with SQLAlchemy engine events.

    python benchmarks/processes.py --size small [--database-url postgresql://.../oms_x_bench]
    python benchmarks/processes.py --size small --clients 8 --profile   # cProfile of client 0

Without ``--database-url`` (or ``OMS_BENCH_DATABASE_URL``) a temporary SQLite file is used. A
PostgreSQL database is emptied first, so its name must contain ``bench``.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import multiprocessing
import pstats
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url

import harness
from oms.adapters.db import migrate
from oms.adapters.db.engine import make_engine
from oms.bootstrap import Services, build_services
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

ORDERS = {"small": 200, "medium": 2000, "large": 10000}
CLIENTS = 4
SKUS = 50
TARGET_ORDERS_PER_S = 300
STEPS = ("capture", "pick", "pack", "ship")
HOME = Address(
    name="Bench Customer",
    line1="1 Main St",
    city="New York",
    postal_code="10001",
    country="US",
    latitude=40.75,
    longitude=-73.99,
)
BOX = [Package("P1", Decimal("1.2"), Decimal("30"), Decimal("20"), Decimal("10"), {1: 1})]


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


# --- counting -----------------------------------------------------------------------------------


class Counts:
    """SQL statements (executemany counts once), transactions begun and commits, per phase."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.statements: Counter[str] = Counter()
        self.transactions: Counter[str] = Counter()
        self.commits: Counter[str] = Counter()

    def install(self) -> None:
        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "begin", self._begin)
        event.listen(Engine, "commit", self._commit)

    def _statement(self, *_args: Any) -> None:
        self.statements[self.phase] += 1

    def _begin(self, *_args: Any) -> None:
        self.transactions[self.phase] += 1

    def _commit(self, *_args: Any) -> None:
        self.commits[self.phase] += 1

    def dump(self) -> dict[str, dict[str, int]]:
        return {
            "statements": dict(self.statements),
            "transactions": dict(self.transactions),
            "commits": dict(self.commits),
        }


# --- the processes ------------------------------------------------------------------------------


def _services(url: str, workdir: Path) -> Services:
    settings = Settings(database_url=url, data_dir=workdir, worker_poll_seconds=0.05)
    return build_services(settings, engine=make_engine(url))


def _prepare(url: str, workdir: Path, orders: int) -> None:
    services = _services(url, workdir)
    try:
        services.inventory.create_location(
            {
                "code": "DC-1",
                "name": "DC 1",
                "type": "dc",
                "latitude": 40.71,
                "longitude": -74.0,
                "capabilities": ["ship"],
            }
        )
        for n in range(SKUS):
            services.inventory.create_item({"sku": f"SKU-{n:03d}", "name": f"Item {n}"})
        services.inventory.apply_snapshot(
            [SnapshotLine(f"SKU-{n:03d}", "DC-1", orders * 2) for n in range(SKUS)],
            as_of=services.clock.now(),
            source="bench",
        )
        services.fulfillment_processes.deploy_defaults()
    finally:
        services.close()


def _capture(client: int, number: int) -> CaptureOrder:
    return CaptureOrder(
        channel="web",
        channel_reference=f"B-{client}-{number}",
        customer=Customer(name="Bench Customer", email=f"c{client}-{number}@example.com"),
        currency="USD",
        lines=[
            LineRequest(
                f"SKU-{(client * 7 + number) % SKUS:03d}",
                1,
                Decimal("10.00"),
                Delivery(DeliveryMethod.SHIP, address=HOME),
            )
        ],
        payments=[PaymentReference("card", "tok_bench")],
    )


def _client(
    url: str,
    workdir: Path,
    client: int,
    orders: int,
    barrier: Any,
    out: Any,
    profile: bool,
) -> None:
    services = _services(url, workdir)
    counts = Counts()
    counts.install()
    seconds = dict.fromkeys(STEPS, 0.0)
    profiler = cProfile.Profile() if profile else None
    try:
        barrier.wait()
        cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        for number in range(orders):
            counts.phase = "capture"
            started = time.perf_counter()
            captured = services.orders.capture(_capture(client, number))
            [fulfillment] = services.fulfillments.for_order(captured.order.order_id)
            f_id = fulfillment.id
            tick = time.perf_counter()
            seconds["capture"] += tick - started
            counts.phase = "pick"
            services.fulfillments.confirm_pick(f_id, 1, 1)
            seconds["pick"] += time.perf_counter() - tick
            tick = time.perf_counter()
            counts.phase = "pack"
            services.fulfillments.pack(f_id, BOX)
            seconds["pack"] += time.perf_counter() - tick
            tick = time.perf_counter()
            counts.phase = "ship"
            services.fulfillments.ship(
                f_id, carrier="UPS", service="ground", tracking={"P1": f"1Z{f_id[:8]}"}
            )
            seconds["ship"] += time.perf_counter() - tick
        if profiler is not None:
            profiler.disable()
        result: dict[str, Any] = {
            "client": client,
            "seconds": seconds,
            "cpu_s": time.process_time() - cpu,
            **counts.dump(),
        }
        if profiler is not None:
            text_out = io.StringIO()
            stats = pstats.Stats(profiler, stream=text_out)
            stats.sort_stats("cumulative").print_stats(120)
            result["profile"] = text_out.getvalue()
            result["where"] = _where_the_time_goes(stats, orders)
        out.put(result)
    except BaseException as error:  # the parent reports it
        out.put({"client": client, "error": f"{type(error).__name__}: {error}"})
        raise
    finally:
        services.close()


PROFILED = {
    "SQL statements (execute, driver included)": (
        "sqlalchemy/engine/base.py",
        "execute",
    ),
    "process engine: run steps (activities included)": ("oms/processes/engine.py", "advance"),
    "process engine: restore instance": ("oms/processes/engine.py", "load"),
    "process engine: serialize instance": ("oms/processes/engine.py", "dump"),
    "process: persist (state, tasks, timers, history)": ("oms/services/processes.py", "_persist"),
    "order repository: read": ("oms/adapters/db/orders.py", "get"),
    "order repository: save": ("oms/adapters/db/orders.py", "save"),
    "payments: authorise + capture": ("oms/services/payments.py", "_call"),
    "invoice issued at ship": ("oms/services/invoices.py", "issue"),
    "commit": ("oms/adapters/db/unit_of_work.py", "commit"),
}


def _where_the_time_goes(stats: pstats.Stats, orders: int) -> dict[str, float]:
    """Cumulative ms per order of a few places in client 0 (they overlap: SQL is inside all)."""
    found: dict[str, float] = {}
    for (path, _line, function), entry in stats.stats.items():  # type: ignore[attr-defined]
        for label, (suffix, name) in PROFILED.items():
            if function == name and path.endswith(suffix):
                found[label] = found.get(label, 0.0) + entry[3] * 1000 / max(orders, 1)
    return {label: round(found[label], 2) for label in PROFILED if label in found}


def _worker(url: str, workdir: Path, barrier: Any, done: Any, out: Any) -> None:
    """Poll like ``oms worker`` while the clients work; drain once they are done."""
    services = _services(url, workdir)
    counts = Counts()
    counts.install()
    counts.phase = "worker"
    try:
        barrier.wait()
        cpu = time.process_time()
        worker = Worker(services)
        passes = 0
        while not done.is_set():
            asyncio.run(worker.run(once=True, handle_signals=False))
            passes += 1
            done.wait(0.05)
        for _ in range(2):  # what the clients committed last, and what that pass produced
            asyncio.run(worker.run(once=True, handle_signals=False))
            passes += 1
        out.put(
            {
                "client": "worker",
                "passes": passes,
                "cpu_s": time.process_time() - cpu,
                "finished_at": time.time(),
                **counts.dump(),
            }
        )
    except BaseException as error:
        out.put({"client": "worker", "error": f"{type(error).__name__}: {error}"})
        raise
    finally:
        services.close()


def _check(url: str, orders: int) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:

            def scalar(sql: str) -> int:
                return int(connection.execute(text(sql)).scalar() or 0)

            return {
                "fulfillments_shipped": scalar(
                    "SELECT count(*) FROM fulfillments WHERE status = 'shipped'"
                ),
                "instances_waiting_for_delivery": scalar(
                    "SELECT count(*) FROM process_instances WHERE status = 'running' "
                    "AND waiting_messages LIKE '%delivered%'"
                    if engine.dialect.name == "sqlite"
                    else "SELECT count(*) FROM process_instances WHERE status = 'running' "
                    "AND waiting_messages::text LIKE '%delivered%'"
                ),
                "outbox_unpublished": scalar(
                    "SELECT count(*) FROM outbox_events WHERE published_at IS NULL"
                ),
            }
    finally:
        engine.dispose()


def measure(url: str, workdir: Path, orders: int, clients: int, profile: bool) -> dict[str, Any]:
    reset(url)
    _prepare(url, workdir, orders)
    # fork: the children start with everything imported (spawn would re-import per process)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    barrier = context.Barrier(clients + 2)
    done = context.Event()
    out = context.Queue()
    per_client = [orders // clients + (1 if c < orders % clients else 0) for c in range(clients)]
    children = [
        context.Process(
            target=_client,
            args=(url, workdir, c, per_client[c], barrier, out, profile and c == 0),
        )
        for c in range(clients)
    ]
    children.append(context.Process(target=_worker, args=(url, workdir, barrier, done, out)))
    for child in children:
        child.start()
    barrier.wait()
    started = time.time()
    results: dict[Any, dict[str, Any]] = {}
    while len(results) < clients:
        found = out.get(timeout=3600)
        if "error" in found:
            done.set()
            raise RuntimeError(f"client {found['client']}: {found['error']}")
        results[found["client"]] = found
    clients_done = time.time()
    done.set()
    found = out.get(timeout=600)
    if "error" in found:
        raise RuntimeError(f"worker: {found['error']}")
    results["worker"] = found
    for child in children:
        child.join(timeout=60)
    wall = results["worker"]["finished_at"] - started

    statements: Counter[str] = Counter()
    transactions: Counter[str] = Counter()
    commits: Counter[str] = Counter()
    for result in results.values():
        statements.update(result["statements"])
        transactions.update(result["transactions"])
        commits.update(result["commits"])
    step_seconds = {
        step: sum(r["seconds"][step] for c, r in results.items() if c != "worker") for step in STEPS
    }
    client_busy = sum(step_seconds.values())
    figures: dict[str, Any] = {
        "orders": orders,
        "clients": clients,
        "orders_per_s": harness.rate(orders, wall),
        "seconds": round(wall, 3),
        "clients_done_s": round(clients_done - started, 3),
        "ms_per_order_per_client": {
            step: round(step_seconds[step] * 1000 / orders, 2) for step in STEPS
        }
        | {"total": round(client_busy * 1000 / orders, 2)},
        "statements_per_order": {
            phase: round(statements[phase] / orders, 1)
            for phase in (*STEPS, "worker")
            if statements[phase]
        }
        | {"total": round(sum(statements.values()) / orders, 1)},
        "transactions_per_order": {
            phase: round(transactions[phase] / orders, 2)
            for phase in (*STEPS, "worker")
            if transactions[phase]
        }
        | {
            "total": round(sum(transactions.values()) / orders, 2),
            "commits": round(sum(commits.values()) / orders, 2),
        },
        "cpu_ms_per_order": {
            "clients": round(
                sum(r["cpu_s"] for c, r in results.items() if c != "worker") * 1000 / orders, 2
            ),
            "worker": round(results["worker"]["cpu_s"] * 1000 / orders, 2),
        },
        "worker_passes": results["worker"]["passes"],
        **_check(url, orders),
    }
    profiled = results.get(0, {}).get("profile")
    if profiled:
        figures["profile"] = profiled
        figures["where"] = results[0]["where"]
    return figures


def run(
    size: str, database_url: str | None, clients: int = CLIENTS, profile: bool = False
) -> dict[str, Any]:
    """Orders/s from capture to shipped through the default ship process, with the worker."""
    orders = ORDERS[size]
    workdir = Path(tempfile.mkdtemp(prefix="oms-bench-processes-"))
    url = normalise_database_url(database_url or f"sqlite:///{workdir / 'bench.db'}")
    figures = measure(url, workdir, orders, clients, profile)
    profiled = figures.pop("profile", None)
    where = figures.pop("where", None)
    if figures["fulfillments_shipped"] != orders:
        raise RuntimeError(f"{figures['fulfillments_shipped']} of {orders} orders shipped")
    if figures["instances_waiting_for_delivery"] != orders:
        raise RuntimeError(
            f"{figures['instances_waiting_for_delivery']} of {orders} instances wait for delivery"
        )
    notes = [
        f"{clients} client processes + 1 worker process on {make_url(url).get_backend_name()}; "
        "each order: capture (+ process start, release, authorisation), pick, pack, ship "
        "(+ shipped message: capture payment, notification); orders/s = orders / wall time "
        "until the worker drained",
        "statements and transactions counted with SQLAlchemy engine events in every process "
        "(read-only units of work included)",
    ]
    if profiled:
        print(profiled, file=sys.stderr)
        notes.append(
            "where the time goes, cumulative ms per order in client 0 under cProfile (nested: "
            "SQL is inside the others): "
            + "; ".join(f"{label} {ms}" for label, ms in (where or {}).items())
        )
        notes.append("full profile of client 0 printed on stderr (--profile)")
    return {
        "database": make_url(url).get_backend_name(),
        **figures,
        "targets": {"orders_per_s": f">= {TARGET_ORDERS_PER_S} (PostgreSQL)"},
        "notes": notes,
    }


def _options() -> tuple[int, bool]:
    clients, profile = CLIENTS, False
    argv = list(sys.argv[1:])
    if "--profile" in argv:
        argv.remove("--profile")
        profile = True
    if "--clients" in argv:
        at = argv.index("--clients")
        clients = int(argv[at + 1])
        del argv[at : at + 2]
    sys.argv[1:] = argv
    return clients, profile


if __name__ == "__main__":
    CLIENTS_CHOSEN, PROFILE = _options()
    raise SystemExit(
        harness.main(
            "processes",
            lambda size, url: run(size, url, clients=CLIENTS_CHOSEN, profile=PROFILE),
        )
    )
