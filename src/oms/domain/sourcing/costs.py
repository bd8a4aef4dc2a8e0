"""The cost model: a registry of named cost terms, each weighted by the profile.

Sourcing a group of lines (one order's lines going to one place under one profile) from a
location costs

    fixed[L] (once per shipment) + sum over lines of units * unit[line][L]
    + last_unit_penalty[L] * units taken from the location's last protected units
    + split_penalty for every shipment beyond the first of the group

Each term below contributes to some of these parts; the profile's weight multiplies it. The
greedy planner, the batch MILP and the benchmark all price plans with these same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from oms.domain.sourcing.filters import LineContext
from oms.domain.sourcing.model import COLLECTED_AT_LOCATION, BoolArray, FloatArray
from oms.domain.sourcing.profiles import ShippingZone


@dataclass(slots=True)
class TermCost:
    """One term's contribution: per shipment, per unit of each line, per last unit, per split."""

    fixed: FloatArray | None = None
    unit: FloatArray | None = None
    """Per unit of each line: one row per line of the group (lines x locations)."""
    last_unit: FloatArray | None = None
    extra_shipment: float = 0.0


@dataclass(slots=True)
class GroupContext:
    lines: list[LineContext]
    ship_alone: bool
    """A group of one ship-alone line: every unit is its own parcel."""

    @property
    def first(self) -> LineContext:
        return self.lines[0]

    def per_line(self, values: FloatArray) -> FloatArray:
        """The same per-unit cost for every line: one (read-only) row per line."""
        if len(self.lines) == 1:
            return values[None, :]
        result: FloatArray = np.broadcast_to(values, (len(self.lines), values.shape[-1]))
        return result


CostTerm = Callable[[GroupContext], TermCost]


@dataclass(frozen=True, slots=True)
class ZoneTable:
    """A profile's shipping zones as arrays (read-only: one table serves every line)."""

    up_to_km: FloatArray
    transit_days: FloatArray
    base: FloatArray
    per_kg: FloatArray


@lru_cache(maxsize=64)
def zone_table(zones: tuple[ShippingZone, ...]) -> ZoneTable:
    columns = [
        np.array([float(value) for value in values], dtype=np.float64)
        for values in zip(
            *((z.up_to_km, z.transit_days, z.base, z.per_kg) for z in zones), strict=True
        )
    ]
    for column in columns:
        column.setflags(write=False)
    return ZoneTable(*columns)


def _zone_prices(ctx: LineContext) -> tuple[FloatArray, FloatArray]:
    table = zone_table(ctx.profile.zones)
    return table.base[ctx.zone], table.per_kg[ctx.zone]


def shipping(group: GroupContext) -> TermCost:
    """Carrier cost by distance zone: a base price per parcel plus a price per kilogram."""
    first = group.first
    if first.line.delivery_method in COLLECTED_AT_LOCATION:
        return TermCost()
    base, per_kg = _zone_prices(first)
    weights = np.array([ctx.line.weight_kg for ctx in group.lines], dtype=np.float64)
    units = per_kg * weights[:, None]
    if group.ship_alone:
        return TermCost(unit=base + units)
    return TermCost(fixed=base, unit=units)


def handling(group: GroupContext) -> TermCost:
    """The location's cost to pick and pack one unit."""
    return TermCost(unit=group.per_line(group.first.network.handling_cost))


def split(group: GroupContext) -> TermCost:
    """A penalty for every extra shipment: more parcels, more cost, a less happy customer."""
    return TermCost(extra_shipment=float(group.first.profile.split_penalty))


def lateness(group: GroupContext) -> TermCost:
    """Days late against the promise date (cut-off, pick time, transit), per parcel."""
    first = group.first
    per_parcel = first.late_days * float(first.profile.lateness_per_day)
    if group.ship_alone:
        return TermCost(unit=group.per_line(per_parcel))
    return TermCost(fixed=per_parcel)


def store_priority(group: GroupContext) -> TermCost:
    """Store ranking: each rank costs a little per unit; preferred locations get a discount."""
    first = group.first
    profile = first.profile
    per_unit = first.network.priority * float(profile.priority_per_rank)
    if profile.preferred_locations and not profile.preferred_only:
        preferred = np.array(
            [code in profile.preferred_locations for code in first.network.codes], dtype=np.bool_
        )
        per_unit = per_unit - preferred * float(profile.preferred_discount)
    return TermCost(unit=group.per_line(per_unit))


def stock_balance(group: GroupContext) -> TermCost:
    """Taking a protected store's last units (kept for walk-in shoppers) costs extra per unit."""
    first = group.first
    profile = first.profile
    if not profile.protected_types or profile.protected_units <= 0:
        return TermCost()
    protected = first.network.types_mask(profile.protected_types)
    return TermCost(last_unit=protected.astype(np.float64) * float(profile.last_unit_penalty))


def stock_opportunity(group: GroupContext) -> TermCost:
    """What a unit taken now is worth to the orders expected before the stock is replenished:
    the location's bid price for the SKU (dual value of the stock in the forecast
    transportation programme, :mod:`oms.domain.sourcing.bid_prices`). Not paid to anyone: it
    steers the choice (and may make a backorder cheaper than a shipment), the plan's cost
    leaves it out."""
    network = group.first.network
    return TermCost(unit=np.array([network.bid_price(ctx.line.sku) for ctx in group.lines]))


COST_TERMS: Mapping[str, CostTerm] = {
    "shipping": shipping,
    "handling": handling,
    "split": split,
    "lateness": lateness,
    "store_priority": store_priority,
    "stock_balance": stock_balance,
    "stock_opportunity": stock_opportunity,
}

OPPORTUNITY_TERMS = frozenset({"stock_opportunity"})
"""Terms that weigh a choice without being a cost anyone pays: in ``GroupCosts.decision_unit``
and the explanation's candidates, not in ``GroupCosts.unit`` nor in a plan's cost."""


@dataclass(slots=True)
class GroupCosts:
    """The weighted sum of every term, plus each weighted term for the explanation."""

    fixed: FloatArray
    unit: FloatArray
    """Per unit of each line (lines x locations)."""
    last_unit: FloatArray
    threshold: FloatArray
    """Units per line that can be taken before touching the protected last units (lines x
    locations)."""
    extra_shipment: float
    terms: dict[str, TermCost]
    decision_unit: FloatArray
    """``unit`` plus the opportunity terms: what the planners minimise (``unit`` itself when
    the profile weighs no opportunity)."""
    opportunity: FloatArray | None = None
    """The opportunity terms per unit of each line (None: none)."""


def group_costs(
    group: GroupContext,
    *,
    explain: bool,
    masks: BoolArray | None = None,
    atp: FloatArray | None = None,
) -> GroupCosts:
    """``masks``: each line's candidate locations (the opportunity term is relative to the
    least of them unless the profile lets it backorder), lines x locations; ``atp``: the
    lines' ATP as one array (lines x locations), when the caller has it already."""
    first = group.first
    size = first.network.size
    profile = first.profile
    if atp is None:
        atp = np.array([ctx.atp for ctx in group.lines], dtype=np.float64)
    fixed = np.zeros(size, dtype=np.float64)
    unit = np.zeros((len(group.lines), size), dtype=np.float64)
    last_unit = np.zeros(size, dtype=np.float64)
    extra = 0.0
    kept: dict[str, TermCost] = {}
    opportunity: FloatArray | None = None
    for name, term in COST_TERMS.items():
        weight = profile.weight(name)
        if weight == 0.0:
            continue
        if name in OPPORTUNITY_TERMS and not first.network.has_bid_prices:
            continue
        cost = term(group)
        if weight != 1.0:
            cost = TermCost(
                fixed=None if cost.fixed is None else cost.fixed * weight,
                unit=None if cost.unit is None else cost.unit * weight,
                last_unit=None if cost.last_unit is None else cost.last_unit * weight,
                extra_shipment=cost.extra_shipment * weight,
            )
        if name in OPPORTUNITY_TERMS:
            if cost.unit is not None:
                opportunity = cost.unit if opportunity is None else opportunity + cost.unit
            if explain:
                kept[name] = cost
            continue
        if cost.fixed is not None:
            fixed = fixed + cost.fixed
        if cost.unit is not None:
            unit = unit + cost.unit
        if cost.last_unit is not None:
            last_unit = last_unit + cost.last_unit
        extra += cost.extra_shipment
        if explain:
            kept[name] = cost
    protected_units = float(profile.protected_units)
    threshold = np.maximum(atp - protected_units, 0.0)
    if opportunity is not None and not profile.opportunity_may_backorder:
        opportunity = _relative(atp, opportunity, masks)
        if explain:
            kept.update(
                {name: TermCost(unit=opportunity) for name in kept if name in OPPORTUNITY_TERMS}
            )
    decision_unit = unit if opportunity is None else unit + opportunity
    return GroupCosts(fixed, unit, last_unit, threshold, extra, kept, decision_unit, opportunity)


def _relative(atp: FloatArray, opportunity: FloatArray, masks: BoolArray | None) -> FloatArray:
    """The opportunity per unit above the least a candidate with stock of the line has: it
    still tells the sources apart, and it no longer makes every source cost more than a
    backorder (the line waits only for what it would pay)."""
    rows = []
    for i, extra in enumerate(opportunity):
        usable = atp[i] > 0
        if masks is not None:
            usable = usable & masks[i]
        floor = float(extra[usable].min()) if usable.any() else 0.0
        rows.append(np.maximum(extra - floor, 0.0) if floor > 0 else extra)
    return np.array(rows, dtype=np.float64)


def term_breakdown(
    costs: GroupCosts, *, location: int, units: Mapping[int, int], extra_shipments: int
) -> dict[str, float]:
    """What each term costs for a shipment of ``units`` (line position -> units) at a location."""
    result: dict[str, float] = {}
    for name, cost in costs.terms.items():
        value = 0.0
        if cost.fixed is not None and units:
            value += float(cost.fixed[location])
        if cost.unit is not None:
            value += sum(float(cost.unit[i][location]) * q for i, q in units.items())
        if cost.last_unit is not None:
            value += sum(
                float(cost.last_unit[location]) * max(0.0, q - float(costs.threshold[i][location]))
                for i, q in units.items()
            )
        value += cost.extra_shipment * extra_shipments
        result[name] = value
    return result
