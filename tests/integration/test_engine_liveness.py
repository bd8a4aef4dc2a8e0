"""Pooled PostgreSQL connections are checked without a round trip per unit of work, yet a
connection the server ended is never handed out."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, text

from oms.adapters.db.engine import make_engine
from tests.conftest import POSTGRES_URL


def test_a_busy_connection_is_reused_without_a_ping(postgres_engine: Engine) -> None:
    pings: list[int] = []
    original = postgres_engine.dialect.do_ping

    def counting_ping(dbapi_connection: Any) -> bool:
        pings.append(1)
        return original(dbapi_connection)

    postgres_engine.dialect.do_ping = counting_ping  # type: ignore[method-assign]
    for _ in range(5):
        with postgres_engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    assert pings == []


def test_a_connection_the_server_ended_is_replaced(postgres_engine: Engine) -> None:
    with postgres_engine.connect() as connection:
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar()
    killer = make_engine(POSTGRES_URL)
    with killer.connect() as connection:
        assert connection.execute(
            text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}
        ).scalar()
    killer.dispose()
    time.sleep(0.2)  # the server's goodbye reaches the pooled connection's socket
    with postgres_engine.connect() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar() != backend


def test_an_idle_connection_is_pinged(postgres_engine: Engine, monkeypatch: Any) -> None:
    with postgres_engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    pings: list[int] = []
    original = postgres_engine.dialect.do_ping

    def counting_ping(dbapi_connection: Any) -> bool:
        pings.append(1)
        return original(dbapi_connection)

    postgres_engine.dialect.do_ping = counting_ping  # type: ignore[method-assign]
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + 3600)
    with postgres_engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    assert pings == [1]
