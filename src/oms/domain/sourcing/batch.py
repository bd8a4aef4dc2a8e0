"""Batch (wave) sourcing: a set of orders planned together as one mixed-integer programme.

HiGHS (through ``scipy.optimize.milp``) minimises the total cost of the wave, over the same cost
model as the greedy planner, under every location's ATP and remaining capacity and every
profile's split policy. The greedy plan of the wave is always computed too and kept when the
solver finds nothing better within its time limit, so a wave is never worse than greedy.

Each group of lines may only use its ``candidate_limit`` cheapest locations (by the cost of
serving the group alone) plus those the greedy plan chose; that keeps 1,000 orders x 500
locations solvable in seconds, and the reported bound is the bound of that restricted model.
Small waves (15 minutes of orders) look at three times as many candidates: with scarce stock,
the cheapest locations run out and the better plan often uses the second-best ones.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array

from oms.domain.sourcing.model import BoolArray, Network, SourcingOrder
from oms.domain.sourcing.plan import SourcingPlan
from oms.domain.sourcing.planner import Choice, Group, commit, greedy_choice, prepare
from oms.domain.sourcing.profiles import ProfileSet, SplitPolicy

CANDIDATES = 8
"""Candidate locations per group of a large wave."""
WIDE_CANDIDATES = 24
WIDE_WAVE_ORDERS = 250
"""Waves of at most this many orders consider ``WIDE_CANDIDATES`` locations per group."""
MINIMISE_SHIPMENT_WEIGHT = 1000.0
"""Objective weight of a shipment under the ``minimise`` policy: shipments first, then cost."""


@dataclass(frozen=True, slots=True)
class WaveStatistics:
    orders: int
    variables: int
    constraints: int
    solver_status: str
    solve_seconds: float
    total_seconds: float
    greedy_objective: Decimal
    batch_objective: Decimal | None
    """Cost plus backorder penalties of the MILP plan (None when the solver found none)."""
    chosen: str
    """"batch" or "greedy" (the greedy plan was at least as good, or the solver failed)."""
    mip_gap: float | None
    dual_bound: float | None
    """The solver's proven lower bound on the restricted model's objective."""


@dataclass(frozen=True, slots=True)
class WaveResult:
    plans: tuple[SourcingPlan, ...]
    statistics: WaveStatistics


class _Model:
    def __init__(self) -> None:
        self.cost: list[float] = []
        self.upper: list[float] = []
        self.integer: list[int] = []
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.values: list[float] = []
        self.lower_rhs: list[float] = []
        self.upper_rhs: list[float] = []

    def variable(self, cost: float, upper: float, *, integer: bool) -> int:
        self.cost.append(cost)
        self.upper.append(upper)
        self.integer.append(1 if integer else 0)
        return len(self.cost) - 1

    def row(self, terms: Sequence[tuple[int, float]], lower: float, upper: float) -> None:
        index = len(self.lower_rhs)
        for column, value in terms:
            self.rows.append(index)
            self.cols.append(column)
            self.values.append(value)
        self.lower_rhs.append(lower)
        self.upper_rhs.append(upper)


def _group_columns(
    group: Group, network: Network, limit: int, must: set[int]
) -> list[tuple[int, list[tuple[int, float]]]]:
    """The locations a group may use, each with (line position, max units) pairs."""
    masks = group.masks
    q = group.quantities
    usable: BoolArray = np.asarray(masks.any(axis=0), dtype=np.bool_)
    index = np.flatnonzero(usable)
    if index.size == 0:
        return []
    avail = np.stack(
        [
            np.where(group.masks[i][index], np.minimum(ctx.atp[index], q[i]), 0.0)
            for i, ctx in enumerate(group.contexts)
        ]
    )
    served = avail.sum(axis=0)
    costs = group.costs
    alone = costs.fixed[index] + sum(
        costs.decision_unit[i][index] * avail[i] for i in range(len(q))
    )
    # cost per unit served, so that a location with little stock does not look cheap
    per_unit = np.where(served > 0, alone / np.maximum(served, 1.0), math.inf)
    order = np.argsort(per_unit, kind="stable")
    picked = [int(index[k]) for k in order[:limit] if served[k] > 0]
    # also the locations that can serve everything at once (one parcel), cheapest first
    full = np.flatnonzero((avail >= q[:, None]).all(axis=0))
    full_sorted = full[np.argsort(per_unit[full], kind="stable")]
    for k in full_sorted[: max(2, limit // 2)]:
        if int(index[k]) not in picked:
            picked.append(int(index[k]))
    for location in must:
        if location not in picked and usable[location]:
            picked.append(location)
    result = []
    for location in picked:
        pairs = [
            (i, float(min(q[i], group.contexts[i].atp[location])))
            for i in range(len(q))
            if group.masks[i][location] and group.contexts[i].atp[location] > 0
        ]
        if pairs:
            result.append((location, pairs))
    return result


def plan_wave(
    orders: Sequence[SourcingOrder],
    network: Network,
    profiles: ProfileSet,
    *,
    time_limit_seconds: float = 5.0,
    candidate_limit: int | None = None,
    explain: bool = True,
    mip_relative_gap: float = 1e-4,
    integer_units: bool = True,
    relaxation: bool = False,
) -> WaveResult:
    """Source ``orders`` together; their units are taken from ``network``.

    ``integer_units=False`` leaves unit quantities continuous (shipments stay binary), which
    solves large waves much faster; fractional units are rounded when the plan is committed
    and whatever rounding cannot serve is backordered, so the plan stays feasible.

    ``relaxation=True`` solves only the linear relaxation (nothing integer): its optimum is a
    lower bound on the wave's cost, reported as ``dual_bound``; the plans are then greedy's.

    ``candidate_limit``: the cheapest locations each group may use; by default
    ``WIDE_CANDIDATES`` for waves of up to ``WIDE_WAVE_ORDERS`` orders (a 15-minute wave: the
    programme stays small, and with scarce stock the second-best sources matter) and
    ``CANDIDATES`` for larger ones.
    """
    started = time.perf_counter()
    if candidate_limit is None:
        candidate_limit = WIDE_CANDIDATES if len(orders) <= WIDE_WAVE_ORDERS else CANDIDATES
    greedy_network = network.copy()
    greedy_groups: list[list[Group]] = []
    greedy_choices: list[list[Choice]] = []
    greedy_plans = []
    for order in orders:
        groups = prepare(order, greedy_network, profiles, explain=explain)
        choices = [greedy_choice(group, greedy_network) for group in groups]
        greedy_groups.append(groups)
        greedy_choices.append(choices)
        greedy_plans.append(
            commit(order, groups, choices, greedy_network, planner="greedy", explain=explain)
        )
    greedy_objective = sum((plan.decision_objective for plan in greedy_plans), Decimal(0))

    model = _Model()
    all_groups: list[list[Group]] = []
    x_vars: list[list[dict[int, dict[int, int]]]] = []  # order -> group -> loc -> line -> var
    atp_rows: dict[tuple[int, str], list[int]] = {}
    capacity_rows: dict[int, list[int]] = {}
    last_unit_price: dict[tuple[int, str], float] = {}
    protected_units: dict[tuple[int, str], float] = {}
    for o, order in enumerate(orders):
        groups = prepare(order, network, profiles, explain=explain)
        all_groups.append(groups)
        order_vars: list[dict[int, dict[int, int]]] = []
        for g, group in enumerate(groups):
            must = set(greedy_choices[o][g])
            columns = _group_columns(group, network, candidate_limit, must)
            costs = group.costs
            policy = group.profile.split_policy
            shipment_vars: list[int] = []
            group_vars: dict[int, dict[int, int]] = {}
            line_x: dict[int, list[int]] = {}
            for location, pairs in columns:
                weight = MINIMISE_SHIPMENT_WEIGHT if policy is SplitPolicy.MINIMISE else 0.0
                y = model.variable(float(costs.fixed[location]) + weight, 1.0, integer=True)
                shipment_vars.append(y)
                group_vars[location] = {}
                for i, most in pairs:
                    ctx = group.contexts[i]
                    x = model.variable(
                        float(costs.decision_unit[i][location]), most, integer=integer_units
                    )
                    group_vars[location][i] = x
                    line_x.setdefault(i, []).append(x)
                    model.row([(x, 1.0), (y, -most)], -math.inf, 0.0)
                    key = (location, ctx.line.sku)
                    atp_rows.setdefault(key, []).append(x)
                    capacity_rows.setdefault(location, []).append(x)
                    if costs.last_unit[location] > 0:
                        last_unit_price[key] = max(
                            last_unit_price.get(key, 0.0), float(costs.last_unit[location])
                        )
                        protected_units[key] = float(group.profile.protected_units)
            for i, ctx in enumerate(group.contexts):
                b = model.variable(
                    float(group.profile.backorder_penalty), ctx.line.quantity, integer=False
                )
                row = [(x, 1.0) for x in line_x.get(i, [])] + [(b, 1.0)]
                model.row(row, float(ctx.line.quantity), float(ctx.line.quantity))
            if shipment_vars:
                if policy is SplitPolicy.NEVER:
                    model.row([(y, 1.0) for y in shipment_vars], -math.inf, 1.0)
                else:
                    limit = float(group.profile.max_shipments)
                    model.row([(y, 1.0) for y in shipment_vars], -math.inf, limit)
                    if costs.extra_shipment > 0 and len(shipment_vars) > 1:
                        e = model.variable(costs.extra_shipment, math.inf, integer=False)
                        model.row([(y, 1.0) for y in shipment_vars] + [(e, -1.0)], -math.inf, 1.0)
            order_vars.append(group_vars)
        x_vars.append(order_vars)
    for (location, sku), xs in atp_rows.items():
        atp = float(network.atp(sku)[location])
        model.row([(x, 1.0) for x in xs], -math.inf, atp)
        price = last_unit_price.get((location, sku))
        if price:
            threshold = max(0.0, atp - protected_units[(location, sku)])
            if threshold < sum(model.upper[x] for x in xs):
                z = model.variable(price, math.inf, integer=False)
                model.row([(x, 1.0) for x in xs] + [(z, -1.0)], -math.inf, threshold)
    for location, xs in capacity_rows.items():
        room = float(network.capacity[location])
        if math.isfinite(room) and room < sum(model.upper[x] for x in xs):
            model.row([(x, 1.0) for x in xs], -math.inf, room)

    variables = len(model.cost)
    constraints = len(model.lower_rhs)
    solve_started = time.perf_counter()
    status = "empty"
    batch_plans: list[SourcingPlan] | None = None
    batch_objective: Decimal | None = None
    gap: float | None = None
    bound: float | None = None
    if variables:
        matrix = csr_array((model.values, (model.rows, model.cols)), shape=(constraints, variables))
        remaining = max(0.1, time_limit_seconds - (solve_started - started))
        result = milp(
            np.array(model.cost),
            integrality=np.zeros(variables) if relaxation else np.array(model.integer),
            bounds=Bounds(np.zeros(variables), np.array(model.upper)),
            constraints=LinearConstraint(matrix, model.lower_rhs, model.upper_rhs),
            options={"time_limit": remaining, "mip_rel_gap": mip_relative_gap},
        )
        status = {0: "optimal", 1: "time_limit", 2: "infeasible", 3: "unbounded"}.get(
            result.status, "failed"
        )
        gap = getattr(result, "mip_gap", None)
        bound = getattr(result, "mip_dual_bound", None)
        if relaxation:
            bound = float(result.fun) if result.status == 0 else None
            gap = None
        if result.x is not None and not relaxation:
            values = np.rint(result.x)
            trial = network.copy()
            batch_plans = []
            for o, order in enumerate(orders):
                wave_choices: list[Choice] = []
                for group_vars in x_vars[o]:
                    choice: Choice = {}
                    for location, lines in group_vars.items():
                        units = {i: int(values[x]) for i, x in lines.items() if values[x] > 0}
                        if units:
                            choice[location] = units
                    wave_choices.append(choice)
                batch_plans.append(
                    commit(
                        order, all_groups[o], wave_choices, trial, planner="batch", explain=explain
                    )
                )
            batch_objective = sum((plan.decision_objective for plan in batch_plans), Decimal(0))
            if batch_objective < greedy_objective:
                network.adopt(trial)
            else:
                batch_plans = None
    solve_seconds = time.perf_counter() - solve_started
    if batch_plans is None:
        network.adopt(greedy_network)
        chosen = "greedy"
        plans = [_fallback(plan, status) for plan in greedy_plans]
    else:
        chosen = "batch"
        plans = batch_plans
    return WaveResult(
        plans=tuple(plans),
        statistics=WaveStatistics(
            orders=len(orders),
            variables=variables,
            constraints=constraints,
            solver_status=status,
            solve_seconds=solve_seconds,
            total_seconds=time.perf_counter() - started,
            greedy_objective=greedy_objective,
            batch_objective=batch_objective,
            chosen=chosen,
            mip_gap=None if gap is None or not math.isfinite(gap) else float(gap),
            dual_bound=None if bound is None or not math.isfinite(bound) else float(bound),
        ),
    )


def _fallback(plan: SourcingPlan, status: str) -> SourcingPlan:
    return replace(
        plan,
        planner="batch-fallback",
        notes=(
            *plan.notes,
            f"the wave optimisation ({status}) found no cheaper plan: the greedy plan is kept",
        ),
    )
