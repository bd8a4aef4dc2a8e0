"""Shared fixtures: a fresh database per test on SQLite and (for tests marked ``postgres``) on
PostgreSQL, a controllable clock, the services container and HTTP clients per role.

PostgreSQL is ``OMS_TEST_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``);
the database is created if missing. Where it is unreachable, PostgreSQL tests are skipped, except
under CI (``CI=true``), where that fails the run.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from functools import cache
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from oms.adapters.clock import ControlledClock
from oms.adapters.db import migrate
from oms.adapters.db.engine import make_engine
from oms.adapters.db.tables import metadata
from oms.api.app import create_app
from oms.bootstrap import Services, build_services
from oms.config import Settings, normalise_database_url
from oms.domain.access import Role

POSTGRES_URL = normalise_database_url(
    os.environ.get("OMS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@cache
def postgres_problem() -> str | None:
    """None when the test PostgreSQL database is usable (created if missing), else why not."""
    url = make_url(POSTGRES_URL)
    try:
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            ).first()
            if not exists:
                connection.execute(text(f'CREATE DATABASE "{url.database}"'))
        admin.dispose()
    except Exception as error:
        return f"PostgreSQL at {url.render_as_string(hide_password=True)} unreachable: {error}"
    return None


def require_postgres() -> None:
    problem = postgres_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"{problem} (CI=true: PostgreSQL tests must run)", pytrace=False)
    pytest.skip(problem)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" in metafunc.fixturenames:
        backends = ["sqlite"]
        if metafunc.definition.get_closest_marker("postgres"):
            backends.append("postgresql")
        metafunc.parametrize("database_url", backends, indirect=True)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated to head once; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "oms.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    with closing(sqlite3.connect(path)) as connection:  # fold the WAL into the file we copy
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@cache
def _postgres_migrated() -> bool:
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    migrate.upgrade(engine)
    engine.dispose()
    return True


def _truncate_postgres() -> None:
    engine = create_engine(POSTGRES_URL)
    names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "oms.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"
    require_postgres()
    _postgres_migrated()
    _truncate_postgres()
    return POSTGRES_URL


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    """A migrated, emptied PostgreSQL database, for tests about PostgreSQL alone."""
    require_postgres()
    _postgres_migrated()
    _truncate_postgres()
    engine = make_engine(POSTGRES_URL)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> ControlledClock:
    return ControlledClock()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path / "data")


@pytest.fixture
def services(settings: Settings, engine: Engine, clock: ControlledClock) -> Iterator[Services]:
    services = build_services(settings, clock=clock, engine=engine)
    yield services


@pytest.fixture
def app(services: Services):  # type: ignore[no-untyped-def]
    return create_app(services)


@pytest.fixture
def client_for(app) -> Iterator[Callable[..., TestClient]]:  # type: ignore[no-untyped-def]
    """``client_for("admin")`` or ``client_for("store_associate", locations=["S1"])``: an HTTP
    client whose requests carry a fresh API key of that role."""
    clients: list[TestClient] = []

    def make(role: Role | str | None = None, *, locations: list[str] | None = None) -> TestClient:
        headers = {}
        if role is not None:
            created = app.state.services.access.create_key(
                name=f"test {role}", role=role, location_codes=locations or []
            )
            headers["X-API-Key"] = created.secret
        client = TestClient(app, headers=headers, raise_server_exceptions=False)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def admin(client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(Role.ADMIN)


@pytest.fixture
def anonymous(client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(None)
