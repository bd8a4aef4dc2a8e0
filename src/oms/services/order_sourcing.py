"""The adapter between orders and the sourcing engine.

:class:`EngineSourcing` offers the :class:`~oms.services.orders.LineSourcing` signature, so
``OrderService`` sources every capture and every change through the engine
(:func:`oms.domain.sourcing.planner.plan_order`) in its own unit of work:

* the snapshot is built from the locations (status, capabilities, coordinates, handling cost,
  pick time, cut-off), ATP after the channel's buffer, and what is left of each location's daily
  capacity today;
* the profiles and rules in force choose the profile per line; refusals stored for the order's
  lines (a location rejected or short-picked) exclude those locations for good;
* the decision and its explanation are stored with ``record_decision`` in the same unit of work
  (trigger ``capture``, ``change``, ``rejection``, ``short_pick``, ``outage``);
* lines the engine cannot judge (a ship address without coordinates that no location's postal
  code or city locates) fall back to the nearest-location rule (:func:`source_lines`), and so do
  receipts allocating waiting backorders across orders (first come, first served);
* backordered units get the expected date from open supply, as the simple rule gives them.
"""

from __future__ import annotations

import gc
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from oms.domain.access import SYSTEM, Principal
from oms.domain.errors import Invalid, NotFound
from oms.domain.inventory import (
    NO_BUFFER,
    ChannelBuffer,
    InsufficientStock,
    StockLine,
    SupplyLine,
)
from oms.domain.items import Item
from oms.domain.locations import Location
from oms.domain.orders import (
    AT_STORE,
    FROM_PICKUP_STORE,
    Order,
    OrderChangedConcurrently,
    OrderChangeRefused,
    OrderLine,
    OrderNotFound,
    QuantityState,
)
from oms.domain.sourcing.batch import plan_wave
from oms.domain.sourcing.bid_prices import bid_prices, demand_lanes
from oms.domain.sourcing.events import OrderLineReplanned
from oms.domain.sourcing.model import (
    CandidateLocation,
    Capability,
    DeliveryMethod,
    GeoPoint,
    LocationStatus,
    LocationType,
    Network,
    SourcingLine,
    SourcingOrder,
)
from oms.domain.sourcing.plan import SourcingPlan as DomainPlan
from oms.domain.sourcing.planner import plan_order
from oms.domain.sourcing.profiles import (
    DEFAULT_PROFILE,
    PlanningMode,
    Profile,
    ProfileSet,
    profile_from_document,
    rule_from_document,
)
from oms.services.orders import LineSourcing, SourcingPlan, candidates, source_lines
from oms.services.ports import (
    Clock,
    LineRefusal,
    StoredDecision,
    UnitOfWork,
    UnitOfWorkFactory,
)
from oms.services.sourcing import (
    SimulationOutcome,
    SourcingService,
    record_decision,
    record_decisions,
)


def profile_set(uow: UnitOfWork) -> ProfileSet:
    """The profiles and rules in force, read in ``uow`` (a built-in ``default`` when none)."""
    profiles: dict[str, Profile] = {
        stored.name: profile_from_document(stored.document)
        for stored in uow.sourcing_profiles.current()
    }
    profiles.setdefault(DEFAULT_PROFILE, Profile(DEFAULT_PROFILE))
    stored_rules = uow.sourcing_profiles.current_rules()
    if stored_rules is None:
        return ProfileSet(profiles.values())
    rules = [rule_from_document(rule) for rule in stored_rules.rules]
    return ProfileSet(profiles.values(), rules, default=stored_rules.default_profile)


class ProfileSetCache:
    """The parsed profiles and rules in force, read again only when the stored ones changed
    (``signature``: one small query instead of reading and parsing every document)."""

    def __init__(self) -> None:
        self._cached: tuple[Hashable, ProfileSet] | None = None

    def get(self, uow: UnitOfWork) -> ProfileSet:
        signature = uow.sourcing_profiles.signature()
        cached = self._cached
        if cached is not None and cached[0] == signature:
            return cached[1]
        profiles = profile_set(uow)
        self._cached = (signature, profiles)
        return profiles


def weighs_opportunity(profiles: ProfileSet) -> bool:
    """Whether a profile in force weighs the stock opportunity term (bid prices)."""
    return any(p.weight("stock_opportunity") != 0 for p in profiles.profiles.values())


class BidPriceCache:
    """The stored bid-price table, parsed once per stored version (one small query a decision
    to see whether the job stored a newer one). One per engine: a cache is for one database."""

    def __init__(self) -> None:
        self._cached: tuple[int, dict[str, dict[str, float]], dict[str, float]] | None = None

    def apply(self, uow: UnitOfWork, network: Network, profiles: ProfileSet) -> None:
        """Put the stored table into ``network`` when a profile in force weighs it."""
        if not weighs_opportunity(profiles):
            return
        latest = uow.sourcing_bid_prices.latest_id()
        if latest is None:
            return
        cached = self._cached
        if cached is None or cached[0] != latest:
            stored = uow.sourcing_bid_prices.latest()
            if stored is None:
                return
            stock = {
                sku: {code: float(price) for code, price in by_code.items()}
                for sku, by_code in stored.document.get("stock", {}).items()
            }
            capacity = {
                code: float(price) for code, price in stored.document.get("capacity", {}).items()
            }
            cached = self._cached = (stored.table_id, stock, capacity)
        network.set_bid_prices(cached[1], cached[2])


def _cut_off_hour(location: Location, at: datetime) -> float:
    """The location's local cut-off as an hour of the UTC day (24: none)."""
    if location.cutoff_time is None:
        return 24.0
    zone = ZoneInfo(location.timezone)
    local_day = at.astimezone(zone).date()
    cut = datetime.combine(local_day, location.cutoff_time, tzinfo=zone).astimezone(ZoneInfo("UTC"))
    hours = (cut - datetime.combine(at.date(), datetime.min.time(), tzinfo=ZoneInfo("UTC"))) / (
        timedelta(hours=1)
    )
    return max(0.0, min(48.0, hours))


def _snapshot_parts(
    uow: UnitOfWork, locations: Sequence[Location], skus: Sequence[str], *, at: datetime
) -> tuple[list[Location], dict[str, dict[str, int]], dict[str, int | None]]:
    """The stock-holding locations, their raw ATP (code -> sku -> units, before any channel
    buffer) and what is left of their capacity today (None: no limit for the engine)."""
    holding = [location for location in locations if location.holds_stock]
    codes = [location.code for location in holding]
    raw = uow.inventory.atp(list(skus), at=at, location_codes=codes) if codes and skus else {}
    atp: dict[str, dict[str, int]] = {}
    for sku, by_location in raw.items():
        for code, units in by_location.items():
            if units > 0:
                atp.setdefault(code, {})[sku] = units
    capped = [location.code for location in holding if location.daily_capacity is not None]
    used = uow.locations.capacity_used(capped, on=at.date()) if capped else {}
    remaining: dict[str, int | None] = {}
    for location in holding:
        left: int | None = None
        if location.daily_capacity is not None:
            left = max(0, location.daily_capacity - used.get(location.code, 0))
            # capacity counted in orders: an exhausted day stops the location, otherwise the
            # engine does not limit units (it plans in units)
            if _capacity_unit(location) != "units" and left > 0:
                left = None
        remaining[location.code] = left
    return holding, atp, remaining


def _capacity_unit(location: Location) -> str:
    return str(getattr(location.capacity_unit, "value", location.capacity_unit))


def _candidates(
    holding: Sequence[Location],
    atp: Mapping[str, Mapping[str, int]],
    remaining: Mapping[str, int | None],
    *,
    at: datetime,
    statuses: Mapping[str, LocationStatus] | None = None,
) -> list[CandidateLocation]:
    result = []
    for location in holding:
        status = (statuses or {}).get(location.code, LocationStatus(location.status.value))
        result.append(
            CandidateLocation(
                code=location.code,
                type=LocationType(location.type.value),
                status=status,
                capabilities=frozenset(Capability(c.value) for c in location.capabilities),
                point=GeoPoint(location.latitude, location.longitude),
                atp=atp.get(location.code, {}),
                remaining_capacity=remaining.get(location.code),
                handling_cost=location.handling_cost,
                pick_hours=location.pick_minutes / 60.0,
                cut_off_hour=_cut_off_hour(location, at),
                region=str(location.address.get("region", "") or ""),
            )
        )
    return result


def snapshot(
    uow: UnitOfWork,
    locations: Sequence[Location],
    skus: Sequence[str],
    *,
    channel: str | None,
    at: datetime,
    statuses: Mapping[str, LocationStatus] | None = None,
    buffer: ChannelBuffer | None = None,
) -> list[CandidateLocation]:
    """Every stock-holding location as the engine sees it now: ATP after the channel's buffer
    and the day's remaining capacity (``statuses`` overrides some statuses)."""
    if buffer is None:
        buffer = uow.inventory.channel_buffer(channel) if channel else NO_BUFFER
    holding, raw, remaining = _snapshot_parts(uow, locations, skus, at=at)
    atp: dict[str, dict[str, int]] = {}
    for code, by_sku in raw.items():
        for sku, units in by_sku.items():
            left = buffer.apply(units)
            if left > 0:
                atp.setdefault(code, {})[sku] = left
    return _candidates(holding, atp, remaining, at=at, statuses=statuses)


def geocode(line: OrderLine, locations: Sequence[Location]) -> GeoPoint | None:
    """Where a line goes: the address coordinates, else the coordinates of a location with the
    same postal code, else one in the same city and country; None: unknown."""
    address = line.delivery.address
    if address is None:
        return None
    if address.latitude is not None and address.longitude is not None:
        return GeoPoint(address.latitude, address.longitude)
    postal = (address.postal_code or "").strip().upper()
    city = (address.city or "").strip().casefold()
    same_city = None
    for location in locations:
        there = location.address
        if postal and str(there.get("postal_code", "")).strip().upper() == postal:
            return GeoPoint(location.latitude, location.longitude)
        if (
            same_city is None
            and city
            and str(there.get("city", "")).strip().casefold() == city
            and str(there.get("country", address.country)).upper() == address.country.upper()
        ):
            same_city = GeoPoint(location.latitude, location.longitude)
    return same_city


def sourcing_line(
    line: OrderLine, quantity: int, item: Item | None, destination: GeoPoint | None
) -> SourcingLine:
    method = DeliveryMethod(line.delivery.method.value)
    weight = (item.weight_grams / 1000.0) if item is not None and item.weight_grams else 1.0
    return SourcingLine(
        line_id=str(line.line_no),
        sku=line.sku,
        quantity=quantity,
        delivery_method=method,
        destination=None if line.delivery.method in AT_STORE else destination,
        pickup_location=line.delivery.pickup_location_code
        if line.delivery.method in AT_STORE
        else None,
        weight_kg=weight,
        ship_alone=bool(item and item.ship_alone),
        hazmat=bool(item and item.hazmat),
        pickup_allowed=item.pickup_allowed if item is not None else True,
        ship_from_store_allowed=item.ship_from_store_allowed if item is not None else True,
    )


def sourcing_order(
    order: Order,
    lines: Sequence[tuple[SourcingLine, OrderLine]],
    *,
    at: datetime,
    refused: Mapping[int, frozenset[str]],
) -> SourcingOrder:
    requested = [ol.delivery.requested_on for _, ol in lines if ol.delivery.requested_on]
    region = next(
        (
            ol.delivery.address.region or ""
            for _, ol in lines
            if ol.delivery.address is not None and ol.delivery.address.region
        ),
        "",
    )
    return SourcingOrder(
        order_id=order.order_id,
        channel=order.channel.value,
        lines=tuple(sl for sl, _ in lines),
        placed_at=at,
        order_value=order.total,
        promise_on=min(requested) if requested else None,
        destination_region=region,
        refused={
            str(line_no): codes
            for line_no, codes in refused.items()
            if any(sl.line_id == str(line_no) for sl, _ in lines)
        },
    )


def expected_dates(
    uow: UnitOfWork,
    short: Sequence[tuple[OrderLine, int]],
    *,
    items: Mapping[str, Item],
    locations: Sequence[Location],
    already_waiting: Mapping[str, int] | None,
) -> list[tuple[int, int, date | None]]:
    """(line, units, date open supply covers them after the units others wait for)."""
    if not short:
        return []
    options = [
        {loc.code for loc in candidates(line, items.get(line.sku), locations)} for line, _ in short
    ]
    skus = sorted({line.sku for line, _ in short})
    codes = sorted({code for found in options for code in found})
    supply = uow.inventory.supply(skus, location_codes=codes) if codes else []
    waiting = dict(
        already_waiting if already_waiting is not None else uow.orders.waiting_quantities(skus)
    )
    by_sku: dict[str, list[SupplyLine]] = {}
    for supply_line in sorted(supply, key=lambda s: (s.expected_on, s.location_code)):
        by_sku.setdefault(supply_line.sku, []).append(supply_line)
    result: list[tuple[int, int, date | None]] = []
    for position, (line, quantity) in enumerate(short):
        need = waiting.get(line.sku, 0) + quantity
        expected_on: date | None = None
        covered = 0
        for supply_line in by_sku.get(line.sku, ()):
            if supply_line.location_code not in options[position]:
                continue
            covered += supply_line.quantity
            if covered >= need:
                expected_on = supply_line.expected_on
                break
        waiting[line.sku] = need
        result.append((line.line_no, quantity, expected_on))
    return result


HELD_STATES = (QuantityState.ALLOCATED, QuantityState.RELEASED, QuantityState.PICKED)


def _holds_at(order: Order, code: str) -> bool:
    return any(line.quantity_in(state, code) for line in order.lines for state in HELD_STATES)


def capacity_use(
    order: Order, allocations: Sequence[tuple[int, str, int]], locations: Sequence[Location]
) -> dict[str, int]:
    """What sourcing ``allocations`` of ``order`` uses of each location's daily capacity: the
    units, or one order where the order holds nothing yet (capacity counted in orders).
    Locations without a daily capacity are left out. Read before the order applies them."""
    units: dict[str, int] = {}
    for _, code, quantity in allocations:
        units[code] = units.get(code, 0) + quantity
    capped = {loc.code: loc for loc in locations if loc.daily_capacity is not None}
    used: dict[str, int] = {}
    for code, quantity in units.items():
        location = capped.get(code)
        if location is None:
            continue
        if _capacity_unit(location) == "units":
            used[code] = quantity
        elif not _holds_at(order, code):
            used[code] = 1
    return used


def capacity_given_back(
    order: Order, code: str, quantity: int, locations: Sequence[Location]
) -> dict[str, int]:
    """The capacity ``quantity`` units taken back from ``code`` give back (negative amounts),
    read after they left it."""
    location = next((loc for loc in locations if loc.code == code), None)
    if location is None or location.daily_capacity is None:
        return {}
    if _capacity_unit(location) == "units":
        return {code: -quantity}
    return {} if _holds_at(order, code) else {code: -1}


class EngineSourcing:
    """Sources order lines with the sourcing engine and stores each decision (LineSourcing)."""

    def __init__(self, *, fallback: LineSourcing = source_lines) -> None:
        self._fallback = fallback
        self._profiles = ProfileSetCache()
        self._bid_prices = BidPriceCache()

    def __call__(
        self,
        uow: UnitOfWork,
        lines: Sequence[tuple[OrderLine, int]],
        *,
        channel: str | None,
        items: Mapping[str, Item],
        locations: Sequence[Location],
        at: datetime,
        already_waiting: Mapping[str, int] | None = None,
        first_come_first_served: bool = False,
        order: Order | None = None,
        trigger: str = "capture",
        refused: Mapping[int, frozenset[str]] | None = None,
    ) -> SourcingPlan:
        if order is None or not lines:
            # lines of many orders (backorders allocated on receipt): first come, first served
            return self._fallback(
                uow,
                lines,
                channel=channel,
                items=items,
                locations=locations,
                at=at,
                already_waiting=already_waiting,
                first_come_first_served=first_come_first_served,
            )
        if refused is None:
            refused = uow.order_refusals.for_order(order.order_id)
        judged: list[tuple[SourcingLine, OrderLine]] = []
        unjudged: list[tuple[OrderLine, int]] = []
        for line, quantity in lines:
            destination = None if line.delivery.method in AT_STORE else geocode(line, locations)
            if line.delivery.method not in AT_STORE and destination is None:
                unjudged.append((line, quantity))
                continue
            judged.append((sourcing_line(line, quantity, items.get(line.sku), destination), line))
        allocations: list[tuple[int, str, int]] = []
        backorders: list[tuple[int, int, date | None]] = []
        taken: dict[tuple[str, str], int] = {}
        buffered = False
        if unjudged:
            by_refusal: dict[frozenset[str], list[tuple[OrderLine, int]]] = {}
            for line, quantity in unjudged:
                by_refusal.setdefault(refused.get(line.line_no, frozenset()), []).append(
                    (line, quantity)
                )
            for codes, group in by_refusal.items():
                simple = self._fallback(
                    uow,
                    group,
                    channel=channel,
                    items=items,
                    locations=[loc for loc in locations if loc.code not in codes],
                    at=at,
                    already_waiting=already_waiting,
                    first_come_first_served=first_come_first_served,
                )
                sku_of = {line.line_no: line.sku for line, _ in group}
                for line_no, code, units in simple.allocations:
                    taken[(sku_of[line_no], code)] = taken.get((sku_of[line_no], code), 0) + units
                allocations.extend(simple.allocations)
                backorders.extend(simple.backorders)
                buffered = buffered or simple.allocation_channel is not None
        profiles = self._profiles.get(uow) if judged else None
        if judged and profiles is not None and trigger == "capture":
            # lines whose profile plans in batch mode wait, open, for the next wave
            probe = sourcing_order(order, judged, at=at, refused=refused)
            batch = {
                sl.line_id
                for sl in probe.lines
                if profiles.choose(probe, sl).profile.mode is PlanningMode.BATCH
            }
            judged = [pair for pair in judged if pair[0].line_id not in batch]
        if judged and profiles is not None:
            skus = sorted({line.sku for _, line in judged})
            buffer = uow.inventory.channel_buffer(channel) if channel else NO_BUFFER
            snap = snapshot(uow, locations, skus, channel=channel, at=at, buffer=buffer)
            if taken:
                snap = [
                    _minus(
                        candidate,
                        {sku: n for (sku, code), n in taken.items() if code == candidate.code},
                    )
                    for candidate in snap
                ]
            if not first_come_first_served:
                # lines only their pickup store can serve choose before lines many can serve
                judged.sort(key=lambda pair: pair[1].delivery.method not in FROM_PICKUP_STORE)
            request = sourcing_order(order, judged, at=at, refused=refused)
            network = Network(snap)
            self._bid_prices.apply(uow, network, profiles)
            plan = plan_order(request, network, profiles)
            record_decision(uow, plan, trigger=trigger, at=at)
            allocations.extend(
                (int(allocation.line_id), allocation.location, allocation.quantity)
                for allocation in plan.allocations
            )
            by_no = {line.line_no: line for _, line in judged}
            short = [
                (by_no[int(line_id)], units) for line_id, units in plan.backorders.items() if units
            ]
            backorders.extend(
                expected_dates(
                    uow, short, items=items, locations=locations, already_waiting=already_waiting
                )
            )
            buffered = buffered or buffer.percent > 0 or buffer.units > 0
        # the decision takes its share of the chosen locations' capacity today
        uow.locations.use_capacity(capacity_use(order, allocations, locations), on=at.date())
        return SourcingPlan(allocations, backorders, channel if buffered else None)


@dataclass(frozen=True)
class BulkPlan:
    """What :func:`plan_in_bulk` decided for one order."""

    order: Order
    plan: SourcingPlan
    decision: DomainPlan


def take_planned(
    uow: UnitOfWork,
    bulk: Sequence[BulkPlan],
    *,
    locations: Sequence[Location],
    at: datetime,
    reason: str,
) -> None:
    """Allocate the stock of bulk plans (one call per channel buffer) and count the daily
    capacity they use. Read before the orders apply the plans (see :func:`capacity_use`)."""
    stock: dict[str | None, list[StockLine]] = {}
    used: dict[str, int] = {}
    for found in bulk:
        lines = {line.line_no: line for line in found.order.lines}
        stock.setdefault(found.plan.allocation_channel, []).extend(found.plan.stock_lines(lines))
        for code, amount in capacity_use(found.order, found.plan.allocations, locations).items():
            used[code] = used.get(code, 0) + amount
    for channel, lines_to_take in stock.items():
        if lines_to_take:
            uow.inventory.allocate(lines_to_take, at=at, channel=channel, reason=reason)
    uow.locations.use_capacity(used, on=at.date())


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Bulk planning creates millions of short-lived objects (orders, plans, events, rows) and
    keeps thousands alive at once: the cyclic collector's passes over them cost about a third
    of a 10,000-order re-plan's CPU. They hold no reference cycles (reference counting frees
    them), so the collector pauses for the block and runs again afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _keep_in_step(
    networks: Mapping[tuple[int, int], Network],
    planned_on: Network,
    decisions: Sequence[DomainPlan],
    working: dict[tuple[str, str], int],
) -> None:
    """After planning on one channel buffer's network, the others see the same stock left."""
    for decision in decisions:
        for allocation in decision.allocations:
            pair = (allocation.sku, allocation.location)
            working[pair] = working.get(pair, 0) - allocation.quantity
            index = planned_on.index[allocation.location]
            for key, other in networks.items():
                other.set_available(
                    index, allocation.sku, ChannelBuffer("", *key).apply(working[pair])
                )
    for other in networks.values():
        if other is not planned_on:
            other.capacity[:] = planned_on.capacity


def plan_in_bulk(
    uow: UnitOfWork,
    requests: Sequence[tuple[Order, Sequence[tuple[OrderLine, int]]]],
    *,
    items: Mapping[str, Item],
    locations: Sequence[Location],
    at: datetime,
    refused: Mapping[str, Mapping[int, frozenset[str]]],
    explain: bool = True,
    already_waiting: Mapping[str, int] | None = None,
    wave_seconds: float | None = None,
) -> tuple[list[BulkPlan], list[Order]]:
    """Source the open units of many orders in memory, one after the other, on one snapshot
    (ATP and remaining capacity read once; a working copy per channel buffer, kept in step);
    backordered units get their dates from one read of open supply. Nothing is written.

    Returns the plans, in the order of ``requests``, and the orders the engine cannot judge
    (a ship address nobody locates): the caller sources those one by one afterwards.

    ``wave_seconds``: plan the orders together as one batch wave (``plan_wave``, never worse
    than greedy) with that time limit, instead of one after the other."""
    judged_requests: list[tuple[Order, list[tuple[SourcingLine, OrderLine]]]] = []
    rest: list[Order] = []
    for order, lines in requests:
        judged: list[tuple[SourcingLine, OrderLine]] = []
        for line, quantity in lines:
            destination = None if line.delivery.method in AT_STORE else geocode(line, locations)
            if line.delivery.method not in AT_STORE and destination is None:
                break
            judged.append((sourcing_line(line, quantity, items.get(line.sku), destination), line))
        else:
            if judged:
                judged.sort(key=lambda pair: pair[1].delivery.method not in FROM_PICKUP_STORE)
                judged_requests.append((order, judged))
            continue
        rest.append(order)
    if not judged_requests:
        return [], rest
    skus = sorted({line.sku for _, judged in judged_requests for _, line in judged})
    holding, raw, remaining = _snapshot_parts(uow, locations, skus, at=at)
    profiles = profile_set(uow)
    buffers: dict[str, ChannelBuffer] = {}
    networks: dict[tuple[int, int], Network] = {}
    bid_price_table = BidPriceCache()  # read once for this bulk plan
    for order, _ in judged_requests:
        channel = order.channel.value
        if channel not in buffers:
            buffers[channel] = uow.inventory.channel_buffer(channel)
        buffer = buffers[channel]
        key = (buffer.percent, buffer.units)
        if key not in networks:
            atp = {
                code: {sku: buffer.apply(units) for sku, units in by_sku.items()}
                for code, by_sku in raw.items()
            }
            networks[key] = Network(_candidates(holding, atp, remaining, at=at))
            bid_price_table.apply(uow, networks[key], profiles)
    working = {(sku, code): units for code, by_sku in raw.items() for sku, units in by_sku.items()}
    requests_of = [
        sourcing_order(order, judged, at=at, refused=refused.get(order.order_id, {}))
        for order, judged in judged_requests
    ]
    decisions: list[DomainPlan | None] = [None] * len(judged_requests)
    if wave_seconds is not None:
        # one mixed-integer programme per channel buffer over every order of the wave
        by_network: dict[tuple[int, int], list[int]] = {}
        for position, (order, _) in enumerate(judged_requests):
            buffer = buffers[order.channel.value]
            by_network.setdefault((buffer.percent, buffer.units), []).append(position)
        for key, positions in by_network.items():
            wave = plan_wave(
                [requests_of[p] for p in positions],
                networks[key],
                profiles,
                time_limit_seconds=wave_seconds,
                explain=explain,
            )
            for position, found in zip(positions, wave.plans, strict=True):
                decisions[position] = found
            if len(networks) > 1:
                _keep_in_step(networks, networks[key], wave.plans, working)
    planned: list[tuple[Order, SourcingPlan, DomainPlan, list[tuple[OrderLine, int]]]] = []
    short_lines: list[tuple[OrderLine, int]] = []
    for position, (order, judged) in enumerate(judged_requests):
        buffer = buffers[order.channel.value]
        network = networks[(buffer.percent, buffer.units)]
        decision = decisions[position]
        if decision is None:
            decision = plan_order(requests_of[position], network, profiles, explain=explain)
            if len(networks) > 1:
                _keep_in_step(networks, network, [decision], working)
        by_no = {line.line_no: line for _, line in judged}
        short = [
            (by_no[int(line_id)], units) for line_id, units in decision.backorders.items() if units
        ]
        short_lines.extend(short)
        plan = SourcingPlan(
            [
                (int(allocation.line_id), allocation.location, allocation.quantity)
                for allocation in decision.allocations
            ],
            [],
            order.channel.value if buffer.percent > 0 or buffer.units > 0 else None,
        )
        planned.append((order, plan, decision, short))
    dates = iter(
        expected_dates(
            uow, short_lines, items=items, locations=locations, already_waiting=already_waiting
        )
    )
    results = []
    for order, plan, decision, short in planned:
        plan.backorders.extend(next(dates) for _ in short)
        results.append(BulkPlan(order, plan, decision))
    return results, rest


def _plus(candidate: CandidateLocation, held: Mapping[str, int]) -> CandidateLocation:
    """The candidate with units the simulated orders hold there given back."""
    if not held:
        return candidate
    atp = dict(candidate.atp)
    for sku, units in held.items():
        atp[sku] = atp.get(sku, 0) + units
    return replace(candidate, atp=atp)


def _minus(candidate: CandidateLocation, used: Mapping[str, int]) -> CandidateLocation:
    """The candidate without units the fallback rule already took in this decision."""
    if not used:
        return candidate
    atp = {sku: units - used.get(sku, 0) for sku, units in candidate.atp.items()}
    return replace(candidate, atp={sku: units for sku, units in atp.items() if units > 0})


# --- re-planning and what-if over stored orders ----------------------------------------------

REFUSAL_TRIGGERS = frozenset({"rejection", "short_pick"})
HELD_AT_LOCATION = (QuantityState.RELEASED, QuantityState.ALLOCATED, QuantityState.PICKED)
"""Where refused units may be: released to the location, still allocated, or picked."""
MAX_SIMULATED_ORDERS = 5000
OUTAGE_STATUSES = frozenset({"offline", "closed", "dark"})
REPLAN_CHUNK = 5000
"""Orders per unit of work of a bulk re-plan."""
EXPLAINED_UP_TO = 200
"""A re-plan chunk of more orders stores its decisions without the per-candidate explanation
(sources, costs, backorders and the summary only): explaining costs about a millisecond an
order, a tenth of the budget of a 10,000-order outage."""


@dataclass(frozen=True)
class Replanned:
    order_id: str
    line_no: int
    sku: str
    from_location: str
    quantity: int
    re_sourced: dict[str, int]
    """location -> units sourced again."""
    backordered: int
    excluded: list[str]
    """Every location that refused this line so far (never chosen again)."""


def record_replanned(
    uow: UnitOfWork,
    order: Order,
    line: OrderLine,
    plan: SourcingPlan,
    *,
    from_location: str,
    quantity: int,
    trigger: str,
    reason: str,
    excluded: Iterable[str],
) -> Replanned:
    """Record that ``quantity`` units of ``line`` left ``from_location`` and where the re-plan put
    them (``order.line_replanned``), and report the same."""
    re_sourced: dict[str, int] = {}
    for line_no, code, units in plan.allocations:
        if line_no == line.line_no:
            re_sourced[code] = re_sourced.get(code, 0) + units
    backordered = sum(units for line_no, units, _ in plan.backorders if line_no == line.line_no)
    uow.record(
        OrderLineReplanned(
            order_id=order.order_id,
            line_no=line.line_no,
            sku=line.sku,
            from_location=from_location,
            quantity=quantity,
            trigger=trigger,
            reason=reason,
            re_sourced=re_sourced,
            backordered=backordered,
        )
    )
    return Replanned(
        order_id=order.order_id,
        line_no=line.line_no,
        sku=line.sku,
        from_location=from_location,
        quantity=quantity,
        re_sourced=re_sourced,
        backordered=backordered,
        excluded=sorted(excluded),
    )


@dataclass(frozen=True)
class OutageOutcome:
    location_code: str
    status: str
    affected_orders: int
    affected_units: int
    re_sourced_units: int
    backordered_units: int
    lines: list[Replanned]


@dataclass(frozen=True)
class WaveOutcome:
    orders: int
    """Orders planned in the wave."""
    allocated_units: int
    backordered_units: int
    planner: str
    """batch (the MILP's plan), greedy (it found nothing better) or empty."""


BID_PRICE_HISTORY_ORDERS = 5000
"""Recent orders the bid-price job takes as the demand expected until replenishment."""


@dataclass(frozen=True)
class BidPriceOutcome:
    history_orders: int
    lanes: int
    priced_skus: int
    priced_locations: int
    status: str
    """optimal, empty (no demand or no stock), off (no profile weighs it), time_limit, failed."""


@dataclass(frozen=True)
class BidPriceTable:
    """The stored stock opportunity costs: what the table was computed from, and the prices
    (per unit of an item at a location, per unit of a location's capacity)."""

    table_id: int
    computed_at: datetime
    history_orders: int
    scale: float
    lanes: int
    expected_units: float
    backordered_units: float
    priced_skus: int
    """Items priced anywhere in the table (the stock below may be a selection)."""
    stock: dict[str, dict[str, float]]
    capacity: dict[str, float]


@dataclass(frozen=True)
class OrderSourcingView:
    order_id: str
    order_number: str
    decisions: list[StoredDecision]
    refusals: list[LineRefusal]


class OrderSourcingService:
    """Re-planning of order lines the engine sourced: refusals, outages; and "what if" runs over
    the last orders stored."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        sourcing: SourcingService,
        engine: LineSourcing | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._sourcing = sourcing
        self._engine: LineSourcing = engine or EngineSourcing()

    # -- refusals ------------------------------------------------------------------------------

    def replan_refused(
        self,
        order_id: str,
        line_no: int,
        location_code: str,
        quantity: int,
        reason: str,
        *,
        trigger: str = "rejection",
        principal: Principal = SYSTEM,
    ) -> Replanned:
        """``location_code`` rejected or short-picked ``quantity`` units of a line: take them from
        it (released, allocated or picked there), free its stock, remember the refusal for good,
        and source the units again without every location that refused the line; what nothing
        can serve is backordered. One unit of work; events ``sourcing.line_replanned`` and the
        order's own (allocated / backordered)."""
        if trigger not in REFUSAL_TRIGGERS:
            raise Invalid(f"a refusal is a 'rejection' or a 'short_pick', not '{trigger}'")
        if quantity <= 0:
            raise Invalid(
                "quantity must be positive",
                errors=[{"pointer": "#/quantity", "detail": "must be at least 1"}],
            )
        if not reason.strip():
            raise Invalid(
                "say why the location refused",
                errors=[{"pointer": "#/reason", "detail": "required"}],
            )
        principal.require_location(location_code)
        with self._uow() as uow:
            order = _load(uow, order_id)
            at = self._clock.now()
            outcome = self._take_back(
                uow,
                order,
                line_no,
                location_code,
                quantity,
                states=HELD_AT_LOCATION,
                trigger=trigger,
                reason=reason,
                actor=principal.actor,
                at=at,
                refuse=True,
            )
            uow.orders.save(order, at=at)
            uow.record(*order.events)
            order.events.clear()
            uow.commit()
        return outcome

    def explain(self, order_id: str) -> OrderSourcingView:
        """The stored sourcing decisions of an order (id or number), oldest first, each with
        its explanation, and the refusals that exclude locations from its lines."""
        with self._uow(read_only=True) as uow:
            order = _load(uow, order_id, for_update=False)
            return OrderSourcingView(
                order_id=order.order_id,
                order_number=order.order_number,
                decisions=uow.sourcing_decisions.for_order(order.order_id),
                refusals=uow.order_refusals.list_for_order(order.order_id),
            )

    def _take_back(
        self,
        uow: UnitOfWork,
        order: Order,
        line_no: int,
        location_code: str,
        quantity: int,
        *,
        states: Sequence[QuantityState],
        trigger: str,
        reason: str,
        actor: str,
        at: datetime,
        refuse: bool,
        locations: Sequence[Location] | None = None,
    ) -> Replanned:
        line = order.line(line_no)
        held = {state: line.quantity_in(state, location_code) for state in states}
        if sum(held.values()) < quantity:
            raise OrderChangeRefused(
                f"line {line_no} ({line.sku}) has {sum(held.values())} unit(s) held at "
                f"{location_code}, not {quantity}",
                line_no=line_no,
                sku=line.sku,
            )
        left = quantity
        for state in states:
            take = min(left, held[state])
            if take:
                order.move_quantity(
                    line_no,
                    take,
                    source=state,
                    target=QuantityState.OPEN,
                    location_code=location_code,
                    actor=actor,
                    reason=f"{trigger}: {reason}",
                    at=at,
                )
                left -= take
        uow.inventory.deallocate(
            [StockLine(line.sku, location_code, quantity)],
            at=at,
            reason=f"order {order.order_number}: {trigger} at {location_code}",
        )
        if refuse:
            uow.order_refusals.add(
                LineRefusal(
                    order_id=order.order_id,
                    line_no=line_no,
                    location_code=location_code,
                    quantity=quantity,
                    reason=reason,
                    trigger=trigger,
                    refused_at=at,
                )
            )
        if locations is None:
            locations = uow.locations.list()
        uow.locations.use_capacity(
            capacity_given_back(order, location_code, quantity, locations), on=at.date()
        )
        refused = uow.order_refusals.for_order(order.order_id)
        plan = self._engine(
            uow,
            [(line, line.quantity_in(QuantityState.OPEN))],
            channel=order.channel.value,
            items=uow.items.get_many([line.sku]),
            locations=locations,
            at=at,
            order=order,
            trigger=trigger,
            refused=refused,
        )
        stock = plan.stock_lines({line.line_no: line})
        if stock:
            uow.inventory.allocate(
                stock,
                at=at,
                channel=plan.allocation_channel,
                reason=f"order {order.order_number}: re-sourced after {trigger}",
            )
        order.apply_sourcing(
            allocations=plan.allocations, backorders=plan.backorders, actor=actor, at=at
        )
        return record_replanned(
            uow,
            order,
            line,
            plan,
            from_location=location_code,
            quantity=quantity,
            trigger=trigger,
            reason=reason,
            excluded=refused.get(line_no, frozenset()),
        )

    # -- outages -------------------------------------------------------------------------------

    def replan_location(
        self,
        location_code: str,
        *,
        principal: Principal = SYSTEM,
        limit: int = 100_000,
        chunk_size: int = REPLAN_CHUNK,
    ) -> OutageOutcome:
        """Re-source what a location can no longer serve, as its current status says: every
        allocated (not yet released) unit when it is ``offline`` or ``closed``; only walk-in
        collections (pickup, curbside, reserve and collect) when it is ``dark``. Each affected
        line is re-sourced or backordered (none lost), evented.

        Set-based: the affected orders are loaded ``chunk_size`` at a time, planned in memory on
        one snapshot and written back in bulk, one unit of work per chunk. A chunk that fails
        leaves its orders as they were (a second run picks them up); chunks done stay done."""
        with self._uow(read_only=True) as uow:
            status = uow.locations.require(location_code).status.value
            if status not in OUTAGE_STATUSES:
                order_ids = []
            else:
                order_ids = uow.order_refusals.orders_allocated_at(location_code, limit=limit)
        if status not in OUTAGE_STATUSES:
            return self.replan_capacity(location_code, principal=principal)
        outcome_lines: list[Replanned] = []
        orders = 0
        for start in range(0, len(order_ids), max(1, chunk_size)):
            chunk = order_ids[start : start + max(1, chunk_size)]
            for attempt in range(3):
                try:
                    with cyclic_gc_paused(), self._uow() as uow:
                        done, touched = self._replan_chunk(
                            uow, chunk, location_code, actor=principal.actor
                        )
                        uow.commit()
                    break
                except (InsufficientStock, OrderChangedConcurrently):
                    # stock or an order moved between the snapshot and the write: plan again
                    if attempt == 2:
                        raise
            outcome_lines.extend(done)
            orders += touched
        return OutageOutcome(
            location_code=location_code,
            status=status,
            affected_orders=orders,
            affected_units=sum(r.quantity for r in outcome_lines),
            re_sourced_units=sum(sum(r.re_sourced.values()) for r in outcome_lines),
            backordered_units=sum(r.backordered for r in outcome_lines),
            lines=outcome_lines,
        )

    def replan_capacity(
        self, location_code: str, *, principal: Principal = SYSTEM
    ) -> OutageOutcome:
        """The "capacity exhausted" trigger: when what a location has taken on today is more
        than its daily capacity (capacity lowered, allocations by the simple rule or by receipts,
        two captures at once), its newest not-yet-released allocations beyond the capacity are
        sourced again elsewhere (counted in units: that many units; in orders: that many
        orders' units there), giving their capacity back, so that the location ends the re-plan
        exactly full and is not chosen again today. One unit of work; evented as an outage."""
        empty = OutageOutcome(location_code, "active", 0, 0, 0, 0, [])
        with self._uow(read_only=True) as uow:
            location = uow.locations.require(location_code)
            empty = replace(empty, status=location.status.value)
            if location.daily_capacity is None or location.status.value in OUTAGE_STATUSES:
                return empty
            today = self._clock.now().date()
            over = uow.locations.capacity_used([location_code], on=today)[location_code]
            over -= location.daily_capacity
            if over <= 0:
                return empty
            by_units = _capacity_unit(location) == "units"
            picks: dict[str, dict[int, int]] = {}
            newest_first = list(reversed(uow.order_refusals.orders_allocated_at(location_code)))
            for start in range(0, len(newest_first), 200):
                chunk = newest_first[start : start + 200]
                loaded = uow.orders.get_many(chunk)
                for order_id in chunk:
                    order = loaded.get(order_id)
                    if order is None or over <= 0:
                        continue
                    for line in reversed(order.lines):
                        units = line.quantity_in(QuantityState.ALLOCATED, location_code)
                        if by_units:
                            units = min(units, over)
                            over -= units
                        if units > 0:
                            picks.setdefault(order_id, {})[line.line_no] = units
                    if not by_units and order_id in picks:
                        over -= 1
                if over <= 0:
                    break
        if not picks:
            return empty
        for attempt in range(3):
            try:
                with cyclic_gc_paused(), self._uow() as uow:
                    lines, orders = self._replan_chunk(
                        uow,
                        list(picks),
                        location_code,
                        actor=principal.actor,
                        trigger="capacity",
                        picks=picks,
                    )
                    uow.commit()
                break
            except (InsufficientStock, OrderChangedConcurrently):
                if attempt == 2:
                    raise
        return OutageOutcome(
            location_code=location_code,
            status=empty.status,
            affected_orders=orders,
            affected_units=sum(r.quantity for r in lines),
            re_sourced_units=sum(sum(r.re_sourced.values()) for r in lines),
            backordered_units=sum(r.backordered for r in lines),
            lines=lines,
        )

    def replan_over_capacity(self) -> int:
        """Run the capacity re-plan for every location with a daily capacity that is over it
        today (the periodic job); the number of units sourced again."""
        with self._uow(read_only=True) as uow:
            capped = [
                location
                for location in uow.locations.list()
                if location.daily_capacity is not None
                and location.status.value not in OUTAGE_STATUSES
            ]
            used = uow.locations.capacity_used(
                [location.code for location in capped], on=self._clock.now().date()
            )
        moved = 0
        for location in capped:
            if used.get(location.code, 0) > (location.daily_capacity or 0):
                moved += self.replan_capacity(location.code).affected_units
        return moved

    def _replan_chunk(
        self,
        uow: UnitOfWork,
        order_ids: Sequence[str],
        location_code: str,
        *,
        actor: str,
        trigger: str = "outage",
        picks: Mapping[str, Mapping[int, int]] | None = None,
    ) -> tuple[list[Replanned], int]:
        # each order's lines leave the location and come back sourced elsewhere as one change
        # of status: no line flaps to "open" and back in the events
        with ExitStack() as together:
            return self._replan_orders(
                uow,
                order_ids,
                location_code,
                actor=actor,
                together=together,
                trigger=trigger,
                picks=picks or {},
            )

    def _replan_orders(
        self,
        uow: UnitOfWork,
        order_ids: Sequence[str],
        location_code: str,
        *,
        actor: str,
        together: ExitStack,
        trigger: str,
        picks: Mapping[str, Mapping[int, int]],
    ) -> tuple[list[Replanned], int]:
        """Take units of the orders' lines back from the location (``outage``: everything it
        can no longer serve; ``capacity``: the units in ``picks``, order id -> line -> units),
        source them again in bulk and write everything back."""
        at = self._clock.now()
        network = uow.locations.list()
        location = next((loc for loc in network if loc.code == location_code), None)
        status = location.status.value if location is not None else "active"
        if trigger == "outage":
            if status not in OUTAGE_STATUSES:
                return [], 0  # it came back meanwhile
            reason = f"{location_code} is {status}"
        else:
            reason = f"{location_code} has no capacity left today"
        loaded = uow.orders.get_many(order_ids, for_update=True)
        affected: list[tuple[Order, list[tuple[OrderLine, int]]]] = []
        freed: list[StockLine] = []
        for order_id in order_ids:
            order = loaded.get(order_id)
            if order is None:
                continue
            moved: list[tuple[OrderLine, int]] = []
            for line in order.lines:
                units = line.quantity_in(QuantityState.ALLOCATED, location_code)
                if trigger != "outage":
                    units = min(units, picks.get(order_id, {}).get(line.line_no, 0))
                if not units:
                    continue
                if (
                    trigger == "outage"
                    and status == "dark"
                    and line.delivery.method not in FROM_PICKUP_STORE
                ):
                    continue
                if not moved:
                    together.enter_context(order.status_changes_together())
                order.move_quantity(
                    line.line_no,
                    units,
                    source=QuantityState.ALLOCATED,
                    target=QuantityState.OPEN,
                    location_code=location_code,
                    actor=actor,
                    reason=f"{trigger}: {reason}",
                    at=at,
                )
                moved.append((line, units))
                freed.append(StockLine(line.sku, location_code, units))
            if moved:
                affected.append((order, moved))
        if not affected:
            return [], 0
        uow.inventory.deallocate(
            freed, at=at, reason=f"{trigger}: {reason}, {len(affected)} order(s) re-planned"
        )
        given_back = 0
        for order, moved in affected:
            back = capacity_given_back(order, location_code, sum(u for _, u in moved), network)
            given_back += back.get(location_code, 0)
        uow.locations.use_capacity({location_code: given_back}, on=at.date())
        skus = sorted({line.sku for _, moved in affected for line, _ in moved})
        items = uow.items.get_many(skus)
        refused = uow.order_refusals.for_orders([order.order_id for order, _ in affected])
        requests = [
            (order, [(line, line.quantity_in(QuantityState.OPEN)) for line, _ in moved])
            for order, moved in affected
        ]
        bulk, rest = plan_in_bulk(
            uow,
            requests,
            items=items,
            locations=network,
            at=at,
            refused=refused,
            explain=len(affected) <= EXPLAINED_UP_TO,
        )
        record_decisions(uow, [found.decision for found in bulk], trigger=trigger, at=at)
        plans: dict[str, SourcingPlan] = {found.order.order_id: found.plan for found in bulk}
        take_planned(
            uow, bulk, locations=network, at=at, reason=f"re-sourced after {trigger}: {reason}"
        )
        for order in rest:  # addresses the engine cannot locate: one by one, as at capture
            open_lines = [
                (line, line.quantity_in(QuantityState.OPEN))
                for line in order.lines
                if line.quantity_in(QuantityState.OPEN)
            ]
            plan = self._engine(
                uow,
                open_lines,
                channel=order.channel.value,
                items=items,
                locations=network,
                at=at,
                order=order,
                trigger=trigger,
                refused=refused.get(order.order_id, {}),
            )
            stock = plan.stock_lines({line.line_no: line for line in order.lines})
            if stock:
                uow.inventory.allocate(
                    stock,
                    at=at,
                    channel=plan.allocation_channel,
                    reason=f"order {order.order_number}: re-sourced after {trigger}: {reason}",
                )
            plans[order.order_id] = plan
        replanned: list[Replanned] = []
        for order, moved in affected:
            plan = plans[order.order_id]
            order.apply_sourcing(
                allocations=plan.allocations, backorders=plan.backorders, actor=actor, at=at
            )
            replanned.extend(
                record_replanned(
                    uow,
                    order,
                    line,
                    plan,
                    from_location=location_code,
                    quantity=units,
                    trigger=trigger,
                    reason=reason,
                    excluded=refused.get(order.order_id, {}).get(line.line_no, ()),
                )
                for line, units in moved
            )
        orders = [order for order, _ in affected]
        together.close()  # the net status changes of each order are evented now
        uow.orders.save_many(orders, at=at)
        for order in orders:
            uow.record(*order.events)
            order.events.clear()
        return replanned, len(orders)

    def run_wave(self, *, limit: int = 1000, principal: Principal = SYSTEM) -> WaveOutcome:
        """Batch (wave) sourcing: the open lines of pending orders whose profile plans in
        ``batch`` mode (left open at capture) are planned together, oldest orders first, as
        one mixed-integer programme (never worse than greedy) within the profiles' time limit,
        then allocated or backordered, each order's decision stored with trigger ``wave``.
        One unit of work. The worker runs it every 15 minutes."""
        with cyclic_gc_paused(), self._uow() as uow:
            at = self._clock.now()
            order_ids = uow.order_refusals.orders_with_open_units(limit=limit)
            loaded = uow.orders.get_many(order_ids, for_update=True)
            network = uow.locations.list()
            profiles = profile_set(uow)
            skus = sorted({line.sku for order in loaded.values() for line, _ in order.to_source()})
            items = uow.items.get_many(skus) if skus else {}
            requests: list[tuple[Order, Sequence[tuple[OrderLine, int]]]] = []
            seconds = 0.0
            for order_id in order_ids:
                order = loaded.get(order_id)
                if order is None or order.on_hold:
                    continue
                chosen: list[tuple[OrderLine, int]] = []
                for line, quantity in order.to_source():
                    destination = (
                        None if line.delivery.method in AT_STORE else geocode(line, network)
                    )
                    if line.delivery.method not in AT_STORE and destination is None:
                        continue
                    sline = sourcing_line(line, quantity, items.get(line.sku), destination)
                    probe = sourcing_order(order, [(sline, line)], at=at, refused={})
                    profile = profiles.choose(probe, sline).profile
                    if profile.mode is PlanningMode.BATCH:
                        chosen.append((line, quantity))
                        seconds = max(seconds, profile.batch_time_limit_seconds)
                if chosen:
                    requests.append((order, chosen))
            if not requests:
                return WaveOutcome(0, 0, 0, "empty")
            refused = uow.order_refusals.for_orders([order.order_id for order, _ in requests])
            bulk, _unplaced = plan_in_bulk(
                uow,
                requests,
                items=items,
                locations=network,
                at=at,
                refused=refused,
                explain=len(requests) <= EXPLAINED_UP_TO,
                wave_seconds=seconds,
            )
            record_decisions(uow, [found.decision for found in bulk], trigger="wave", at=at)
            take_planned(uow, bulk, locations=network, at=at, reason="batch sourcing wave")
            for found in bulk:
                found.order.apply_sourcing(
                    allocations=found.plan.allocations,
                    backorders=found.plan.backorders,
                    actor=principal.actor,
                    at=at,
                )
            orders = [found.order for found in bulk]
            uow.orders.save_many(orders, at=at)
            for order in orders:
                uow.record(*order.events)
                order.events.clear()
            uow.commit()
        planners = {found.decision.planner for found in bulk}
        return WaveOutcome(
            orders=len(bulk),
            allocated_units=sum(q for found in bulk for _, _, q in found.plan.allocations),
            backordered_units=sum(q for found in bulk for _, q, _ in found.plan.backorders),
            planner="batch" if "batch" in planners else "greedy",
        )

    def refresh_bid_prices(
        self, *, orders: int = BID_PRICE_HISTORY_ORDERS, scale: float = 1.0
    ) -> BidPriceOutcome:
        """Compute the stock opportunity cost (bid prices, ``oms.domain.sourcing.bid_prices``)
        from the retailer's recent orders and store it for every decision to read: the demand
        expected until replenishment is what the last ``orders`` stored orders asked, times
        ``scale``, over the stock and today's capacity left now. Only when a profile in force
        weighs ``stock_opportunity`` (otherwise nothing is computed nor stored). The worker
        runs it every hour."""
        if orders <= 0 or not scale > 0:
            raise Invalid(
                "the number of orders and the scale must be positive",
                errors=[{"pointer": "#/orders", "detail": "must be positive"}],
            )
        with self._uow() as uow:
            at = self._clock.now()
            profiles = profile_set(uow)
            if not weighs_opportunity(profiles):
                return BidPriceOutcome(0, 0, 0, 0, "off")
            locations = uow.locations.list()
            history, _ = _recent_requests(uow, orders, locations, at=at)
            skus = sorted({line.sku for request in history for line in request.lines})
            network = Network(snapshot(uow, locations, skus, channel=None, at=at))
            prices = bid_prices(network, demand_lanes(history, network, profiles), scale=scale)
            if prices.status not in ("optimal", "empty"):
                return BidPriceOutcome(len(history), prices.lanes, 0, 0, prices.status)
            uow.sourcing_bid_prices.replace(
                {
                    "stock": prices.stock,
                    "capacity": prices.capacity,
                    "history_orders": len(history),
                    "scale": scale,
                    "lanes": prices.lanes,
                    "expected_units": prices.expected_units,
                    "backordered_units": prices.backordered_units,
                },
                at=at,
            )
            uow.commit()
        return BidPriceOutcome(
            history_orders=len(history),
            lanes=prices.lanes,
            priced_skus=len(prices.stock),
            priced_locations=len(
                {code for by_code in prices.stock.values() for code in by_code}
                | set(prices.capacity)
            ),
            status=prices.status,
        )

    def bid_price_table(self, skus: Sequence[str] = ()) -> BidPriceTable:
        """The newest stored bid-price table; ``skus``: only these items' prices (all when
        empty). NotFound when none was computed yet."""
        with self._uow(read_only=True) as uow:
            stored = uow.sourcing_bid_prices.latest()
        if stored is None:
            raise NotFound(
                "no bid prices computed yet: a profile must weigh stock_opportunity, then the "
                "worker's sourcing.bid_prices job (or a refresh) computes them"
            )
        document = stored.document
        every: dict[str, dict[str, float]] = document.get("stock", {})
        stock = {sku: every[sku] for sku in skus if sku in every} if skus else every
        return BidPriceTable(
            table_id=stored.table_id,
            computed_at=stored.computed_at,
            history_orders=int(document.get("history_orders", 0)),
            scale=float(document.get("scale", 1.0)),
            lanes=int(document.get("lanes", 0)),
            expected_units=float(document.get("expected_units", 0.0)),
            backordered_units=float(document.get("backordered_units", 0.0)),
            priced_skus=len(every),
            stock=stock,
            capacity=dict(document.get("capacity", {})),
        )

    def supply_delayed(self, skus: Sequence[str]) -> None:
        """Inventory's supply hook: supply of these SKUs comes later or not at all."""
        self.replan_waiting(skus, reason="expected supply is late or cancelled")

    def replan_waiting(
        self,
        skus: Sequence[str],
        *,
        reason: str = "expected supply is late",
        principal: Principal = SYSTEM,
        limit: int = 5000,
    ) -> list[Replanned]:
        """The "supply late" trigger: every backordered (or pre-ordered) line of these SKUs,
        first come first served, is sourced again: what a location can serve now is allocated,
        the rest waits with the date open supply covers it now (promise moved, evented). Lines
        whose plan does not change are left alone. One unit of work."""
        with cyclic_gc_paused(), self._uow() as uow, ExitStack() as together:
            at = self._clock.now()
            wanted = sorted(set(skus))
            waiting = [
                found for sku in wanted for found in uow.orders.waiting_lines(sku, limit=limit)
            ]
            waiting.sort(key=lambda w: (w.created_at, w.order_id, w.line_no))
            order_ids = list(dict.fromkeys(found.order_id for found in waiting))
            loaded = uow.orders.get_many(order_ids, for_update=True)
            affected: list[tuple[Order, list[tuple[OrderLine, int]]]] = []
            promised: dict[tuple[str, int], date | None] = {}
            moved_units: dict[str, int] = {}
            for order_id in order_ids:
                order = loaded.get(order_id)
                if order is None or order.on_hold:
                    continue
                moved: list[tuple[OrderLine, int]] = []
                for line in order.lines:
                    units = line.quantity_in(QuantityState.BACKORDERED)
                    if line.sku not in wanted or not units:
                        continue
                    if not moved:
                        together.enter_context(order.status_changes_together())
                    promised[(order_id, line.line_no)] = line.promised_on
                    order.move_quantity(
                        line.line_no,
                        units,
                        source=QuantityState.BACKORDERED,
                        target=QuantityState.OPEN,
                        location_code=None,
                        actor=principal.actor,
                        reason=f"supply_late: {reason}",
                        at=at,
                    )
                    moved.append((line, units))
                    moved_units[line.sku] = moved_units.get(line.sku, 0) + units
                if moved:
                    affected.append((order, moved))
            if not affected:
                return []
            # units of lines not planned here (on hold) still wait ahead in the queue
            still = uow.orders.waiting_quantities(wanted)
            ahead = {sku: max(0, still.get(sku, 0) - moved_units.get(sku, 0)) for sku in wanted}
            network = uow.locations.list()
            items = uow.items.get_many(wanted)
            refused = uow.order_refusals.for_orders([order.order_id for order, _ in affected])
            bulk, _unplaced = plan_in_bulk(
                uow,
                [(order, moved) for order, moved in affected],
                items=items,
                locations=network,
                at=at,
                refused=refused,
                explain=len(affected) <= EXPLAINED_UP_TO,
                already_waiting=ahead,
            )
            changed = [
                found
                for found in bulk
                if found.plan.allocations
                or any(
                    promised.get((found.order.order_id, line_no)) != expected_on
                    for line_no, _, expected_on in found.plan.backorders
                )
            ]
            record_decisions(
                uow, [found.decision for found in changed], trigger="supply_late", at=at
            )
            take_planned(uow, changed, locations=network, at=at, reason=f"re-sourced: {reason}")
            moved_of = {order.order_id: moved for order, moved in affected}
            replanned: list[Replanned] = []
            saved: list[Order] = []
            # orders the engine cannot place (unknown address) or whose plan is the same keep
            # waiting as they were: nothing of theirs is written
            for found in changed:
                order, plan = found.order, found.plan
                order.apply_sourcing(
                    allocations=plan.allocations,
                    backorders=plan.backorders,
                    actor=principal.actor,
                    at=at,
                )
                replanned.extend(
                    record_replanned(
                        uow,
                        order,
                        line,
                        plan,
                        from_location="",
                        quantity=units,
                        trigger="supply_late",
                        reason=reason,
                        excluded=refused.get(order.order_id, {}).get(line.line_no, ()),
                    )
                    for line, units in moved_of[order.order_id]
                )
                saved.append(order)
            together.close()
            if saved:
                uow.orders.save_many(saved, at=at)
                for order in saved:
                    uow.record(*order.events)
                    order.events.clear()
                uow.commit()
            return replanned

    def location_changed(self, location_code: str, old_status: str, new_status: str) -> None:
        """Inventory's location update hook: a location that stopped serving re-plans."""
        if new_status != old_status and new_status in ("offline", "closed", "dark"):
            self.replan_location(location_code)

    # -- what if -------------------------------------------------------------------------------

    def simulate_last(
        self,
        count: int,
        *,
        profile: Mapping[str, Any] | None = None,
        rules: Mapping[str, Any] | None = None,
        outage: Mapping[str, str] | None = None,
    ) -> SimulationOutcome:
        """How the last ``count`` stored orders would be sourced with a proposed change, on
        today's stock and locations plus the units these orders hold (allocated, released), each
        order with its live (not cancelled) quantities, oldest first. Nothing is stored."""
        if not 0 < count <= MAX_SIMULATED_ORDERS:
            raise Invalid(
                f"the number of orders must be between 1 and {MAX_SIMULATED_ORDERS}",
                errors=[{"pointer": "#/orders", "detail": "out of range"}],
            )
        with self._uow(read_only=True) as uow:
            at = self._clock.now()
            locations = uow.locations.list()
            requests, held = _recent_requests(uow, count, locations, at=at)
            if not requests:
                raise Invalid("no stored order can be simulated (none with a known destination)")
            skus = sorted({line.sku for request in requests for line in request.lines})
            snap = [
                _plus(c, {sku: n for (sku, code), n in held.items() if code == c.code})
                for c in snapshot(uow, locations, skus, channel=None, at=at)
            ]
        return self._sourcing.simulate(requests, snap, profile=profile, rules=rules, outage=outage)


def _recent_requests(
    uow: UnitOfWork, count: int, locations: Sequence[Location], *, at: datetime
) -> tuple[list[SourcingOrder], dict[tuple[str, str], int]]:
    """The last ``count`` stored orders as requests (their live quantities, oldest first,
    each placed when it was created; lines without a known destination left out) and the
    units they hold now (allocated, released) per (SKU, location)."""
    requests: list[SourcingOrder] = []
    held: dict[tuple[str, str], int] = {}
    # units the simulated orders hold now go back to the stock they are planned on
    for order_id in uow.order_refusals.last_order_ids(count):
        order = uow.orders.get(order_id)
        if order is None:
            continue
        items = uow.items.get_many(sorted({line.sku for line in order.lines}))
        judged = []
        for line in order.lines:
            for state in (QuantityState.ALLOCATED, QuantityState.RELEASED):
                for code, units in line.at_locations(state):
                    held[(line.sku, code)] = held.get((line.sku, code), 0) + units
            live = line.quantity - line.quantity_in(QuantityState.CANCELLED)
            if live <= 0:
                continue
            destination = None
            if line.delivery.method not in AT_STORE:
                destination = geocode(line, locations)
                if destination is None:
                    continue
            judged.append((sourcing_line(line, live, items.get(line.sku), destination), line))
        if judged:
            requests.append(
                replace(
                    sourcing_order(order, judged, at=at, refused={}),
                    placed_at=order.created_at,
                )
            )
    requests.reverse()  # in the order they came
    return requests, held


def _load(uow: UnitOfWork, order_id: str, *, for_update: bool = True) -> Order:
    order = uow.orders.get(order_id, for_update=for_update)
    if order is None:
        found = uow.orders.id_for_number(order_id)
        order = uow.orders.get(found, for_update=for_update) if found else None
    if order is None:
        raise OrderNotFound(f"no order '{order_id}'", order_id=order_id)
    return order
