"""Property tests over random sequences of feeds, holds, allocations, releases and expiries
(acceptance 1): ATP is never negative and equals its formula, and no quantity appears or
vanishes: on hand is always the sum of its journal, allocated and reserved match what was
taken and given back, and an expired hold never counts."""

from __future__ import annotations

import shutil
import uuid
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from oms.adapters.clock import ControlledClock
from oms.bootstrap import build_services
from oms.config import Settings
from oms.domain.errors import Conflict
from oms.domain.inventory import DeltaKind, InsufficientStock, StockLine
from oms.services.inventory import ReservationRequestLine
from oms.services.ports import DeltaLine, SnapshotLine
from tests.inventory_support import a_location, an_item

SKUS = ["A", "B"]
LOCATIONS = ["DC", "ST"]
skus = st.sampled_from(SKUS)
locations = st.sampled_from(LOCATIONS)
quantities = st.integers(min_value=1, max_value=6)


@pytest.mark.slow
def test_stock_arithmetic_holds_over_random_histories(
    sqlite_template: Path, tmp_path: Path
) -> None:
    class StockMachine(RuleBasedStateMachine):
        holds = Bundle("holds")

        def __init__(self) -> None:
            super().__init__()
            path = tmp_path / f"{uuid.uuid4().hex}.db"
            shutil.copyfile(sqlite_template, path)
            self.clock = ControlledClock()
            self.services = build_services(
                Settings(database_url=f"sqlite:///{path}", data_dir=tmp_path), clock=self.clock
            )
            inventory = self.services.inventory
            inventory.create_location(a_location("DC"))
            inventory.create_location(a_location("ST", type="store", capabilities=["pickup"]))
            for sku in SKUS:
                inventory.create_item(an_item(sku))
            self.allocated: dict[tuple[str, str], int] = defaultdict(int)
            self.messages: list[DeltaLine] = []
            self.counted_at = self.clock.now()

        def teardown(self) -> None:
            self.services.close()

        # -- the rules ----------------------------------------------------------------------

        @rule(sku=skus, location=locations, on_hand=st.integers(0, 20), back=st.integers(0, 30))
        def snapshot(self, sku: str, location: str, on_hand: int, back: int) -> None:
            as_of = self.clock.now() - timedelta(minutes=back)
            self.services.inventory.apply_snapshot(
                [SnapshotLine(sku, location, on_hand)], as_of=as_of, source="wms"
            )

        @rule(
            sku=skus,
            location=locations,
            kind=st.sampled_from(list(DeltaKind)),
            quantity=st.integers(-5, 8).filter(bool),
            back=st.integers(0, 30),
        )
        def delta(self, sku: str, location: str, kind: DeltaKind, quantity: int, back: int) -> None:
            if kind is not DeltaKind.COUNT_CORRECTION:
                quantity = abs(quantity)
            message = DeltaLine(
                source="pos",
                message_id=f"m{len(self.messages)}",
                sku=sku,
                location_code=location,
                kind=kind,
                quantity=quantity,
                occurred_at=self.clock.now() - timedelta(minutes=back),
            )
            self.messages.append(message)
            self.services.inventory.apply_deltas([message])

        @rule(data=st.data())
        def replay(self, data: st.DataObject) -> None:
            if self.messages:
                message = data.draw(st.sampled_from(self.messages))
                outcome = self.services.inventory.apply_deltas([message])
                assert outcome.applied == 0 and len(outcome.duplicates) == 1

        @rule(sku=skus, location=locations, quantity=quantities)
        def allocate(self, sku: str, location: str, quantity: int) -> None:
            try:
                self.services.inventory.allocate([StockLine(sku, location, quantity)])
            except InsufficientStock as refused:
                assert 0 <= refused.available < quantity
                return
            self.allocated[(sku, location)] += quantity
            self.check_not_oversold(sku, location)

        @rule(sku=skus, location=locations, quantity=quantities, ship=st.booleans())
        def give_back(self, sku: str, location: str, quantity: int, ship: bool) -> None:
            line = [StockLine(sku, location, quantity)]
            try:
                if ship:
                    self.services.inventory.consume(line, reference="S")
                else:
                    self.services.inventory.deallocate(line)
            except Conflict:
                return
            self.allocated[(sku, location)] -= quantity

        @rule(
            target=holds,
            sku=skus,
            location=st.one_of(st.none(), locations),
            quantity=quantities,
            minutes=st.integers(1, 30),
        )
        def reserve(self, sku: str, location: str | None, quantity: int, minutes: int) -> str:
            try:
                hold = self.services.inventory.reserve(
                    [ReservationRequestLine(sku, quantity, location)],
                    reference="cart",
                    ttl=timedelta(minutes=minutes),
                )
            except InsufficientStock as refused:
                assert 0 <= refused.available < quantity
                return "none"
            for line in hold.lines:
                self.check_not_oversold(line.sku, line.location_code)
            return hold.id

        @rule(hold=holds, confirm=st.booleans())
        def end_hold(self, hold: str, confirm: bool) -> None:
            if hold == "none":
                return
            _, status = self.services.inventory.get_reservation(hold)
            try:
                if confirm:
                    lines = self.services.inventory.confirm_reservation(hold)
                else:
                    self.services.inventory.release_reservation(hold)
                    lines = []
            except Conflict:
                assert status != "active"
                return
            assert status == "active"
            for line in lines:
                self.allocated[(line.sku, line.location_code)] += line.quantity

        @rule(minutes=st.integers(1, 20))
        def time_passes(self, minutes: int) -> None:
            self.clock.advance(timedelta(minutes=minutes))

        @rule()
        def worker_runs(self) -> None:
            self.services.inventory.release_expired_reservations()

        @rule(sku=skus, location=locations, blocked=st.integers(0, 4))
        def block(self, sku: str, location: str, blocked: int) -> None:
            self.services.inventory.set_blocked(sku, location, blocked=blocked, reason="damaged")

        # -- what must always hold ----------------------------------------------------------

        def active_holds(self) -> dict[tuple[str, str], int]:
            """Units held right now, computed from the holds themselves with the clock."""
            held: dict[tuple[str, str], int] = defaultdict(int)
            with self.services.uow(read_only=True) as uow:
                from sqlalchemy import select

                from oms.adapters.db.tables import reservations

                ids = [row.id for row in uow.connection.execute(select(reservations.c.id))]
                for reservation_id in ids:
                    found = uow.inventory.get_reservation(reservation_id)
                    assert found is not None
                    if found.effective_status(self.clock.now()).value == "active":
                        for line in found.lines:
                            held[(line.sku, line.location_code)] += line.quantity
            return held

        def check_not_oversold(self, sku: str, location: str) -> None:
            position = next(
                p
                for p in self.services.inventory.item_availability(sku).positions
                if p.location_code == location
            )
            assert (
                position.on_hand
                - position.allocated
                - position.reserved
                - position.blocked
                - position.safety_stock
                >= 0
            )

        @invariant()
        def atp_is_its_formula_and_nothing_appears_or_vanishes(self) -> None:
            held = self.active_holds()
            with self.services.uow(read_only=True) as uow:
                journal = uow.inventory.movement_totals(SKUS)
            for sku in SKUS:
                found = self.services.inventory.item_availability(sku)
                for position in found.positions:
                    where = (sku, position.location_code)
                    assert position.atp >= 0
                    assert position.atp == max(
                        0,
                        position.on_hand
                        - position.allocated
                        - position.reserved
                        - position.blocked
                        - position.safety_stock,
                    )
                    assert found.atp.get(position.location_code, 0) == position.atp
                    assert position.reserved == held[where]
                    assert position.allocated == self.allocated[where]
                    assert position.on_hand == journal.get(where, 0)
                    assert min(position.on_hand, position.blocked, position.reserved) >= 0

    run_state_machine_as_test(
        StockMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
