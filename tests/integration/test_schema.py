"""Migrations and tables.py agree; serving refuses an out-of-date PostgreSQL schema."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from oms.adapters.db import migrate
from oms.adapters.db.engine import SQLITE_WAL_CHECKPOINT_PAGES, make_engine
from oms.adapters.db.payments import SqlInvoiceRepository
from oms.adapters.db.tables import in_schema_of, metadata
from oms.bootstrap import prepare_schema
from oms.domain.errors import SchemaOutOfDate


@pytest.mark.postgres
def test_migrations_produce_exactly_the_schema_of_tables_py(engine: Engine) -> None:
    with engine.connect() as connection:
        dialect = connection.dialect.name
        differences = compare_metadata(
            MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_object": lambda _o, name, type_, _r, _c: in_schema_of(
                        dialect, name, type_
                    ),
                },
            ),
            metadata,
        )
    assert differences == []
    assert migrate.is_current(engine)


def test_sqlite_upgrades_itself_on_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh' / 'oms.db'}")
    assert migrate.current_revision(engine) is None
    prepare_schema(engine)
    assert migrate.is_current(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_sqlite_checkpoints_its_wal_less_often_than_by_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A bulk count's chunks re-dirty the same stock-index pages: checkpointing after every
    # commit (the default 1,000 pages) wrote them to the database file again each time.
    engine = make_engine(f"sqlite:///{tmp_path / 'oms.db'}")
    with engine.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == SQLITE_WAL_CHECKPOINT_PAGES > 1000
    engine.dispose()


def test_postgresql_refuses_an_out_of_date_schema_and_names_the_fix(
    postgres_engine: Engine,
) -> None:
    engine = postgres_engine
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    try:
        with pytest.raises(SchemaOutOfDate, match="oms db upgrade"):
            prepare_schema(engine)
    finally:
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE alembic_version SET version_num = :head"),
                {"head": migrate.head_revision(engine)},
            )


def test_invoice_numbers_go_on_from_the_highest_issued_after_the_series_counter_migration(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'oms.db'}")
    migrate.upgrade(engine, "0021")
    with engine.begin() as connection:
        for number in ("INV-2026-000001", "INV-2026-000007", "INV-2025-000003"):
            connection.execute(
                text(
                    "INSERT INTO invoices (invoice_id, number, order_ref, shipment_ref, kind,"
                    " currency, document, issued_at) VALUES (:n, :n, :n, 'S', 'invoice', 'USD',"
                    " '{}', '2026-01-01 00:00:00.000000')"
                ),
                {"n": number},
            )
    migrate.upgrade(engine)
    with engine.begin() as connection:
        issued = SqlInvoiceRepository(connection)
        assert issued.next_number(year=2026) == 8  # the highest, not the count, goes on
        assert issued.next_number(year=2026) == 9
        assert issued.next_number(year=2025) == 4
        assert issued.next_number(year=2027) == 1
    with engine.connect() as connection:  # a rolled-back issue gives its number back
        assert SqlInvoiceRepository(connection).next_number(year=2027) == 2
        connection.rollback()
    with engine.begin() as connection:
        assert SqlInvoiceRepository(connection).next_number(year=2027) == 2
    engine.dispose()


def test_concurrent_issuers_on_postgresql_take_turns_on_the_series_row(
    postgres_engine: Engine,
) -> None:
    first = postgres_engine.connect()
    second = postgres_engine.connect()
    try:
        first.begin()
        assert SqlInvoiceRepository(first).next_number(year=2031) == 1
        second.begin()
        second.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
        # the first issuer's transaction holds the series row: the second waits for it
        with pytest.raises(OperationalError, match="lock timeout"):
            SqlInvoiceRepository(second).next_number(year=2031)
        second.rollback()
        first.commit()
        second.begin()
        assert SqlInvoiceRepository(second).next_number(year=2031) == 2
        second.commit()
    finally:
        first.close()
        second.close()
