"""Inventory benchmark: basket availability, snapshot ingest and hot-item reservations.

    python benchmarks/inventory.py --size small            # a temporary SQLite file
    python benchmarks/inventory.py --size medium --database-url postgresql://.../bench_empty
    python benchmarks/inventory.py --locations 500 --items 2000 --skip http --database-url ...
    python benchmarks/inventory.py --locations 500 --items 2000 --reuse --skip http ...
    python benchmarks/inventory.py --size medium --only-ingest       # snapshot ingest only

``--locations/--items`` change the shape of a size (the basket's cost depends mostly on the
positions per item, that is on the locations); ``--skip`` leaves parts out (``recount``,
``feeds``, ``availability``, ``http``, ``reservations``, ``sync-off``, ``checkpoint``: the
CHECKPOINT before the holds on PostgreSQL; ``--only-ingest`` skips all but the counts);
``--reuse`` measures the network an earlier run of the same shape left in the database instead
of building one (no build, no ingest).

It builds its own network (locations x items) in an empty database, then measures

* snapshot ingest, positions/s: first count (creates the positions) and a recount (updates),
  each position through the same repository code as the API (journal rows and events included);
  next to it a recount sent by several feeds at once (``--feeds``, OS processes, each the counts
  of its own locations), as stores and warehouses send them;
* network availability of a 5-line basket (ship, random destination), p50/p99 in-process and
  over HTTP against a real ``oms serve`` subprocess on 127.0.0.1;
* reservations/s with 8 OS processes holding 1 unit at a time of one hot item at one location.

It prints a table and writes ``benchmarks/results/inventory.json`` (figures, targets, the
profile of the slowest paths and machine facts). Targets (issue 4): basket p99 <= 5 ms
in-process, ingest >= 50,000 positions/s, >= 1,000 reservations/s.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import multiprocessing
import os
import platform
import pstats
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SIZES: dict[str, dict[str, int]] = {
    "small": {"locations": 50, "items": 1_000, "basket_calls": 300, "http_calls": 200},
    "medium": {"locations": 200, "items": 5_000, "basket_calls": 500, "http_calls": 300},
    "large": {"locations": 500, "items": 20_000, "basket_calls": 1_000, "http_calls": 500},
}
SQLITE_LARGE_LOCATIONS = 100
"""SIZE=large on SQLite: 100 of the 500 locations hold stock (2M positions, issue: >= 1M); every
location is in the network, so availability still weighs 500 candidates."""
PARALLEL_LOCATIONS = {"small": 50, "medium": 200, "large": 100}
"""Locations recounted by the parallel feeds (at most the stocked ones): at SIZE=large 2M
positions, not all 10M, to keep the run short."""
FEEDS = 4
RESERVATION_SECONDS = {"small": 3.0, "medium": 6.0, "large": 10.0}
CLIENTS = 8
CHUNK = 5_000
HERE = Path(__file__).resolve().parent
SEED = 4


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return round(ordered[index] * 1000, 3)

    return {
        "count": len(ordered),
        "p50_ms": pick(0.50),
        "p95_ms": pick(0.95),
        "p99_ms": pick(0.99),
        "max_ms": round(ordered[-1] * 1000, 3),
        "mean_ms": round(sum(ordered) / len(ordered) * 1000, 3),
    }


def profile_top(profiler: cProfile.Profile, limit: int = 8) -> list[str]:
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(limit)
    lines = [line.strip() for line in stream.getvalue().splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("ncalls")), 0)
    return lines[start : start + limit + 1]


def machine_facts(database_url: str) -> dict[str, Any]:
    import sqlalchemy

    from oms.adapters.db.engine import make_engine

    facts: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(OSError, StopIteration):
        facts["cpu_model"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    with contextlib.suppress(OSError):
        facts["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=HERE,
            check=False,
        ).stdout.strip()
    engine = make_engine(database_url)
    backend = engine.dialect.name
    database: dict[str, Any] = {
        "backend": backend,
        "url": engine.url.render_as_string(hide_password=True),
    }
    if backend == "postgresql":
        with engine.connect() as connection:
            database["version"] = connection.exec_driver_sql("SHOW server_version").scalar()
    engine.dispose()
    facts["database"] = database
    return facts


def reset_postgres(database_url: str) -> None:
    """A benchmark database is scratch, as for the other benchmarks: created if missing, its
    schema emptied (it builds its own network). SQLite files are left alone."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from oms.config import normalise_database_url

    url = make_url(normalise_database_url(database_url))
    if url.get_backend_name() != "postgresql":
        return
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
        ).first()
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def build_network(services: Any, *, locations: int, items: int, rng: random.Random) -> None:
    location_records = []
    for n in range(locations):
        kind = "dc" if n < max(2, locations // 25) else ("dark_store" if n % 10 == 0 else "store")
        location_records.append(
            {
                "code": f"L{n:04d}",
                "name": f"Location {n}",
                "type": kind,
                "latitude": rng.uniform(26.0, 48.0),
                "longitude": rng.uniform(-122.0, -71.0),
                "timezone": "America/New_York",
                "capabilities": ["ship"] if kind == "dc" else ["ship", "pickup", "curbside"],
                "pick_minutes": 60 if kind == "dc" else 30,
                "cutoff_time": "15:00",
                "handling_cost": "1.50" if kind == "dc" else "3.00",
            }
        )
    services.inventory.import_locations(location_records)
    item_records = [{"sku": f"SKU-{n:06d}", "name": f"Item {n}"} for n in range(items)]
    item_records.append({"sku": "HOT-1", "name": "The hot item"})
    services.inventory.import_items(item_records)


def draw_counts(
    rng: random.Random,
    *,
    locations: int = 0,
    items: int,
    location_numbers: list[int] | None = None,
) -> dict[int, list[int]]:
    """The counts a feed will send, per location number (one per item), drawn before the clock
    starts: drawing millions of random numbers is the benchmark's work, not the OMS's."""
    numbers = location_numbers if location_numbers is not None else range(locations)
    return {n: [rng.randint(0, 40) for _ in range(items)] for n in numbers}


def ingest(services: Any, counts: dict[int, list[int]], *, items: int, as_of: datetime) -> int:
    """One full count of the locations in ``counts`` (as :func:`draw_counts` drew them), one
    transaction per CHUNK positions, as a feed sends them: the lines are built from the
    counts inside the measurement, as an API or file adapter builds them; returns how many
    positions were sent."""
    from oms.services.ports import SnapshotLine

    sent = 0
    batch: list[Any] = []
    skus = [f"SKU-{i:06d}" for i in range(items)]
    for n, on_hand in counts.items():
        code = f"L{n:04d}"
        batch.extend(map(SnapshotLine, skus, [code] * items, on_hand))
        while len(batch) >= CHUNK:
            services.inventory.apply_snapshot(batch[:CHUNK], as_of=as_of, source="bench")
            sent += CHUNK
            del batch[:CHUNK]
    if batch:
        services.inventory.apply_snapshot(batch, as_of=as_of, source="bench")
        sent += len(batch)
    return sent


def vacuum(engine: Any, notes: list[str], when: str) -> None:
    """What autovacuum does on a normal server after a count (it may be off, as on the
    benchmark machine): without statistics the planner scans every position for a basket; each
    recount leaves a dead version of every position behind, which every later statement that
    looks a position up steps over (the parallel feeds ran at half speed after the recount's
    10M dead versions); and a basket's index-only scan visits the table for every page not
    marked all-visible (p99 3.3 -> 7.3 ms after the feeds' 2M updates)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        autovacuum = connection.exec_driver_sql("SHOW autovacuum").scalar()
        started = time.perf_counter()
        connection.exec_driver_sql("VACUUM ANALYZE")
        seconds = time.perf_counter() - started
    notes.append(
        f"PostgreSQL (autovacuum {autovacuum}): VACUUM ANALYZE {when} ({seconds:.1f} s, not in "
        "any figure), as autovacuum would have done. A basket reads an item's positions from the "
        "primary key alone (it INCLUDEs the stock columns: an index-only scan of a few pages per "
        "item, not one heap page per location, as positions arrive location by location)"
    )


def feed_worker(
    database_url: str,
    items: int,
    numbers: list[int],
    as_of: datetime,
    seed: int,
    barrier: Any,
    results: Any,
) -> None:
    from oms.bootstrap import build_services, freeze_startup_heap
    from oms.config import Settings

    services = build_services(Settings(database_url=database_url))
    freeze_startup_heap()  # as oms serve and oms worker do once started
    try:
        counts = draw_counts(random.Random(seed), items=items, location_numbers=numbers)
        barrier.wait(timeout=120)
        started = time.perf_counter()
        sent = ingest(services, counts, items=items, as_of=as_of)
        elapsed = time.perf_counter() - started
    finally:
        services.close()
    results.put({"sent": sent, "seconds": elapsed})


def measure_parallel_feeds(
    database_url: str, *, feeds: int, locations: int, items: int, as_of: datetime
) -> dict[str, Any]:
    """A recount of ``locations`` locations sent by ``feeds`` OS processes at once (stores and
    warehouses send their counts concurrently), each its own locations, one transaction per
    CHUNK positions, as the single feed does."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(feeds)
    results = context.Queue()
    workers = [
        context.Process(
            target=feed_worker,
            args=(
                database_url,
                items,
                list(range(feed, locations, feeds)),
                as_of,
                SEED + feed,
                barrier,
                results,
            ),
        )
        for feed in range(feeds)
    ]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=3600) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    sent = sum(r["sent"] for r in reports)
    wall = max(r["seconds"] for r in reports)
    return {
        "feeds": feeds,
        "positions": sent,
        "seconds": round(wall, 3),
        "recount_positions_per_s": round(sent / wall, 1),
        "positions_per_transaction": CHUNK,
    }


@contextlib.contextmanager
def statement_times(engine: Any) -> Any:
    """Time spent per SQL statement (first words) while the block runs: where a feed's time goes
    in the database, which a Python profile shows only as waiting for the driver."""
    from sqlalchemy import event

    spent: dict[str, list[float]] = {}

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        entry = spent.setdefault(" ".join(statement.split()[:4])[:60], [0, 0.0])
        entry[0] += 1
        entry[1] += time.perf_counter() - conn.info.pop("bench_started", time.perf_counter())

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield spent
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def summarise_statements(spent: dict[str, list[float]], limit: int = 8) -> str:
    ranked = sorted(spent.items(), key=lambda entry: -entry[1][1])[:limit]
    return " | ".join(f"{ms * 1000:.0f} ms x{int(n)} {sql}" for sql, (n, ms) in ranked)


def reserve_worker(
    database_url: str, seconds: float, barrier: Any, results: Any, sync_off: bool = False
) -> None:
    from sqlalchemy import event

    from oms.bootstrap import build_services
    from oms.config import Settings
    from oms.domain.inventory import InsufficientStock
    from oms.services.inventory import ReservationRequestLine

    services = build_services(Settings(database_url=database_url))
    if sync_off:
        # Benchmark only, never a default: shows how much of the rate is commit latency.
        @event.listens_for(services.engine, "connect")
        def _sync_off(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit = off")
            dbapi_connection.commit()

    done = refused = 0
    try:
        barrier.wait(timeout=120)
        started = time.perf_counter()
        cpu = time.process_time()
        while time.perf_counter() - started < seconds:
            try:
                services.inventory.reserve(
                    [ReservationRequestLine("HOT-1", 1, "L0000")], reference="bench"
                )
                done += 1
            except InsufficientStock:
                refused += 1
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        services.close()
    results.put({"done": done, "refused": refused, "seconds": elapsed, "cpu_s": cpu})


def measure_reservations(
    services: Any, database_url: str, seconds: float, *, sync_off: bool = False
) -> dict[str, Any]:
    from oms.services.ports import SnapshotLine

    held_before = services.inventory.item_availability("HOT-1", location_codes=["L0000"])
    before = held_before.positions[0].reserved if held_before.positions else 0
    services.inventory.apply_snapshot(
        [SnapshotLine("HOT-1", "L0000", 10_000_000)], as_of=services.clock.now(), source="bench"
    )
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(CLIENTS)
    results = context.Queue()
    workers = [
        context.Process(
            target=reserve_worker, args=(database_url, seconds, barrier, results, sync_off)
        )
        for _ in range(CLIENTS)
    ]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=seconds + 180) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    total = sum(r["done"] for r in reports)
    wall = max(r["seconds"] for r in reports)
    position = services.inventory.item_availability("HOT-1", location_codes=["L0000"])
    held = position.positions[0].reserved - before
    return {
        "clients": CLIENTS,
        "reservations": total,
        "refused": sum(r["refused"] for r in reports),
        "seconds": round(wall, 3),
        "per_s": round(total / wall, 1),
        "client_cpu_ms_per_reservation": round(
            sum(r["cpu_s"] for r in reports) * 1000 / max(1, total), 3
        ),
        "held_after": held,
        "consistent": held == total,
    }


def wal_counters(engine: Any) -> dict[str, float]:
    """What the server has written to its WAL so far (PostgreSQL 14+: pg_stat_wal)."""
    with engine.connect() as connection:
        row = connection.exec_driver_sql(
            "SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal"
        ).one()
    return {"wal_records": float(row[0]), "wal_fpi": float(row[1]), "wal_bytes": float(row[2])}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def measure_http(
    database_url: str, api_key: str, baskets: list[list[dict[str, Any]]], calls: int
) -> dict[str, Any]:
    import httpx

    port = free_port()
    oms = str(Path(sys.executable).with_name("oms"))
    env = {**os.environ, "OMS_DATABASE_URL": database_url, "OMS_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [oms, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers={"X-API-Key": api_key}, timeout=30) as client:
            for _ in range(200):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                raise RuntimeError("oms serve did not start")
            samples = []
            for n in range(calls + 20):
                body = {
                    "lines": baskets[n % len(baskets)],
                    "method": "ship",
                    "destination": {"latitude": 40.7, "longitude": -74.0},
                }
                started = time.perf_counter()
                response = client.post("/availability", json=body)
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(
                        f"availability over HTTP: {response.status_code} {response.text}"
                    )
                if n >= 20:
                    samples.append(elapsed)
        return percentiles(samples)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def load(
    services: Any,
    engine: Any,
    *,
    shape: dict[str, int],
    stocked: int,
    rng: random.Random,
    skip: frozenset[str],
    figures: dict[str, Any],
    database_url: str,
    size: str,
    feeds: int,
) -> None:
    """Builds the network and counts every position (twice unless ``recount`` is skipped), then
    recounts part of it with several feeds at once (unless ``feeds`` is skipped)."""
    from oms.bootstrap import freeze_startup_heap

    notes: list[str] = []
    started = time.perf_counter()
    build_network(services, locations=shape["locations"], items=shape["items"], rng=rng)
    figures["network_build_s"] = round(time.perf_counter() - started, 3)
    # What oms serve, oms worker and the CLI do once started: the objects alive now (modules,
    # SQLAlchemy's compiled statements) leave the garbage collector's generations.
    freeze_startup_heap()
    notes.append(
        "gc.freeze() after start-up, as oms serve, oms worker and the CLI do "
        "(bootstrap.freeze_startup_heap): full collections no longer walk the ~150k start-up "
        "objects"
    )

    as_of = services.clock.now() - timedelta(hours=2)
    counts = draw_counts(rng, locations=stocked, items=shape["items"])
    started = time.perf_counter()
    sent = ingest(services, counts, items=shape["items"], as_of=as_of)
    first = time.perf_counter() - started
    figures["snapshot_ingest"] = {
        "first_count_positions_per_s": round(sent / first, 1),
        "first_count_s": round(first, 3),
        "positions_per_transaction": CHUNK,
    }
    notes.append(
        "snapshot_ingest: the counts are drawn before the clock starts; the SnapshotLine "
        "objects are built from them inside the measurement, as an API or file adapter builds them"
    )
    if "recount" in skip:
        notes.append("--skip recount: the first count only")
    else:
        counts = draw_counts(rng, locations=stocked, items=shape["items"])
        started = time.perf_counter()
        ingest(services, counts, items=shape["items"], as_of=as_of + timedelta(hours=1))
        second = time.perf_counter() - started
        figures["snapshot_ingest"] = {
            "positions_per_s": round(2 * sent / (first + second), 1),
            "first_count_positions_per_s": round(sent / first, 1),
            "recount_positions_per_s": round(sent / second, 1),
            "first_count_s": round(first, 3),
            "recount_s": round(second, 3),
            "positions_per_transaction": CHUNK,
        }
    if engine.dialect.name == "postgresql":
        vacuum(engine, notes, "after the single feed's counts, before the parallel feeds")
    if feeds > 1 and "feeds" not in skip:
        figures["snapshot_ingest_parallel_feeds"] = measure_parallel_feeds(
            database_url,
            feeds=feeds,
            locations=min(stocked, PARALLEL_LOCATIONS[size]),
            items=shape["items"],
            as_of=as_of + timedelta(hours=1, minutes=15),
        )
        notes.append(
            f"snapshot_ingest_parallel_feeds: a recount sent by {feeds} OS processes at once, "
            "each the counts of its own locations, one transaction per "
            f"{CHUNK} positions, next to the single feed above (stores and warehouses send "
            "their counts concurrently); on SQLite the feeds take turns (one writer at a time)"
        )
    # The profile comes from a separate, smaller recount: profiling slows what it watches.
    profiler = cProfile.Profile()
    counts = draw_counts(rng, locations=max(1, CHUNK * 2 // shape["items"]), items=shape["items"])
    with statement_times(engine) as spent:
        profiler.enable()
        ingest(services, counts, items=shape["items"], as_of=as_of + timedelta(hours=1, minutes=30))
        profiler.disable()
    notes.append("recount profile (tottime): " + " | ".join(profile_top(profiler, 8)))
    notes.append("recount SQL time by statement: " + summarise_statements(spent))
    if engine.dialect.name == "postgresql":
        vacuum(engine, notes, "after the parallel feeds, before the baskets")

    figures["load_notes"] = notes


PARTS = ("recount", "feeds", "availability", "http", "reservations", "sync-off", "checkpoint")
ONLY_INGEST = frozenset({"availability", "http", "reservations"})


def run(
    size: str,
    database_url: str | None,
    *,
    locations: int | None = None,
    items: int | None = None,
    skip: frozenset[str] = frozenset(),
    reuse: bool = False,
    feeds: int = FEEDS,
) -> dict[str, Any]:
    from oms.adapters.db import migrate
    from oms.adapters.db.engine import make_engine
    from oms.bootstrap import build_services
    from oms.config import Settings
    from oms.domain.access import Role
    from oms.domain.promising import DeliveryMethod
    from oms.services.inventory import BasketLine

    shape = dict(SIZES[size])
    if locations:
        shape["locations"] = locations
    if items:
        shape["items"] = items
    rng = random.Random(SEED)
    temporary = None
    if not database_url:
        if reuse:
            raise SystemExit("inventory benchmark: --reuse needs --database-url")
        temporary = tempfile.mkdtemp(prefix="oms-bench-inventory-")
        database_url = f"sqlite:///{temporary}/oms.db"
    elif not reuse:
        reset_postgres(database_url)
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    services = build_services(Settings(database_url=database_url), engine=engine)
    if reuse:
        found = len(services.inventory.list_locations(limit=shape["locations"] + 1))
        if found != shape["locations"]:
            raise SystemExit(
                f"inventory benchmark: --reuse found {found} locations, not {shape['locations']}"
            )
    elif services.inventory.list_locations(limit=1):
        raise SystemExit("inventory benchmark: the database must be empty (it builds a network)")
    stocked = shape["locations"]
    if size == "large" and engine.dialect.name == "sqlite":
        stocked = SQLITE_LARGE_LOCATIONS
    figures: dict[str, Any] = {
        "locations": shape["locations"],
        "stocked_locations": stocked,
        "items": shape["items"],
        "positions": stocked * shape["items"],
    }
    notes: list[str] = []
    if reuse:
        notes.append("--reuse: the network of an earlier run, neither built nor ingested again")
        from oms.bootstrap import freeze_startup_heap

        freeze_startup_heap()  # as load() does after building the network
    else:
        load(
            services,
            engine,
            shape=shape,
            stocked=stocked,
            rng=rng,
            skip=skip,
            figures=figures,
            database_url=database_url,
            size=size,
            feeds=feeds,
        )
        notes.extend(figures.pop("load_notes"))

    # Baskets and destinations from a generator of their own: the same with --reuse.
    rng = random.Random(SEED + 1)
    skus = [f"SKU-{n:06d}" for n in range(shape["items"])]
    baskets = [
        [{"sku": sku, "quantity": rng.randint(1, 3)} for sku in rng.sample(skus, 5)]
        for _ in range(200)
    ]
    if "availability" in skip:
        notes.append("--skip availability: no basket availability measured")
    else:
        services.inventory.network()  # warm the location cache, as a running server has it
        samples = []
        fulfillable = 0

        def one_basket(n: int) -> Any:
            basket = baskets[n % len(baskets)]
            destination = (rng.uniform(26.0, 48.0), rng.uniform(-122.0, -71.0))
            lines = [BasketLine(line["sku"], line["quantity"]) for line in basket]
            return services.inventory.basket_availability(
                lines, method=DeliveryMethod.SHIP, destination=destination
            )

        for n in range(shape["basket_calls"] + 20):
            started = time.perf_counter()
            result = one_basket(n)
            elapsed = time.perf_counter() - started
            if n >= 20:
                samples.append(elapsed)
                fulfillable += result.fulfillable
        figures["basket_availability_in_process"] = {**percentiles(samples), "lines": 5}
        figures["basket_availability_fulfillable_share"] = round(fulfillable / len(samples), 3)
        profiler = cProfile.Profile()
        profiler.enable()
        for n in range(100):
            one_basket(n)
        profiler.disable()
        notes.append(
            "basket availability profile (tottime): " + " | ".join(profile_top(profiler, 8))
        )

    if "http" not in skip:
        key = services.access.create_key(name="bench", role=Role.INTEGRATION).secret
        figures["basket_availability_http"] = measure_http(
            database_url, key, baskets, shape["http_calls"]
        )

    if "reservations" not in skip:
        measure_holds(
            services, engine, database_url, size=size, skip=skip, figures=figures, notes=notes
        )
    services.close()
    machine = machine_facts(database_url)
    if temporary:
        shutil.rmtree(temporary, ignore_errors=True)
    return {
        "figures": figures,
        "targets": TARGETS,
        "notes": notes,
        "machine": machine,
    }


TARGETS = {
    "basket_availability_in_process": {"p99_ms": "<= 5"},
    "snapshot_ingest": {"positions_per_s": ">= 50000"},
    "reservations_hot_item": {"per_s": ">= 1000"},
}


def measure_holds(
    services: Any,
    engine: Any,
    database_url: str,
    *,
    size: str,
    skip: frozenset[str],
    figures: dict[str, Any],
    notes: list[str],
) -> None:
    postgres = engine.dialect.name == "postgresql"
    if postgres and "checkpoint" not in skip:
        # The load leaves gigabytes of WAL behind it: without this the server runs the
        # checkpoint it owes during the measurement (and every first change of a page after a
        # checkpoint logs the whole page), which is the load's cost, not the holds'.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("CHECKPOINT")
        notes.append(
            "PostgreSQL: CHECKPOINT before the holds are measured (the load's checkpoint would "
            "otherwise fall in the measurement); wal_* figures are pg_stat_wal per hold"
        )
    wal = wal_counters(engine) if postgres else None
    figures["reservations_hot_item"] = measure_reservations(
        services, database_url, RESERVATION_SECONDS[size]
    )
    if wal is not None:
        holds = max(1, figures["reservations_hot_item"]["reservations"])
        after = wal_counters(engine)
        figures["reservations_hot_item"].update(
            {f"{name}_per_hold": round((after[name] - wal[name]) / holds, 2) for name in wal}
        )
    notes.append(
        "reservations: 8 processes on one position serialize on its lock (SQLite: the database "
        "write lock, taken at BEGIN IMMEDIATE, for the whole hold: keys, hold rows, conditional "
        "UPDATE ... RETURNING, outbox, commit; PostgreSQL: the row lock from the UPDATE to the "
        "commit); client_cpu_ms_per_reservation is the Python side of one hold"
    )
    if engine.dialect.name == "postgresql" and "sync-off" not in skip:
        figures["reservations_hot_item_synchronous_commit_off_benchmark_only"] = (
            measure_reservations(services, database_url, RESERVATION_SECONDS[size], sync_off=True)
        )
        notes.append(
            "reservations on PostgreSQL: every hold commits (WAL flush) while it holds the hot "
            "row's lock, after its outbox insert; the *_synchronous_commit_off_benchmark_only "
            "figure (benchmark sessions only, never a default) shows how much is commit latency"
        )


def print_table(document: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"inventory benchmark ({document['size']}, "
        f"{document['machine']['database']['backend']})"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            table.add_row(prefix, f"{value:,}" if isinstance(value, int | float) else str(value))

    walk("", document["figures"])
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OMS_BENCH_DATABASE_URL"),
        help="An empty database (default: OMS_BENCH_DATABASE_URL, else a temporary SQLite file)",
    )
    parser.add_argument("--no-http", action="store_true", help="Skip the HTTP measurement")
    parser.add_argument("--locations", type=int, help="Locations in the network (default: size)")
    parser.add_argument("--items", type=int, help="Items in the network (default: size)")
    parser.add_argument(
        "--skip", action="append", choices=PARTS, default=[], help="Leave a part out (repeatable)"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Measure the network an earlier run of the same shape left (no build, no ingest)",
    )
    parser.add_argument(
        "--only-ingest",
        action="store_true",
        help="Measure snapshot ingest only (no availability, no reservations): for iterating",
    )
    parser.add_argument(
        "--feeds",
        type=int,
        default=FEEDS,
        help=f"Concurrent feeds of the parallel recount (default {FEEDS}; 0 or 1: skip it)",
    )
    arguments = parser.parse_args(argv)
    skip = frozenset(arguments.skip) | ({"http"} if arguments.no_http else frozenset())
    if arguments.only_ingest:
        skip |= ONLY_INGEST
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    result = run(
        arguments.size,
        arguments.database_url,
        locations=arguments.locations,
        items=arguments.items,
        skip=skip,
        reuse=arguments.reuse,
        feeds=arguments.feeds,
    )
    document = {
        "benchmark": "inventory",
        "size": arguments.size,
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 3),
        "figures": result["figures"],
        "targets": result["targets"],
        "notes": result["notes"],
        "machine": result["machine"],
    }
    results = Path(os.environ.get("OMS_BENCH_RESULTS_DIR") or HERE / "results")
    results.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2) + "\n"
    (results / "inventory.json").write_text(text)
    # A named copy per size and database, so that runs on SQLite and PostgreSQL both stay.
    backend = document["machine"]["database"]["backend"]
    (results / f"inventory-{arguments.size}-{backend}.json").write_text(text)
    print_table(document)
    print(f"wrote {results / 'inventory.json'} in {document['duration_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
