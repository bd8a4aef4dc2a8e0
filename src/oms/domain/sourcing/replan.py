"""Re-planning: when a location refuses, short-picks or goes away, source the rest again.

A refused quantity is sourced again with the refusing location excluded for that line (for
good: the caller keeps the refusals and passes them every time). When a location goes
``offline``/``dark``/``closed``, every open order with unshipped units there is re-sourced in
bulk; what nothing can serve is backordered. No unit is lost: each affected unit comes back
either re-sourced or backordered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from oms.domain.sourcing.model import (
    WALK_IN,
    LocationStatus,
    Network,
    SourcingInputInvalid,
    SourcingOrder,
)
from oms.domain.sourcing.plan import SourcingPlan
from oms.domain.sourcing.planner import plan_order
from oms.domain.sourcing.profiles import ProfileSet


def remainder_order(
    order: SourcingOrder,
    quantities: Mapping[str, int],
    *,
    refused: Mapping[str, frozenset[str]] | None = None,
    at: datetime | None = None,
) -> SourcingOrder:
    """The part of ``order`` still to source: line id -> units, with the refusals so far."""
    by_id = {line.line_id: line for line in order.lines}
    unknown = sorted(set(quantities) - set(by_id))
    if unknown:
        raise SourcingInputInvalid(f"order {order.order_id} has no line(s) {', '.join(unknown)}")
    lines = []
    for line_id, quantity in quantities.items():
        line = by_id[line_id]
        if not 0 < quantity <= line.quantity:
            raise SourcingInputInvalid(
                f"line {line_id}: {quantity} is not between 1 and its {line.quantity} unit(s)"
            )
        lines.append(replace(line, quantity=quantity))
    merged = {key: frozenset(value) for key, value in order.refused.items()}
    for line_id, codes in (refused or {}).items():
        merged[line_id] = merged.get(line_id, frozenset()) | codes
    return replace(
        order,
        lines=tuple(lines),
        refused=merged,
        placed_at=at or order.placed_at,
    )


def replan_refusal(
    order: SourcingOrder,
    *,
    line_id: str,
    location: str,
    quantity: int,
    network: Network,
    profiles: ProfileSet,
    at: datetime,
) -> SourcingPlan:
    """``location`` rejected or short-picked ``quantity`` of a line: source it elsewhere."""
    remainder = remainder_order(
        order, {line_id: quantity}, refused={line_id: frozenset({location})}, at=at
    )
    return plan_order(remainder, network, profiles)


@dataclass(frozen=True, slots=True)
class OutageReplan:
    plans: Mapping[str, SourcingPlan]
    """order id -> plan for the units that were at the affected locations."""
    affected_units: int
    re_sourced_units: int
    backordered_units: int

    @property
    def affected_orders(self) -> int:
        return len(self.plans)


def replan_outage(
    orders: Sequence[SourcingOrder],
    open_allocations: Mapping[str, Mapping[str, Mapping[str, int]]],
    network: Network,
    profiles: ProfileSet,
    *,
    statuses: Mapping[str, LocationStatus],
    at: datetime,
    explain: bool = True,
) -> tuple[OutageReplan, Network]:
    """Re-source the unshipped units that locations can no longer serve after a status change:
    everything at an ``offline`` or ``closed`` location, and walk-in collections at a ``dark``
    one.

    ``open_allocations``: order id -> line id -> location -> units allocated and not shipped.
    Returns the re-plans and the network (with the new statuses) they were planned on.
    """
    changed = network.with_status(statuses)
    gone = {
        code
        for code, status in statuses.items()
        if status in (LocationStatus.OFFLINE, LocationStatus.CLOSED)
    }
    dark = {code for code, status in statuses.items() if status is LocationStatus.DARK}
    plans: dict[str, SourcingPlan] = {}
    affected_units = 0
    re_sourced = 0
    backordered = 0
    for order in orders:
        lines = open_allocations.get(order.order_id, {})
        methods = {line.line_id: line.delivery_method for line in order.lines}
        quantities: dict[str, int] = {}
        for line_id, by_location in lines.items():
            # a dark store still ships; only what customers were to collect there moves
            affected = gone | (dark if methods.get(line_id) in WALK_IN else set())
            units = sum(q for code, q in by_location.items() if code in affected)
            if units > 0:
                quantities[line_id] = units
        if not quantities:
            continue
        remainder = remainder_order(order, quantities, at=at)
        plan = plan_order(remainder, changed, profiles, explain=explain)
        plans[order.order_id] = plan
        affected_units += sum(quantities.values())
        re_sourced += sum(a.quantity for a in plan.allocations)
        backordered += plan.backordered_units
    return OutageReplan(plans, affected_units, re_sourced, backordered), changed
