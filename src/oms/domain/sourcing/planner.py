"""The real-time (greedy) planner, and the steps every planner shares.

``prepare`` runs the filters and the cost terms for each group of lines (one order's lines that
go to one place under one profile); a planner then chooses, per group, which locations send how
many units; ``commit`` takes those units from the working snapshot, prices the shipments with
the same cost model and writes the explanation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from oms.domain.sourcing.costs import (
    OPPORTUNITY_TERMS,
    GroupContext,
    GroupCosts,
    group_costs,
    term_breakdown,
    zone_table,
)
from oms.domain.sourcing.filters import (
    Exclusion,
    LineContext,
    SharedFilters,
    excluded_counts,
    first_reasons,
    group_candidates,
    shared_filters,
)
from oms.domain.sourcing.model import (
    COLLECTED_AT_LOCATION,
    BoolArray,
    DeliveryMethod,
    FloatArray,
    GeoPoint,
    IntArray,
    Network,
    SourcingLine,
    SourcingOrder,
)
from oms.domain.sourcing.plan import (
    Allocation,
    CandidateCost,
    ExcludedLocation,
    LineExplanation,
    Shipment,
    SourcingPlan,
    money,
)
from oms.domain.sourcing.profiles import Profile, ProfileSet, SplitPolicy

Choice = dict[int, dict[int, int]]
"""location index -> {position of the line in its group -> units}."""

EXPLAINED_CANDIDATES = 8
EXPLAINED_EXCLUSIONS = 12


@dataclass(slots=True)
class Group:
    profile: Profile
    rule: str | None
    positions: list[int]
    """Positions of the group's lines in the order."""
    contexts: list[LineContext]
    masks: BoolArray
    """Each line's candidate locations (lines x locations)."""
    exclusions: list[list[tuple[str, Exclusion]]]
    costs: GroupCosts
    ship_alone: bool
    atp: FloatArray
    """Each line's ATP when the group was prepared (lines x locations; ``contexts[i].atp`` is
    row i)."""

    @property
    def quantities(self) -> FloatArray:
        return np.array([ctx.line.quantity for ctx in self.contexts], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a group's parcels go, seen from every location: what its lines share."""

    distance_km: FloatArray
    zone: IntArray
    late_days: FloatArray
    known: bool


def _place(order: SourcingOrder, line: SourcingLine, profile: Profile, network: Network) -> _Place:
    destination: GeoPoint | None = line.destination
    known = True
    if line.delivery_method in COLLECTED_AT_LOCATION or (
        line.delivery_method is DeliveryMethod.SHIP_TO_STORE
    ):
        index = network.index.get(line.pickup_location or "")
        if index is None:
            known = False
        else:
            destination = network.locations[index].point
    if destination is None:
        distance = np.full(network.size, math.inf)
        known = False
    else:
        distance = network.distance_km(destination)
    zones = zone_table(profile.zones)
    limits, transit = zones.up_to_km, zones.transit_days
    zone: IntArray = np.minimum(
        np.searchsorted(limits, distance, side="left"), len(limits) - 1
    ).astype(np.int64)
    placed_at = order.placed_at
    hours = placed_at.hour + placed_at.minute / 60.0
    ready_offset = (hours + network.pick_hours > network.cut_off_hour).astype(np.float64)
    if line.delivery_method in COLLECTED_AT_LOCATION:
        arrival = ready_offset
    elif line.delivery_method is DeliveryMethod.SHIP_TO_STORE:
        arrival = ready_offset + transit[zone] + 1.0  # the store receives, then calls the customer
    else:
        arrival = ready_offset + transit[zone]
    if order.promise_on is None:
        late = np.zeros(network.size, dtype=np.float64)
    else:
        allowed = float((order.promise_on - placed_at.date()).days)
        late = np.maximum(arrival - allowed, 0.0)
    return _Place(distance, zone, late, known)


def _place_key(line: SourcingLine, profile: Profile) -> tuple[object, ...]:
    """What :func:`_place` reads of a line and its profile (the order being the same)."""
    method = line.delivery_method
    if method in COLLECTED_AT_LOCATION:
        arrival = "collected"
    elif method is DeliveryMethod.SHIP_TO_STORE:
        arrival = "transfer"
    else:
        arrival = "shipped"
    pickup = line.pickup_location if arrival != "shipped" else None
    # the zones of the profiles of one order, alive while it is prepared: their id is theirs
    return (arrival, pickup, line.destination, id(profile.zones))


def _line_contexts(
    order: SourcingOrder,
    lines: Sequence[SourcingLine],
    profile: Profile,
    network: Network,
    places: dict[tuple[object, ...], _Place],
) -> tuple[list[LineContext], FloatArray]:
    """The lines of one group and their ATP as one array. Where the parcel goes is worked out
    once per order for the lines that share it (``places``): a group's lines, and the groups of
    ship-alone or drop-ship lines going to the same address under the same shipping zones."""
    atps = np.array([network.atp(line.sku) for line in lines], dtype=np.float64)
    contexts = []
    for line, atp in zip(lines, atps, strict=True):
        key = _place_key(line, profile)
        place = places.get(key)
        if place is None:
            place = places[key] = _place(order, line, profile, network)
        contexts.append(
            LineContext(
                network=network,
                profile=profile,
                order=order,
                line=line,
                distance_km=place.distance_km,
                zone=place.zone,
                late_days=place.late_days,
                atp=atp,
                refused=order.refused.get(line.line_id, frozenset()),
                destination_known=place.known,
            )
        )
    return contexts, atps


def prepare(
    order: SourcingOrder, network: Network, profiles: ProfileSet, *, explain: bool = True
) -> list[Group]:
    """Filter and price every line of ``order`` against the snapshot, grouped by shipment."""
    keyed: dict[tuple[object, ...], list[tuple[int, SourcingLine, Profile, str | None]]] = {}
    for position, line in enumerate(order.lines):
        choice = profiles.choose(order, line)
        where: object = line.destination
        if line.delivery_method in COLLECTED_AT_LOCATION or (
            line.delivery_method is DeliveryMethod.SHIP_TO_STORE
        ):
            where = line.pickup_location
        key: tuple[object, ...] = (choice.profile.name, line.delivery_method, where)
        if line.ship_alone and line.delivery_method not in COLLECTED_AT_LOCATION:
            key = (*key, "ship_alone", line.line_id)
        keyed.setdefault(key, []).append((position, line, choice.profile, choice.rule))
    groups = []
    places: dict[tuple[object, ...], _Place] = {}
    filtered: dict[tuple[object, ...], SharedFilters] = {}
    for key, members in keyed.items():
        profile = members[0][2]
        lines = [line for _, line, _, _ in members]
        contexts, atp = _line_contexts(order, lines, profile, network, places)
        # groups that differ only by ship-alone lines share the filters that ignore the line
        shared_key = (id(profile), lines[0].delivery_method, *_place_key(lines[0], profile))
        shared = filtered.get(shared_key)
        if shared is None and contexts[0].destination_known:
            shared = filtered[shared_key] = shared_filters(contexts[0])
        masks, exclusions = group_candidates(contexts, shared, explain=explain)
        ship_alone = "ship_alone" in key
        costs = group_costs(
            GroupContext(contexts, ship_alone), explain=explain, masks=masks, atp=atp
        )
        groups.append(
            Group(
                profile=profile,
                rule=members[0][3],
                positions=[position for position, _, _, _ in members],
                contexts=contexts,
                masks=masks,
                exclusions=exclusions,
                costs=costs,
                ship_alone=ship_alone,
                atp=atp,
            )
        )
    return groups


# -- the greedy choice ------------------------------------------------------------------------


def _column_sums(values: FloatArray) -> FloatArray:
    """``values.sum(axis=0)``; the row itself for one line (a sum of one term is the term, up to
    the sign of a zero, which no caller can tell: each adds it to a non-negative-zero number or
    compares it)."""
    if values.shape[0] == 1:
        row: FloatArray = values[0]
        return row
    total: FloatArray = values.sum(axis=0)
    return total


class _Columns:
    """The group's arrays restricted to locations that are a candidate for at least one line."""

    def __init__(self, group: Group, network: Network) -> None:
        masks = group.masks
        any_line = masks[0] if len(masks) == 1 else masks.any(axis=0)
        self.index = np.flatnonzero(any_line)
        cols = self.index
        self.q = group.quantities
        # take(axis=1) is several times faster than [:, cols] on arrays this small
        self.avail = np.where(
            masks.take(cols, axis=1),
            np.minimum(group.atp.take(cols, axis=1), self.q[:, None]),
            0.0,
        )
        self.capacity = network.capacity[cols]
        costs = group.costs
        self.fixed = costs.fixed[cols]
        self.unit = costs.decision_unit.take(cols, axis=1)
        self.last_unit = costs.last_unit[cols]
        self.threshold = costs.threshold.take(cols, axis=1)
        self.extra = costs.extra_shipment
        self.backorder = float(group.profile.backorder_penalty)

    def cost(self, units: FloatArray, totals: FloatArray | None = None) -> FloatArray:
        """Cost per column of sending ``units`` (lines x columns) from it; ``totals``: its
        column sums, when the caller has them."""
        if totals is None:
            totals = _column_sums(units)
        over = np.maximum(units - self.threshold, 0.0)
        result: FloatArray = (
            np.where(totals > 0, self.fixed, 0.0)
            + _column_sums(units * self.unit)
            + _column_sums(over * self.last_unit)
        )
        return result

    def capped(self, units: FloatArray) -> FloatArray:
        return self.capped_totals(units)[0]

    def capped_totals(self, units: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``units`` cut down to each column's remaining capacity, and their column sums."""
        totals = _column_sums(units)
        over = totals > self.capacity
        if over.any():
            units = units.copy()
            units[:, over] = np.floor(units[:, over] * (self.capacity[over] / totals[over]))
            totals = _column_sums(units)
        return units, totals

    def full_cover(self, priced: FloatArray | None = None) -> tuple[int, float] | None:
        """The cheapest single location that can serve every line in full. ``priced``: the
        cost per column of units that are the whole lines wherever a column has them all."""
        total = self.q.sum()
        whole = self.avail >= self.q[:, None]
        full = (whole[0] if len(whole) == 1 else whole.all(axis=0)) & (self.capacity >= total)
        if not full.any():
            return None
        cost = priced
        if cost is None:
            cost = self.cost(np.broadcast_to(self.q[:, None], self.avail.shape))
        cost = np.where(full, cost, math.inf)
        best = int(np.argmin(cost))
        return best, float(cost[best])


def _as_choice(columns: _Columns, picks: list[tuple[int, FloatArray]]) -> Choice:
    choice: Choice = {}
    for column, units in picks:
        lines = {i: int(u) for i, u in enumerate(units) if u > 0}
        if lines:
            choice[int(columns.index[column])] = lines
    return choice


def _never(columns: _Columns) -> Choice:
    full = columns.full_cover()
    if full is not None:
        return _as_choice(columns, [(full[0], columns.q)])
    units = columns.capped(columns.avail)
    cover = units.sum(axis=0)
    if cover.max() <= 0:
        return {}
    cost = columns.cost(units)
    best = int(np.lexsort((cost, -cover))[0])
    return _as_choice(columns, [(best, units[:, best])])


def _minimise(columns: _Columns, max_shipments: int) -> Choice:
    """Fewest shipments first, then cost: whole lines by set cover; a line is split only when
    no location has all of it."""
    full = columns.full_cover()
    if full is not None:
        return _as_choice(columns, [(full[0], columns.q)])
    remaining = columns.q.copy()
    avail = columns.avail.copy()
    picks: list[tuple[int, FloatArray]] = []
    while remaining.sum() > 0 and len(picks) < max_shipments:
        whole = (avail >= remaining[:, None]) & (remaining[:, None] > 0)
        units = whole * remaining[:, None]
        cover = units.sum(axis=0)
        cover = np.where(cover <= columns.capacity, cover, 0.0)
        if cover.max() > 0:
            cost = columns.cost(units)
            best = int(np.lexsort((cost, -cover))[0])
            taken = units[:, best].copy()
            # the parcel goes anyway: top it up with parts of lines it cannot serve whole
            room = columns.capacity[best] - taken.sum()
            for i in np.flatnonzero((taken == 0) & (remaining > 0)):
                part = min(avail[i, best], remaining[i], max(room, 0.0))
                taken[i] = part
                room -= part
        else:  # no remaining line can be served whole: the biggest part of one line
            partial = np.minimum(np.minimum(avail, remaining[:, None]), columns.capacity[None, :])
            if partial.max() <= 0:
                break
            line, best = divmod(int(np.argmax(partial)), partial.shape[1])
            taken = np.zeros(len(remaining))
            taken[line] = partial[line, best]
        picks.append((best, taken))
        remaining -= taken
        avail[:, best] = 0.0
    return _as_choice(columns, picks)


def _allow(columns: _Columns, max_shipments: int) -> Choice:
    remaining = columns.q.copy()
    avail = columns.avail.copy()
    picks: list[tuple[int, FloatArray]] = []
    spent = 0.0
    full: tuple[int, float] | None = None
    priced = False
    while remaining.sum() > 0 and len(picks) < max_shipments:
        # at first nothing is taken: avail is at most each line's quantity already
        units, served = columns.capped_totals(
            np.minimum(avail, remaining[:, None]) if picks else columns.avail
        )
        if served.max() <= 0:
            break
        cost = columns.cost(units, served)
        if picks:
            cost = cost + columns.extra
        if not picks:
            # the first round prices whole lines wherever a location has them all: the full
            # cover's cost is there already
            full, priced = columns.full_cover(cost), True
        ratio = np.where(served > 0, cost / np.maximum(served, 1.0), math.inf)
        best = int(np.argmin(ratio))
        if ratio[best] >= columns.backorder:
            break
        picks.append((best, units[:, best].copy()))
        spent += float(cost[best])
        remaining -= units[:, best]
        avail[:, best] = 0.0
    spent += float(remaining.sum()) * columns.backorder
    if not priced:
        full = columns.full_cover()
    if full is not None and full[1] <= spent:
        return _as_choice(columns, [(full[0], columns.q)])
    return _as_choice(columns, picks)


def greedy_choice(group: Group, network: Network) -> Choice:
    columns = _Columns(group, network)
    if columns.index.size == 0:
        return {}
    policy = group.profile.split_policy
    if policy is SplitPolicy.NEVER:
        return _never(columns)
    if policy is SplitPolicy.MINIMISE:
        return _minimise(columns, group.profile.max_shipments)
    return _allow(columns, group.profile.max_shipments)


# -- committing a choice -----------------------------------------------------------------------


def commit(
    order: SourcingOrder,
    groups: Sequence[Group],
    choices: Sequence[Choice],
    network: Network,
    *,
    planner: str,
    explain: bool = True,
    notes: Sequence[str] = (),
) -> SourcingPlan:
    """Take the chosen units from ``network``, price them and explain the decision.

    Units that are no longer there (a plan made on an older snapshot) are backordered, never
    over-allocated.
    """
    allocations: list[Allocation] = []
    shipments: list[Shipment] = []
    backorders: dict[str, int] = {}
    terms_total: dict[str, float] = {}
    total = 0.0
    backorder_total = 0.0
    opportunity_total = 0.0
    explanation: list[LineExplanation] = []
    for group, choice in zip(groups, choices, strict=True):
        served = [0] * len(group.contexts)
        chosen: list[list[tuple[str, int]]] = [[] for _ in group.contexts]
        ordered = sorted(choice.items(), key=lambda item: -sum(item[1].values()))
        group_shipments = 0
        for location, lines in ordered:
            sent: dict[int, int] = {}
            last_units: dict[int, float] = {}
            for i, units in sorted(lines.items()):
                ctx = group.contexts[i]
                wanted = min(units, ctx.line.quantity - served[i])
                atp_now = network.atp(ctx.line.sku)
                room = network.capacity[location]
                possible = int(min(wanted, atp_now[location] if atp_now.size else 0, room))
                if possible <= 0:
                    continue
                threshold = max(0.0, float(atp_now[location]) - group.profile.protected_units)
                last_units[i] = max(0.0, possible - threshold)
                network.take(location, ctx.line.sku, possible)
                served[i] += possible
                sent[i] = possible
                chosen[i].append((network.codes[location], possible))
                allocations.append(
                    Allocation(ctx.line.line_id, ctx.line.sku, network.codes[location], possible)
                )
            if not sent:
                continue
            costs = group.costs
            extra_shipments = 1 if group_shipments > 0 else 0
            group_shipments += 1
            value = float(costs.fixed[location]) + costs.extra_shipment * extra_shipments
            value += sum(float(costs.unit[i][location]) * q for i, q in sent.items())
            value += sum(float(costs.last_unit[location]) * lu for lu in last_units.values())
            if costs.opportunity is not None:
                opportunity_total += sum(
                    float(costs.opportunity[i][location]) * q for i, q in sent.items()
                )
            breakdown = (
                _breakdown_now(costs, location, sent, last_units, extra_shipments)
                if explain
                else {}
            )
            for name, part in breakdown.items():
                terms_total[name] = terms_total.get(name, 0.0) + part
            total += value
            shipments.append(
                Shipment(
                    location=network.codes[location],
                    delivery_method=group.contexts[0].line.delivery_method.value,
                    lines=tuple(
                        (group.contexts[i].line.line_id, q) for i, q in sorted(sent.items())
                    ),
                    cost=money(value),
                    terms={name: money(part) for name, part in breakdown.items()},
                )
            )
        for i, ctx in enumerate(group.contexts):
            missing = ctx.line.quantity - served[i]
            if missing > 0:
                backorders[ctx.line.line_id] = missing
                backorder_total += missing * float(group.profile.backorder_penalty)
            if explain:
                explanation.append(_explain_line(group, i, chosen[i], missing))
    explanation.sort(key=lambda line: [ln.line_id for ln in order.lines].index(line.line_id))
    return SourcingPlan(
        order_id=order.order_id,
        planner=planner,
        allocations=tuple(allocations),
        backorders=backorders,
        shipments=tuple(shipments),
        cost=money(total),
        backorder_penalty=money(backorder_total),
        terms={name: money(value) for name, value in terms_total.items()},
        explanation=tuple(explanation),
        notes=tuple(notes),
        opportunity_cost=money(opportunity_total),
    )


def _breakdown_now(
    costs: GroupCosts,
    location: int,
    sent: Mapping[int, int],
    last_units: Mapping[int, float],
    extra_shipments: int,
) -> dict[str, float]:
    result: dict[str, float] = {}
    for name, cost in costs.terms.items():
        if name in OPPORTUNITY_TERMS:
            continue  # not paid: the plan's opportunity_cost, not a shipment's cost
        value = 0.0
        if cost.fixed is not None:
            value += float(cost.fixed[location])
        if cost.unit is not None:
            value += sum(float(cost.unit[i][location]) * q for i, q in sent.items())
        if cost.last_unit is not None:
            value += sum(float(cost.last_unit[location]) * lu for lu in last_units.values())
        value += cost.extra_shipment * extra_shipments
        result[name] = value
    return result


def _smallest(values: FloatArray, count: int) -> IntArray:
    """Positions of the ``count`` smallest values, smallest first (ties by position)."""
    if values.size > count:
        part = np.argpartition(values, count - 1)[:count]
        result: IntArray = part[np.lexsort((part, values[part]))]
        return result
    ordered: IntArray = np.argsort(values, kind="stable")
    return ordered


def _explain_line(
    group: Group, i: int, chosen: list[tuple[str, int]], backordered: int
) -> LineExplanation:
    ctx = group.contexts[i]
    network = ctx.network
    line = ctx.line
    mask = group.masks[i]
    candidate_index = np.flatnonzero(mask)
    costs = group.costs
    q = float(line.quantity)
    alone = (
        costs.fixed[candidate_index]
        + costs.decision_unit[i][candidate_index] * q
        + costs.last_unit[candidate_index]
        * np.maximum(q - costs.threshold[i][candidate_index], 0.0)
    )
    shown = [int(x) for x in candidate_index[_smallest(alone, EXPLAINED_CANDIDATES)]]
    for code, _ in chosen:
        index = network.index[code]
        if index not in shown:
            shown.append(index)
    candidate_costs = []
    for index in shown:
        units = {i: int(min(q, ctx.atp[index]))}
        breakdown = term_breakdown(costs, location=int(index), units=units, extra_shipments=0)
        candidate_costs.append(
            CandidateCost(
                location=network.codes[index],
                distance_km=float(ctx.distance_km[index]),
                atp=int(ctx.atp[index]),
                terms={name: money(value) for name, value in breakdown.items()},
                total=money(sum(breakdown.values())),
            )
        )
    excluded_index = np.flatnonzero(~mask)
    nearest = excluded_index[_smallest(ctx.distance_km[excluded_index], EXPLAINED_EXCLUSIONS)]
    reasons = first_reasons(group.exclusions[i], [int(x) for x in nearest])
    excluded = tuple(
        ExcludedLocation(network.codes[index], name, reason)
        for index, (name, reason) in reasons.items()
    )
    counts = excluded_counts(group.exclusions[i], network.size)
    return LineExplanation(
        line_id=line.line_id,
        sku=line.sku,
        quantity=line.quantity,
        profile=group.profile.name,
        rule=group.rule,
        split_policy=group.profile.split_policy.value,
        candidate_count=int(candidate_index.size),
        candidates=tuple(candidate_costs),
        excluded_counts=counts,
        excluded=excluded,
        chosen=tuple(chosen),
        backordered=backordered,
        summary=_summary(
            line,
            chosen,
            backordered,
            int(candidate_index.size),
            counts,
            waited=_waited_for_stock(group, i, chosen, backordered),
        ),
    )


def _waited_for_stock(
    group: Group, i: int, chosen: list[tuple[str, int]], backordered: int
) -> bool:
    """Whether units were backordered although a candidate still had them: the profile lets
    the stock opportunity cost make the line wait."""
    if not backordered or group.costs.opportunity is None:
        return False
    if not group.profile.opportunity_may_backorder:
        return False
    ctx = group.contexts[i]
    taken = {code: units for code, units in chosen}
    left = ctx.atp.copy()
    for code, units in taken.items():
        left[ctx.network.index[code]] -= units
    return bool((left[group.masks[i]] > 0).any())


def _summary(
    line: SourcingLine,
    chosen: list[tuple[str, int]],
    backordered: int,
    candidate_count: int,
    counts: Mapping[str, int],
    *,
    waited: bool = False,
) -> str:
    parts = []
    if chosen:
        sources = ", ".join(f"{q} from {code}" for code, q in chosen)
        parts.append(f"{line.sku}: {sources} (chosen among {candidate_count} candidate(s))")
    if backordered:
        if candidate_count == 0:
            why = "no location passed the filters"
        elif waited:
            why = (
                "its cheapest source, counting the stock opportunity cost (what that stock is "
                "worth to orders expected before replenishment), cost more than the backorder "
                "penalty"
            )
        else:
            why = "the candidates had no more stock or capacity under the split policy"
        parts.append(f"{backordered} backordered: {why}")
    if counts:
        top = sorted(counts.items(), key=lambda item: -item[1])[:3]
        parts.append("excluded: " + ", ".join(f"{n} by {name}" for name, n in top))
    return "; ".join(parts)


def plan_order(
    order: SourcingOrder,
    network: Network,
    profiles: ProfileSet,
    *,
    explain: bool = True,
) -> SourcingPlan:
    """Source one order now (real-time, greedy), taking its units from ``network``."""
    groups = prepare(order, network, profiles, explain=explain)
    choices = [greedy_choice(group, network) for group in groups]
    return commit(order, groups, choices, network, planner="greedy", explain=explain)


def total_objective(plans: Sequence[SourcingPlan]) -> Decimal:
    return sum((plan.objective for plan in plans), Decimal(0))
