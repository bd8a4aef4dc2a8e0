"""The hindsight optimum of the sourcing benchmark: every order of the day known in advance.

The model is the engine's cost model (``oms.domain.sourcing``: ``prepare`` prices every group,
``commit`` prices the plan) over **every** candidate location of every group, with nothing left
out:

* ``y[g, L]`` (binary): group ``g`` ships from location ``L``; costs ``fixed[L]`` (parcel base
  price by zone, lateness per parcel);
* ``x[g, L, i]`` (integer, <= min(quantity, initial ATP)): units of line ``i`` from ``L``, at
  ``unit[i][L]`` each (per kg, handling, store priority), with ``x <= bound * y``;
* ``b[g, i]``: backordered units at the profile's backorder penalty, ``sum_L x + b = quantity``;
* ``e[g] >= sum_L y - 1``: the split penalty of every shipment beyond the group's first, and
  ``sum_L y <= max_shipments`` (1 under ``never``);
* per location and SKU ``sum x <= ATP``, and ``z >= sum x - max(0, ATP - protected units)``
  priced at the last-unit penalty: the units a day takes out of a store's protected last units
  do not depend on the order in which orders took them, so ``commit`` charges exactly ``z``;
* per location ``sum x <= remaining capacity``.

Orders keep their own placement time (cut-off, lateness), so every coefficient is what the
real-time planner saw. The candidate filters that depend on the moment (ATP, capacity left)
only shrink during the day, so every plan the other policies make is feasible here, and the
optimum of this model is a lower bound on the cost of each of them.

What is proven and what is searched:

1. The bound. The LP relaxation of this full model (1.2 million columns at 10,000 orders) is
   solved by column generation: an LP (HiGHS interior point, ``linprog``) over the blocks of
   the best policy's plan and each group's cheapest blocks, then each round prices every
   block of the full model with the duals and adds each group's most negative ones. Each
   round's duals give a Lagrangian bound (``lagrangian_bound``): every row is moved into the
   objective with a multiplier of the right sign, so its term is <= 0 for every plan, and the
   rest is minimised exactly, column by column or line by line (weak duality). It is computed
   here from the duals, not read from the solver, so it is valid whatever the solver's
   tolerances and whether or not the generation converged; at convergence it is the LP
   optimum. The best round's bound is reported as ``lower_bound``: no plan of the model, so
   no plan of any policy, costs less.
2. The plan. The LP optimum is nearly integral. A MILP over the LP's columns with the
   integral blocks pinned, then one that also frees every group competing for the same
   stock as a fractional block, each within the time left (scipy's HiGHS takes no start
   solution). The plan is committed like every other policy's (``commit``), and kept only if
   it beats the best policy. Its restricted MILP bound is not a bound of the full model and
   is not reported.

Costs are floats here as in the engine; ``commit`` rounds each shipment to the cent, so a
reported total can differ from the model's value by at most half a cent per package (on
average zero), far below the gaps reported.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import csc_array, csr_array

from oms.domain.sourcing.model import Network, SourcingOrder
from oms.domain.sourcing.plan import SourcingPlan
from oms.domain.sourcing.planner import Choice, Group, commit, prepare
from oms.domain.sourcing.profiles import ProfileSet, SplitPolicy

LP_METHOD = "highs-ipm"


@dataclass
class _Builder:
    cost: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    integer: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    rhs: list[float] = field(default_factory=list)
    equal: list[bool] = field(default_factory=list)
    block: list[int] = field(default_factory=list)
    link: list[int] = field(default_factory=list)
    link_y: list[int] = field(default_factory=list)
    blocks: int = 0

    def variable(self, cost: float, upper: float, *, integer: bool, block: int = -1) -> int:
        self.cost.append(cost)
        self.upper.append(upper)
        self.integer.append(1 if integer else 0)
        self.block.append(block)
        return len(self.cost) - 1

    def new_block(self) -> int:
        self.blocks += 1
        return self.blocks - 1

    def row(
        self,
        terms: Sequence[tuple[int, float]],
        rhs: float,
        *,
        equal: bool = False,
        link: tuple[int, int] = (-1, -1),
    ) -> None:
        index = len(self.rhs)
        self.link.append(link[0])
        self.link_y.append(link[1])
        for column, value in terms:
            self.rows.append(index)
            self.cols.append(column)
            self.values.append(value)
        self.rhs.append(rhs)
        self.equal.append(equal)


@dataclass
class FullModel:
    """``min c.x`` s.t. ``A x (<= or =) rhs``, ``0 <= x <= upper``, with the decoding maps."""

    cost: np.ndarray
    upper: np.ndarray
    integer: np.ndarray
    matrix: csr_array
    rhs: np.ndarray
    equal: np.ndarray
    block: np.ndarray
    """Column -> its block (a shipment binary with its units, or one merged unit column);
    -1 for backorder, split and last-unit columns, which every restriction keeps."""
    backorder: np.ndarray
    """Column -> whether it is a backorder column."""
    link: np.ndarray
    """Row -> the unit column of an ``x <= bound * y`` row; -1 for other rows."""
    link_y: np.ndarray
    """Row -> the shipment column of an ``x <= bound * y`` row; -1 for other rows."""
    units: dict[int, tuple[int, int, int, int]]
    """column -> (order, group, location, line position) for unit columns."""
    groups: list[list[Group]]
    block_at: dict[tuple[int, int, int], int]
    """(order, group, location) -> block."""
    block_group: np.ndarray
    """Block -> its group's number (groups counted over all orders)."""

    @property
    def variables(self) -> int:
        return int(self.cost.size)

    @property
    def constraints(self) -> int:
        return int(self.rhs.size)


def build(orders: Sequence[SourcingOrder], network: Network, profiles: ProfileSet) -> FullModel:
    """The full hindsight model over the snapshot ``network`` (not changed)."""
    model = _Builder()
    units: dict[int, tuple[int, int, int, int]] = {}
    stock: dict[tuple[int, str], list[int]] = {}
    capacity: dict[int, list[int]] = {}
    last_unit: dict[tuple[int, str], tuple[float, float]] = {}
    all_groups = []
    block_at: dict[tuple[int, int, int], int] = {}
    block_group: list[int] = []
    group_number = 0
    backorders: list[int] = []
    for o, order in enumerate(orders):
        groups = prepare(order, network, profiles, explain=False)
        all_groups.append(groups)
        for g, group in enumerate(groups):
            profile = group.profile
            if profile.split_policy is SplitPolicy.MINIMISE:
                raise NotImplementedError("the hindsight model prices allow and never policies")
            most = 1 if profile.split_policy is SplitPolicy.NEVER else profile.max_shipments
            costs = group.costs
            per_line = []
            for i, ctx in enumerate(group.contexts):
                where = np.flatnonzero(group.masks[i] & (ctx.atp > 0))
                bound = np.minimum(ctx.atp[where], ctx.line.quantity)
                per_line.append((where, bound))
            used = sorted({int(loc) for where, _ in per_line for loc in where})
            single = len(group.contexts) == 1 and group.contexts[0].line.quantity == 1
            ys: dict[int, int] = {}
            blocks: dict[int, int] = {}
            if not single:  # one binary per location; a single unit needs none (x is it)
                for loc in used:
                    blocks[loc] = model.new_block()
                    price = float(costs.fixed[loc])
                    ys[loc] = model.variable(price, 1.0, integer=True, block=blocks[loc])
            for i, ctx in enumerate(group.contexts):
                where, bound = per_line[i]
                terms = []
                for loc, most_units in zip(where.tolist(), bound.tolist(), strict=True):
                    price = float(costs.unit[i][loc]) + (float(costs.fixed[loc]) if single else 0.0)
                    block = model.new_block() if single else blocks[loc]
                    block_at[(o, g, loc)] = block
                    x = model.variable(price, most_units, integer=True, block=block)
                    units[x] = (o, g, loc, i)
                    terms.append((x, 1.0))
                    if not single:
                        model.row([(x, 1.0), (ys[loc], -most_units)], 0.0, link=(x, ys[loc]))
                    key = (loc, ctx.line.sku)
                    stock.setdefault(key, []).append(x)
                    capacity.setdefault(loc, []).append(x)
                    if costs.last_unit[loc] > 0:
                        rule = (float(costs.last_unit[loc]), float(profile.protected_units))
                        if last_unit.setdefault(key, rule) != rule:
                            raise NotImplementedError("one last-unit rule per location and SKU")
                quantity = float(ctx.line.quantity)
                b = model.variable(float(profile.backorder_penalty), quantity, integer=False)
                backorders.append(b)
                model.row([*terms, (b, 1.0)], quantity, equal=True)
            block_group.extend([group_number] * (model.blocks - len(block_group)))
            group_number += 1
            if len(ys) > most:
                model.row([(y, 1.0) for y in ys.values()], float(most))
            if costs.extra_shipment > 0 and len(ys) > 1 and most > 1:
                e = model.variable(
                    costs.extra_shipment, float(min(len(ys), most) - 1), integer=False
                )
                model.row([*((y, 1.0) for y in ys.values()), (e, -1.0)], 1.0)
    for (loc, sku), xs in stock.items():
        atp = float(network.atp(sku)[loc])
        reach = sum(model.upper[x] for x in xs)
        if reach > atp:
            model.row([(x, 1.0) for x in xs], atp)
        if (loc, sku) in last_unit:
            price, protected = last_unit[(loc, sku)]
            threshold = max(0.0, atp - protected)
            if min(reach, atp) > threshold:
                z = model.variable(price, min(reach, atp) - threshold, integer=False)
                model.row([*((x, 1.0) for x in xs), (z, -1.0)], threshold)
    for loc, xs in capacity.items():
        room = float(network.capacity[loc])
        if math.isfinite(room) and room < sum(model.upper[x] for x in xs):
            model.row([(x, 1.0) for x in xs], room)
    matrix = csr_array(
        (model.values, (model.rows, model.cols)), shape=(len(model.rhs), len(model.cost))
    )
    return FullModel(
        cost=np.array(model.cost),
        upper=np.array(model.upper),
        integer=np.array(model.integer),
        matrix=matrix,
        rhs=np.array(model.rhs),
        equal=np.array(model.equal, dtype=bool),
        block=np.array(model.block),
        link=np.array(model.link),
        link_y=np.array(model.link_y),
        backorder=np.isin(np.arange(len(model.cost)), backorders),
        units=units,
        groups=all_groups,
        block_at=block_at,
        block_group=np.array(block_group),
    )


def lagrangian_bound(
    model: FullModel, duals: np.ndarray, present: np.ndarray
) -> tuple[float, np.ndarray]:
    """A proven lower bound on every plan of ``model`` from row multipliers, and the reduced
    costs.

    Every row but the lines' demand rows (``sum x + b = quantity``) is moved into the
    objective with its multiplier (any multipliers serve: ``<= 0`` on ``<=`` rows is
    enforced, which makes the moved terms non-positive for every plan); what is left splits
    into one problem per line (fill its quantity from its cheapest columns, backorder priced
    in) and a box per other column, each solved exactly. A shipment row the restricted LP did
    not have (``present`` False) gets the multiplier that spreads the shipment's cost over the
    units it carries.
    With the LP's optimal duals this is the LP bound; before the column generation has
    converged it is still valid, and the demand rows kept make it far from trivial."""
    v = np.where(model.equal, 0.0, np.minimum(duals, 0.0))
    reduced = model.cost - model.matrix.T @ v
    idle = (model.link >= 0) & ~present
    shipment = model.link_y[idle]
    lines = np.bincount(model.link_y[model.link >= 0], minlength=model.variables)
    share = np.maximum(reduced[shipment], 0.0) / lines[shipment]
    v[idle] = -share / model.upper[model.link[idle]]
    reduced = model.cost - model.matrix.T @ v
    demand = csr_array(model.matrix[model.equal])
    in_demand = np.zeros(model.variables, dtype=bool)
    in_demand[demand.indices] = True
    bound = float(v @ model.rhs) + float(
        np.minimum(0.0, reduced[~in_demand] * model.upper[~in_demand]).sum()
    )
    row = np.repeat(np.arange(demand.shape[0]), np.diff(demand.indptr))
    column = demand.indices
    order = np.lexsort((reduced[column], row))
    row, column = row[order], column[order]
    upper = model.upper[column]
    before = np.cumsum(upper) - upper
    first = np.searchsorted(row, row, side="left")
    taken_before = before - before[first]
    quantity = model.rhs[model.equal][row]
    take = np.clip(quantity - taken_before, 0.0, upper)
    bound += float((reduced[column] * take).sum())
    # every row moved, demand rows too, with the restricted LP's duals: at the LP optimum
    # this is the LP bound itself
    w = np.where(model.equal, duals, np.minimum(duals, 0.0))
    everything = model.cost - model.matrix.T @ w
    idle = (model.link >= 0) & ~present
    w[idle] = np.minimum(0.0, everything[model.link[idle]])
    everything = model.cost - model.matrix.T @ w
    dualized = float(w @ model.rhs + np.minimum(0.0, everything * model.upper).sum())
    return max(bound, dualized), reduced


def _block_prices(model: FullModel, duals: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Each block's most negative reduced cost (all its columns at their best bound) at the
    restricted LP's duals: a shipment row it lacks charges the shipment for its units."""
    v = np.where(model.equal, duals, np.minimum(duals, 0.0))
    reduced = model.cost - model.matrix.T @ v
    idle = (model.link >= 0) & ~present
    v[idle] = np.minimum(0.0, reduced[model.link[idle]])
    reduced = model.cost - model.matrix.T @ v
    gain = np.minimum(0.0, reduced * model.upper)
    inside = model.block >= 0
    return np.bincount(model.block[inside], weights=gain[inside], minlength=model.block_group.size)


@dataclass
class LpResult:
    objective: float
    """Of the restricted LP (an upper bound on the full LP's)."""
    bound: float
    """Proven lower bound on the full model (Lagrangian, see ``lagrangian_bound``)."""
    active: np.ndarray
    """Columns of the last restricted LP."""
    reduced: np.ndarray
    solution: np.ndarray
    """The last restricted LP's optimum, over every column (0 outside ``active``)."""
    rounds: int
    seconds: float


def _columns(model: FullModel, blocks: np.ndarray) -> np.ndarray:
    """The columns of ``blocks``, with the backorder columns and the split and last-unit
    columns of the rows they touch."""
    keep = np.zeros(model.block_group.size, dtype=bool)
    keep[blocks] = True
    inside = model.block >= 0
    chosen = np.zeros(model.variables, dtype=bool)
    chosen[inside] = keep[model.block[inside]]
    rows = (model.matrix @ chosen.astype(np.float64)) != 0
    touching = (model.matrix.T @ rows.astype(np.float64)) != 0
    chosen |= ~inside & (touching | model.backorder)
    return np.flatnonzero(chosen)


def _restricted_lp(
    model: FullModel, active: np.ndarray, time_limit: float
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray] | None:
    columns = csc_array(model.matrix)[:, active]
    rows = np.flatnonzero(np.diff(csr_array(columns).indptr) > 0)
    sub = csr_array(columns)[rows]
    equal = model.equal[rows]
    result = linprog(
        model.cost[active],
        A_ub=sub[~equal],
        b_ub=model.rhs[rows][~equal],
        A_eq=sub[equal],
        b_eq=model.rhs[rows][equal],
        bounds=np.stack([np.zeros(active.size), model.upper[active]], axis=1),
        method=LP_METHOD,
        options={"time_limit": max(1.0, time_limit)},
    )
    if result.status != 0:
        return None
    duals = np.zeros(model.constraints)
    duals[rows[~equal]] = result.ineqlin.marginals
    duals[rows[equal]] = result.eqlin.marginals
    present = np.zeros(model.constraints, dtype=bool)
    present[rows] = True
    return float(result.fun), duals, present, np.asarray(result.x)


def solve_relaxation(
    model: FullModel,
    start: np.ndarray,
    *,
    time_limit: float,
    per_group: int = 4,
    tolerance: float = 1e-5,
) -> LpResult:
    """The LP relaxation of the full model by column generation from the blocks ``start``.

    Each round solves the LP over the active blocks, prices every block of the full model with
    its duals and adds each group's ``per_group`` most negative ones. The Lagrangian bound of
    each round's duals is valid whether or not the generation has converged; at convergence
    it equals the full LP's optimum."""
    started = time.perf_counter()
    blocks = np.unique(start)
    best = -math.inf
    reduced = model.cost.copy()
    solution = np.zeros(model.variables)
    objective = math.inf
    rounds = 0
    active = _columns(model, blocks)
    while True:
        left = time_limit - (time.perf_counter() - started)
        if left <= 0:
            break
        solved = _restricted_lp(model, active, left)
        if solved is None:
            break
        rounds += 1
        objective, duals, present, values = solved
        solution = np.zeros(model.variables)
        solution[active] = values
        bound, reduced = lagrangian_bound(model, duals, present)
        best = max(best, bound)
        if objective - bound <= tolerance * abs(objective):
            break
        price = _block_prices(model, duals, present)
        price[blocks] = 0.0
        candidates = np.flatnonzero(price < -1e-9)
        if candidates.size == 0:
            break
        order = np.lexsort((price[candidates], model.block_group[candidates]))
        candidates = candidates[order]
        groups = model.block_group[candidates]
        first = np.searchsorted(groups, groups, side="left")
        rank = np.arange(candidates.size) - first
        blocks = np.union1d(blocks, candidates[rank < per_group])
        active = _columns(model, blocks)
    return LpResult(
        objective, best, active, reduced, solution, rounds, time.perf_counter() - started
    )


@dataclass
class MilpResult:
    status: str
    objective: float | None
    bound: float | None
    """The solver's dual bound on the restricted MILP."""
    values: np.ndarray | None
    columns: np.ndarray
    seconds: float


def solve_restricted(
    model: FullModel,
    columns: np.ndarray,
    *,
    time_limit: float,
    gap: float,
    fixed: np.ndarray | None = None,
) -> MilpResult:
    """The MILP over ``columns`` only; ``fixed`` (values per column of the model, NaN: free)
    pins some of them."""
    started = time.perf_counter()
    lower_bounds = np.zeros(columns.size)
    upper_bounds = model.upper[columns].copy()
    if fixed is not None:
        pinned = ~np.isnan(fixed[columns])
        lower_bounds[pinned] = fixed[columns][pinned]
        upper_bounds[pinned] = fixed[columns][pinned]
    sub = csr_array(csc_array(model.matrix)[:, columns])
    rows = np.flatnonzero(np.diff(sub.indptr) > 0)
    sub = sub[rows]
    rhs = model.rhs[rows]
    lower = np.where(model.equal[rows], rhs, -np.inf)
    result = milp(
        model.cost[columns],
        integrality=model.integer[columns],
        bounds=Bounds(lower_bounds, upper_bounds),
        constraints=LinearConstraint(sub, lower, rhs),
        options={"time_limit": max(1.0, time_limit), "mip_rel_gap": gap},
    )
    status = {0: "optimal", 1: "time_limit", 2: "infeasible", 3: "unbounded"}.get(
        result.status, "failed"
    )
    bound = getattr(result, "mip_dual_bound", None)
    return MilpResult(
        status,
        None if result.x is None else float(result.fun),
        None if bound is None or not math.isfinite(bound) else float(bound),
        None if result.x is None else np.asarray(result.x),
        columns,
        time.perf_counter() - started,
    )


def cheapest_blocks(model: FullModel, per_group: int = 6) -> np.ndarray:
    """Each group's blocks that save the most against backordering, with no stock priced."""
    demand = csr_array(model.matrix[model.equal])
    penalty = np.zeros(model.constraints)
    # a demand row's dual: the price of the line's backorder column
    backorder_price = np.zeros(demand.shape[0])
    rows = np.repeat(np.arange(demand.shape[0]), np.diff(demand.indptr))
    is_b = model.backorder[demand.indices]
    backorder_price[rows[is_b]] = model.cost[demand.indices[is_b]]
    penalty[np.flatnonzero(model.equal)] = backorder_price
    price = _block_prices(model, penalty, np.zeros(model.constraints, dtype=bool))
    candidates = np.flatnonzero(price < 0)
    order = np.lexsort((price[candidates], model.block_group[candidates]))
    candidates = candidates[order]
    groups = model.block_group[candidates]
    rank = np.arange(candidates.size) - np.searchsorted(groups, groups, side="left")
    return candidates[rank < per_group]


def blocks_of(model: FullModel, plans: Sequence[SourcingPlan], network: Network) -> np.ndarray:
    """The blocks a set of plans uses (one plan per order, in the model's order)."""
    found = []
    for o, plan in enumerate(plans):
        groups = model.groups[o]
        line_group = {}
        for g, group in enumerate(groups):
            for ctx in group.contexts:
                line_group[ctx.line.line_id] = g
        for allocation in plan.allocations:
            key = (o, line_group[allocation.line_id], network.index[allocation.location])
            block = model.block_at.get(key)
            if block is not None:
                found.append(block)
    return np.array(sorted(set(found)), dtype=np.int64)


def plans_from(
    model: FullModel,
    orders: Sequence[SourcingOrder],
    values: np.ndarray,
    columns: np.ndarray,
    network: Network,
) -> list[SourcingPlan]:
    """Commit a MILP solution, order by order, on ``network`` (priced as every policy is)."""
    choices: list[list[Choice]] = [[{} for _ in groups] for groups in model.groups]
    for column, value in zip(columns.tolist(), values.tolist(), strict=True):
        units = round(value)
        if units <= 0 or column not in model.units:
            continue
        o, g, loc, i = model.units[column]
        choices[o][g].setdefault(loc, {})[i] = units
    return [
        commit(order, model.groups[o], choices[o], network, planner="hindsight", explain=False)
        for o, order in enumerate(orders)
    ]


def _pinned(model: FullModel, value: np.ndarray, *, widen: bool) -> np.ndarray:
    """Values to pin (NaN: free): every block whose LP values are integral, and with
    ``widen`` none of the groups that share a stock row with a fractional block."""
    off = (model.integer == 1) & (np.abs(value - np.round(value)) > 1e-6) & (model.block >= 0)
    fractional = np.zeros(model.block_group.size, dtype=bool)
    fractional[model.block[off]] = True
    inside = model.block >= 0
    pinned = inside.copy()
    pinned[inside] = ~fractional[model.block[inside]]
    if widen:
        loose = np.zeros(model.variables, dtype=bool)
        loose[inside] = fractional[model.block[inside]]
        stock_rows = csr_array(model.matrix[(model.link < 0) & ~model.equal])
        touched = (stock_rows @ (loose & (value > 1e-9)).astype(np.float64)) > 0
        near = csr_array(stock_rows[np.flatnonzero(touched)]).indices
        near = near[(model.block[near] >= 0) & (value[near] > 1e-9)]
        free_groups = np.zeros(model.block_group.max() + 1, dtype=bool)
        free_groups[model.block_group[model.block[loose]]] = True
        free_groups[model.block_group[model.block[near]]] = True
        pinned[inside] = ~free_groups[model.block_group[model.block[inside]]]
    return np.where(pinned, np.round(value), np.nan)


def solve(
    orders: Sequence[SourcingOrder],
    network: Network,
    profiles: ProfileSet,
    incumbent: Sequence[SourcingPlan],
    *,
    lp_seconds: float,
    milp_seconds: float,
    gap: float = 1e-4,
) -> tuple[list[SourcingPlan] | None, dict[str, Any]]:
    """The hindsight plan (None when the MILP found nothing better than ``incumbent``, the best
    plan of the other policies) and the figures: the proven lower bound and how it was got."""
    started = time.perf_counter()
    model = build(orders, network, profiles)
    built = time.perf_counter() - started
    start = np.union1d(blocks_of(model, incumbent, network), cheapest_blocks(model))
    lp = solve_relaxation(model, start, time_limit=lp_seconds)
    columns = lp.active
    # the LP optimum is nearly integral: pin its integral blocks and search the others; then
    # free the groups around the fractional blocks too (those competing for the same stock)
    milp_started = time.perf_counter()
    plans = None
    best_value = math.inf
    statuses = []
    for widen in (False, True):
        left = milp_seconds - (time.perf_counter() - milp_started)
        if left < 1.0:
            break
        fixed = _pinned(model, lp.solution, widen=widen)
        restricted = solve_restricted(model, columns, time_limit=left, gap=gap, fixed=fixed)
        statuses.append(restricted.status)
        if restricted.values is None:
            continue
        found = plans_from(model, orders, restricted.values, columns, network.copy())
        value = float(sum(plan.objective for plan in found))
        if value < best_value:
            plans, best_value = found, value
    facts = {
        "variables": model.variables,
        "constraints": model.constraints,
        "integer_variables": int(model.integer.sum()),
        "build_seconds": round(built, 3),
        "lp_rounds": lp.rounds,
        "lp_seconds": round(lp.seconds, 3),
        "lp_restricted_objective": lp.objective,
        "lp_bound": lp.bound,
        "milp_variables": int(columns.size),
        "milp_status": "/".join(statuses),
        "milp_objective": None if plans is None else best_value,
        "milp_seconds": round(time.perf_counter() - milp_started, 3),
    }
    return plans, facts
