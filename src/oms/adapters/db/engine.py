"""Engines for SQLite (embedded, WAL) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import select
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DisconnectionError

READ_ONLY = "oms_read_only"
"""Execution option: a read-only transaction (a deferred BEGIN on SQLite)."""

IDLE_PING_SECONDS = 10.0
"""A pooled PostgreSQL connection idle longer than this is pinged before it is handed out."""


def make_engine(url: str, *, busy_timeout_ms: int = 30_000, pool_size: int = 10) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, busy_timeout_ms=busy_timeout_ms)
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        pool_recycle=1800,
    )
    # Many rows of one INSERT (order lines, quantity buckets, timeline, outbox events) go as
    # one multi-row INSERT ("insertmanyvalues") rather than psycopg's pipelined executemany:
    # the same single round trip for much less client CPU.
    engine.dialect.use_insertmanyvalues_wo_returning = True
    _cache_longer_statements()
    _check_liveness_cheaply(engine)
    return engine


PSYCOPG_CACHED_PARAMETERS = 256
"""psycopg parses a statement's placeholders again at every execution when it has more than 50
parameters (its default): the outbox INSERT of a capture has ten rows of six. Statements of a
fixed shape with up to this many parameters are parsed once per process."""


def _cache_longer_statements() -> None:
    try:
        from psycopg import _queries
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return
    if getattr(_queries, "MAX_CACHED_STATEMENT_PARAMS", PSYCOPG_CACHED_PARAMETERS) < (
        PSYCOPG_CACHED_PARAMETERS
    ):
        _queries.MAX_CACHED_STATEMENT_PARAMS = PSYCOPG_CACHED_PARAMETERS


def _check_liveness_cheaply(engine: Engine, *, idle_seconds: float = IDLE_PING_SECONDS) -> None:
    """Hand out only live connections without a round trip per unit of work.

    ``pool_pre_ping`` pings the server at every checkout: one extra round trip for every unit of
    work, a tenth of an order capture. Instead a connection is pinged only when it may be dead:
    when it sat idle in the pool for ``idle_seconds``, when the driver knows it is closed, or
    when its socket has something to read while no query is running (a server that ends a
    session, by restart or ``pg_terminate_backend``, sends an error and closes the socket; the
    check is a non-blocking ``select``, no network traffic). A dead one is replaced by a fresh
    connection (the pool retries the checkout). A connection that dies while in use fails its
    statement and is invalidated with the rest of the pool, as before.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["oms_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if getattr(dbapi_connection, "closed", False) or getattr(dbapi_connection, "broken", False):
            raise DisconnectionError("the connection is closed")
        since = record.info.get("oms_idle_since")
        if since is None:
            return  # connected just now
        if time.monotonic() - since < idle_seconds:
            try:
                readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
            except (OSError, ValueError):
                readable = [True]
            if not readable:
                return  # recently used and nothing arrived since: alive
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # any failure to ping means: not usable
            raise DisconnectionError(f"the connection failed its ping: {error}") from error


SQLITE_CACHE_KIB = 65_536
"""Page cache per SQLite connection, KiB."""
SQLITE_WAL_CHECKPOINT_PAGES = 65_536
"""WAL pages (4 KiB each, 256 MiB) after which a commit checkpoints them into the database file
(SQLite's default: 1,000). A count arrives location by location, and one chunk of 5,000
positions changes one entry on thousands of pages of the item-ordered stock index; the next
chunk (the next location) changes the same pages. A checkpoint writes each page once however
many commits changed it, so the longer the WAL between checkpoints, the fewer times a page is
written: at 2M positions (100 locations x 20,000 items) a full count and recount went from
44k (16,384 pages) to 49-55k positions/s, run to run (65,536; 131,072 gave no more); at 500k the
default had given 25.7k against 29.2k with 16,384. The price: the commit that crosses the
threshold writes up to that much (a few hundred ms on this disk, once per 256 MiB of changes),
and the WAL file grows to that size before it is reused. Durability is the WAL's, unchanged;
readers look pages up in a longer WAL index."""


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_engine(url: str, *, busy_timeout_ms: int) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event (below) issue BEGIN, not pysqlite's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Temporary tables (a snapshot's staging table) in memory, not in a temporary file,
        # and a page cache of SQLITE_CACHE_KIB (taken as pages are read, up to that size):
        # the default 2 MB holds a few thousand positions, so that bulk feeds re-read pages.
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        # Checkpoints less often than by default (see SQLITE_WAL_CHECKPOINT_PAGES).
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Writers take the write lock at BEGIN so that two writers never deadlock upgrading
        # a shared lock; read-only units of work begin deferred and never block writers (WAL).
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN DEFERRED")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
