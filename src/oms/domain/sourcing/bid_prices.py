"""The opportunity cost of scarce stock: a bid price per unit of a SKU at a location.

A unit shipped now is a unit a later order cannot have. When stock is plentiful that costs
nothing; when it is scarce, the later order ships from farther away, splits, or is backordered.
Following Acimovic & Graves (2015, "Making better fulfillment decisions on the fly in an online
retail environment"), the value of one more unit at a location is the dual value of its stock
in a transportation programme over the demand expected until the stock is replenished:

    minimise   sum over lanes l and locations L of  c[l, L] * x[l, L]  +  b[l] * u[l]
    subject to sum over L of x[l, L] + u[l] = d[l]                  (every expected unit is
                                                                      shipped or backordered)
               sum over lanes of SKU s of x[l, L] <= stock[L, s]     (dual: bid price [L, s])
               sum over lanes of x[l, L]          <= capacity[L]     (dual: capacity price [L])
               x, u >= 0

A lane is one expected order line: its SKU, its units ``d`` (recent history, scaled to the
horizon), the per-unit cost ``c`` of serving it from each candidate location under its profile
(the engine's own filters and cost terms; a parcel's cost spread over the units of its group)
and its backorder penalty ``b``. The prices are at most ``b`` minus the cheapest way to serve
a lane, so a planner that adds them to a location's unit cost (the ``stock_opportunity`` term)
ships a unit only where that is worth more than what later orders would lose, and backorders
a line whose cheapest source costs more, all told, than its backorder penalty.

Solving is a linear programme (HiGHS through ``scipy.optimize.linprog``); the planners only
read the resulting table (``Network.set_bid_prices``), so a decision stays well under a
millisecond. Callers refresh the table as stock and the remaining horizon change.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import csr_array

from oms.domain.sourcing.model import FloatArray, IntArray, Network, SourcingOrder
from oms.domain.sourcing.planner import prepare
from oms.domain.sourcing.profiles import ProfileSet

LANE_CANDIDATES = 8
"""Cheapest candidate locations kept per lane (the others would not take its units)."""
PRICE_EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class DemandLane:
    """One expected order line: where it could be served from and at what cost per unit."""

    sku: str
    units: float
    locations: IntArray
    """Network indexes of its candidate locations, cheapest first."""
    unit_cost: FloatArray
    """Cost per unit from each of ``locations`` (paid terms only)."""
    backorder_penalty: float
    minute_of_day: int
    """When the line's order was placed (UTC minute of the day): callers keep the part of a
    day still to come."""


@dataclass(frozen=True, slots=True)
class BidPrices:
    stock: Mapping[str, Mapping[str, float]]
    """SKU -> location code -> price of one unit (only positive prices)."""
    capacity: Mapping[str, float]
    """Location code -> price of one unit of today's remaining capacity (positive only)."""
    lanes: int
    expected_units: float
    backordered_units: float
    """Units of the expected demand the programme could not serve."""
    status: str
    seconds: float


def demand_lanes(
    history: Iterable[SourcingOrder],
    network: Network,
    profiles: ProfileSet,
    *,
    candidate_limit: int = LANE_CANDIDATES,
) -> list[DemandLane]:
    """Price the lines of past orders against ``network`` with the engine's filters and cost
    terms: each becomes a lane of expected demand. Nothing is taken from ``network``."""
    lanes: list[DemandLane] = []
    for order in history:
        minute = order.placed_at.hour * 60 + order.placed_at.minute
        for group in prepare(order, network, profiles, explain=False):
            costs = group.costs
            group_units = float(sum(ctx.line.quantity for ctx in group.contexts))
            shared_fixed = costs.fixed / max(group_units, 1.0)
            for i, ctx in enumerate(group.contexts):
                where = np.flatnonzero(group.masks[i] & (ctx.atp > 0))
                if where.size == 0:
                    continue
                per_unit = costs.unit[i][where] + shared_fixed[where]
                if where.size > candidate_limit:
                    keep = np.argpartition(per_unit, candidate_limit - 1)[:candidate_limit]
                    where, per_unit = where[keep], per_unit[keep]
                ordered = np.argsort(per_unit, kind="stable")
                lanes.append(
                    DemandLane(
                        sku=ctx.line.sku,
                        units=float(ctx.line.quantity),
                        locations=where[ordered].astype(np.int64),
                        unit_cost=per_unit[ordered].astype(np.float64),
                        backorder_penalty=float(group.profile.backorder_penalty),
                        minute_of_day=minute,
                    )
                )
    return lanes


def bid_prices(
    network: Network,
    lanes: Sequence[DemandLane],
    *,
    scale: float = 1.0,
    time_limit_seconds: float = 30.0,
) -> BidPrices:
    """Solve the transportation programme of ``lanes`` (each ``units * scale``) over the
    network's current stock and remaining capacity; the duals are the bid prices."""
    started = time.perf_counter()
    cost: list[float] = []
    column_location: list[int] = []
    """Location of each shipping column (-1: a backorder column)."""
    rows: list[int] = []
    cols: list[int] = []
    eq_rows: list[int] = []
    eq_cols: list[int] = []
    demand: list[float] = []
    stock_row: dict[tuple[int, str], int] = {}
    for lane in lanes:
        if lane.units * scale <= 0:
            continue
        stock_now = network.atp(lane.sku)[lane.locations]
        usable = (stock_now > 0) & (network.capacity[lane.locations] > 0)
        lane_index = len(demand)
        demand.append(lane.units * scale)
        for location, price in zip(
            lane.locations[usable].tolist(), lane.unit_cost[usable].tolist(), strict=True
        ):
            column = len(cost)
            cost.append(price)
            column_location.append(location)
            eq_rows.append(lane_index)
            eq_cols.append(column)
            key = (location, lane.sku)
            row = stock_row.get(key)
            if row is None:
                row = stock_row[key] = len(stock_row)
            rows.append(row)
            cols.append(column)
        eq_rows.append(lane_index)
        eq_cols.append(len(cost))
        cost.append(lane.backorder_penalty)
        column_location.append(-1)
    if not stock_row:
        total = float(sum(demand))
        return BidPrices({}, {}, len(demand), total, total, "empty", 0.0)
    upper = [float(network.atp(sku)[location]) for location, sku in stock_row]
    # a capacity row where the location's stock in the programme exceeds its capacity
    held: dict[int, float] = {}
    for (location, _), bound in zip(stock_row, upper, strict=True):
        held[location] = held.get(location, 0.0) + bound
    capacity_row: dict[int, int] = {}
    for location, units in held.items():
        room = float(network.capacity[location])
        if math.isfinite(room) and room < units:
            capacity_row[location] = len(upper)
            upper.append(room)
    if capacity_row:
        for column, location in enumerate(column_location):
            row = capacity_row.get(location)
            if row is not None:
                rows.append(row)
                cols.append(column)
    variables = len(cost)
    a_ub = csr_array(
        (np.ones(len(rows)), (np.array(rows), np.array(cols))), shape=(len(upper), variables)
    )
    a_eq = csr_array(
        (np.ones(len(eq_rows)), (np.array(eq_rows), np.array(eq_cols))),
        shape=(len(demand), variables),
    )
    result = linprog(
        np.array(cost),
        A_ub=a_ub,
        b_ub=np.array(upper),
        A_eq=a_eq,
        b_eq=np.array(demand),
        bounds=(0.0, None),
        method="highs-ipm",  # interior point: far faster than simplex on these programmes
        options={"time_limit": time_limit_seconds},
    )
    status = {0: "optimal", 1: "time_limit"}.get(result.status, "failed")
    if result.status != 0 or result.ineqlin is None:
        return BidPrices(
            {}, {}, len(demand), sum(demand), math.nan, status, time.perf_counter() - started
        )
    duals = -np.asarray(result.ineqlin.marginals, dtype=np.float64)
    stock: dict[str, dict[str, float]] = {}
    for (location, sku), row in stock_row.items():
        price = float(duals[row])
        if price > PRICE_EPSILON:
            stock.setdefault(sku, {})[network.codes[location]] = round(price, 4)
    capacity = {
        network.codes[location]: round(float(duals[row]), 4)
        for location, row in capacity_row.items()
        if duals[row] > PRICE_EPSILON
    }
    x = np.asarray(result.x, dtype=np.float64)
    backorder_columns = np.array(column_location) < 0
    return BidPrices(
        stock=stock,
        capacity=capacity,
        lanes=len(demand),
        expected_units=float(sum(demand)),
        backordered_units=float(x[backorder_columns].sum()),
        status=status,
        seconds=time.perf_counter() - started,
    )
