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
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from oms.domain.sourcing.filters import LineContext
from oms.domain.sourcing.model import COLLECTED_AT_LOCATION, FloatArray
from oms.domain.sourcing.profiles import ShippingZone


@dataclass(slots=True)
class TermCost:
    """One term's contribution: per shipment, per unit of each line, per last unit, per split."""

    fixed: FloatArray | None = None
    unit: list[FloatArray] | None = None
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
    units = [per_kg * ctx.line.weight_kg for ctx in group.lines]
    if group.ship_alone:
        return TermCost(unit=[base + u for u in units])
    return TermCost(fixed=base, unit=units)


def handling(group: GroupContext) -> TermCost:
    """The location's cost to pick and pack one unit."""
    return TermCost(unit=[ctx.network.handling_cost for ctx in group.lines])


def split(group: GroupContext) -> TermCost:
    """A penalty for every extra shipment: more parcels, more cost, a less happy customer."""
    return TermCost(extra_shipment=float(group.first.profile.split_penalty))


def lateness(group: GroupContext) -> TermCost:
    """Days late against the promise date (cut-off, pick time, transit), per parcel."""
    first = group.first
    per_parcel = first.late_days * float(first.profile.lateness_per_day)
    if group.ship_alone:
        return TermCost(unit=[per_parcel])
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
    return TermCost(unit=[per_unit for _ in group.lines])


def stock_balance(group: GroupContext) -> TermCost:
    """Taking a protected store's last units (kept for walk-in shoppers) costs extra per unit."""
    first = group.first
    profile = first.profile
    if not profile.protected_types or profile.protected_units <= 0:
        return TermCost()
    protected = first.network.types_mask(profile.protected_types)
    return TermCost(last_unit=protected.astype(np.float64) * float(profile.last_unit_penalty))


COST_TERMS: Mapping[str, CostTerm] = {
    "shipping": shipping,
    "handling": handling,
    "split": split,
    "lateness": lateness,
    "store_priority": store_priority,
    "stock_balance": stock_balance,
}


@dataclass(slots=True)
class GroupCosts:
    """The weighted sum of every term, plus each weighted term for the explanation."""

    fixed: FloatArray
    unit: list[FloatArray]
    last_unit: FloatArray
    threshold: list[FloatArray]
    """Units per line that can be taken before touching the protected last units."""
    extra_shipment: float
    terms: dict[str, TermCost] = field(default_factory=dict)


def group_costs(group: GroupContext, *, explain: bool) -> GroupCosts:
    first = group.first
    size = first.network.size
    profile = first.profile
    fixed = np.zeros(size, dtype=np.float64)
    unit = [np.zeros(size, dtype=np.float64) for _ in group.lines]
    last_unit = np.zeros(size, dtype=np.float64)
    extra = 0.0
    kept: dict[str, TermCost] = {}
    for name, term in COST_TERMS.items():
        weight = profile.weight(name)
        if weight == 0.0:
            continue
        cost = term(group)
        if weight != 1.0:
            cost = TermCost(
                fixed=None if cost.fixed is None else cost.fixed * weight,
                unit=None if cost.unit is None else [u * weight for u in cost.unit],
                last_unit=None if cost.last_unit is None else cost.last_unit * weight,
                extra_shipment=cost.extra_shipment * weight,
            )
        if cost.fixed is not None:
            fixed = fixed + cost.fixed
        if cost.unit is not None:
            unit = [u + c for u, c in zip(unit, cost.unit, strict=True)]
        if cost.last_unit is not None:
            last_unit = last_unit + cost.last_unit
        extra += cost.extra_shipment
        if explain:
            kept[name] = cost
    protected_units = float(profile.protected_units)
    threshold = [np.maximum(ctx.atp - protected_units, 0.0) for ctx in group.lines]
    return GroupCosts(fixed, unit, last_unit, threshold, extra, kept)


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
