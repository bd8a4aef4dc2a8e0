"""The pull feed (`GET /events?after=`) never skips an event whose transaction commits late.

On PostgreSQL an event's position comes from a sequence before its transaction commits, so a
higher position can become visible first. A reader that took it and moved its cursor past it
would never see the lower one. These tests hold a transaction open with a lower position and
check what readers see before and after it commits, and that a rolled-back gap is passed once
it is older than the grace period.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, insert

from oms.adapters.clock import ControlledClock
from oms.adapters.db.tables import outbox_events
from oms.bootstrap import Services, build_services
from oms.config import Settings
from tests.conftest import POSTGRES_URL
from tests.events_support import OrderCreated, StockAdjusted, commit_events


@pytest.fixture
def pg(postgres_engine: Engine, tmp_path: Path, clock: ControlledClock) -> Iterator[Services]:
    settings = Settings(database_url=POSTGRES_URL, data_dir=tmp_path / "data")
    yield build_services(settings, clock=clock, engine=postgres_engine)


def _open_event(connection: Connection, clock: ControlledClock, event_id: str) -> None:
    """Insert an event in a transaction the caller keeps open (its position is taken now)."""
    connection.execute(
        insert(outbox_events).values(
            event_id=event_id,
            type="order.created",
            source="/test",
            subject="orders/LATE",
            time=clock.now(),
            data={"order_number": "LATE"},
        )
    )


def test_a_later_position_is_not_read_past_an_open_transaction(
    pg: Services, postgres_engine: Engine, clock: ControlledClock
) -> None:
    commit_events(pg, OrderCreated(order_number="A"))
    with postgres_engine.connect() as slow:
        slow.begin()
        _open_event(slow, clock, "late-event")  # takes position 2, commits last
        commit_events(pg, OrderCreated(order_number="B"))  # position 3, committed

        page = pg.events.read_page(after=0)
        assert [e.subject for e in page.events] == ["orders/A"]
        assert page.next_after == 1  # not 3: position 2 may still come

        slow.commit()
    page = pg.events.read_page(after=1)
    assert [e.subject for e in page.events] == ["orders/LATE", "orders/B"]
    assert page.next_after == 3


def test_a_rolled_back_gap_is_passed_once_it_is_older_than_the_grace(
    pg: Services, postgres_engine: Engine, clock: ControlledClock
) -> None:
    with postgres_engine.connect() as failed:
        failed.begin()
        _open_event(failed, clock, "never-committed")  # position 1, then rolled back
        failed.rollback()
    commit_events(pg, OrderCreated(order_number="A"))  # position 2

    assert pg.events.read_page(after=0).events == []
    clock.advance(timedelta(seconds=11))
    page = pg.events.read_page(after=0)
    assert [e.subject for e in page.events] == ["orders/A"]
    assert page.next_after == 2


def test_a_filtered_read_moves_the_cursor_over_settled_events_of_other_types(
    pg: Services,
) -> None:
    commit_events(pg, StockAdjusted(sku="A", quantity=1), StockAdjusted(sku="B", quantity=2))
    page = pg.events.read_page(after=0, types=["order.created"])
    assert page.events == []
    assert page.next_after == 2  # nothing of that type up to 2: the next read starts after it

    commit_events(pg, OrderCreated(order_number="A"))
    page = pg.events.read_page(after=page.next_after, types=["order.created"])
    assert [e.subject for e in page.events] == ["orders/A"]
