"""Values that cross the boundaries: settings, events as JSON, column types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from oms.adapters.db.types import Money, UtcDateTime
from oms.config import Settings, normalise_database_url
from oms.domain.events import DomainEvent, to_json_value


def test_postgresql_urls_use_psycopg3() -> None:
    assert normalise_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_default_database_is_sqlite_in_the_data_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OMS_DATABASE_URL", raising=False)
    monkeypatch.setenv("OMS_DATA_DIR", str(tmp_path))
    assert Settings().resolved_database_url() == f"sqlite:///{tmp_path / 'oms.db'}"


def test_event_payloads_keep_money_exact() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Refunded(DomainEvent):
        type = "payment.refunded"
        amount: Decimal
        at: datetime

    data = Refunded(amount=Decimal("10.10"), at=datetime(2026, 1, 1, tzinfo=UTC)).data()
    assert data == {"amount": "10.10", "at": "2026-01-01T00:00:00+00:00"}
    assert to_json_value({"a": (Decimal("0.1"),)}) == {"a": ["0.1"]}


def test_naive_datetimes_and_float_money_are_refused_by_the_columns() -> None:
    from sqlalchemy.dialects import sqlite

    with pytest.raises(ValueError, match="naive"):
        UtcDateTime().process_bind_param(datetime(2026, 1, 1), sqlite.dialect())
    with pytest.raises(TypeError, match="Decimal"):
        Money().process_bind_param(1.1, sqlite.dialect())  # type: ignore[arg-type]
    assert Money().process_result_value("19.9900", sqlite.dialect()) == Decimal("19.9900")
