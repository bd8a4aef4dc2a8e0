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

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from oms.domain.access import SYSTEM, Principal
from oms.domain.errors import Invalid
from oms.domain.inventory import NO_BUFFER, ChannelBuffer, StockLine
from oms.domain.items import Item
from oms.domain.locations import Location
from oms.domain.orders import (
    AT_STORE,
    FROM_PICKUP_STORE,
    Order,
    OrderChangeRefused,
    OrderLine,
    OrderNotFound,
    QuantityState,
)
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
from oms.domain.sourcing.planner import plan_order
from oms.domain.sourcing.profiles import (
    DEFAULT_PROFILE,
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
from oms.services.sourcing import SimulationOutcome, SourcingService, record_decision


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
    holding = [location for location in locations if location.holds_stock]
    codes = [location.code for location in holding]
    if buffer is None:
        buffer = uow.inventory.channel_buffer(channel) if channel else NO_BUFFER
    raw = uow.inventory.atp(list(skus), at=at, location_codes=codes) if codes and skus else {}
    atp: dict[str, dict[str, int]] = {}
    for sku, by_location in raw.items():
        for code, units in by_location.items():
            left = buffer.apply(units)
            if left > 0:
                atp.setdefault(code, {})[sku] = left
    capped = [location.code for location in holding if location.daily_capacity is not None]
    used = uow.locations.capacity_used(capped, on=at.date()) if capped else {}
    result = []
    for location in holding:
        remaining: int | None = None
        if location.daily_capacity is not None:
            left = max(0, location.daily_capacity - used.get(location.code, 0))
            # capacity counted in orders: an exhausted day stops the location, otherwise the
            # engine does not limit units (it plans in units)
            unit = getattr(location.capacity_unit, "value", location.capacity_unit)
            remaining = left if unit == "units" or left == 0 else None
        status = (statuses or {}).get(location.code, LocationStatus(location.status.value))
        result.append(
            CandidateLocation(
                code=location.code,
                type=LocationType(location.type.value),
                status=status,
                capabilities=frozenset(Capability(c.value) for c in location.capabilities),
                point=GeoPoint(location.latitude, location.longitude),
                atp=atp.get(location.code, {}),
                remaining_capacity=remaining,
                handling_cost=location.handling_cost,
                pick_hours=location.pick_minutes / 60.0,
                cut_off_hour=_cut_off_hour(location, at),
                region=str(location.address.get("region", "") or ""),
            )
        )
    return result


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
    options = {
        line.line_no: {loc.code for loc in candidates(line, items.get(line.sku), locations)}
        for line, _ in short
    }
    skus = sorted({line.sku for line, _ in short})
    codes = sorted({code for found in options.values() for code in found})
    supply = uow.inventory.supply(skus, location_codes=codes) if codes else []
    waiting = dict(
        already_waiting if already_waiting is not None else uow.orders.waiting_quantities(skus)
    )
    result: list[tuple[int, int, date | None]] = []
    for line, quantity in short:
        need = waiting.get(line.sku, 0) + quantity
        expected_on: date | None = None
        covered = 0
        for supply_line in sorted(supply, key=lambda s: (s.expected_on, s.location_code)):
            if (
                supply_line.sku != line.sku
                or supply_line.location_code not in options[line.line_no]
            ):
                continue
            covered += supply_line.quantity
            if covered >= need:
                expected_on = supply_line.expected_on
                break
        waiting[line.sku] = need
        result.append((line.line_no, quantity, expected_on))
    return result


class EngineSourcing:
    """Sources order lines with the sourcing engine and stores each decision (LineSourcing)."""

    def __init__(self, *, fallback: LineSourcing = source_lines) -> None:
        self._fallback = fallback
        self._profiles = ProfileSetCache()

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
        if judged:
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
            plan = plan_order(request, Network(snap), self._profiles.get(uow))
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
        return SourcingPlan(allocations, backorders, channel if buffered else None)


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
        refused = uow.order_refusals.for_order(order.order_id)
        plan = self._engine(
            uow,
            [(line, line.quantity_in(QuantityState.OPEN))],
            channel=order.channel.value,
            items=uow.items.get_many([line.sku]),
            locations=uow.locations.list() if locations is None else locations,
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
        re_sourced: dict[str, int] = {}
        for _, code, units in plan.allocations:
            re_sourced[code] = re_sourced.get(code, 0) + units
        backordered = sum(units for _, units, _ in plan.backorders)
        uow.record(
            OrderLineReplanned(
                order_id=order.order_id,
                line_no=line_no,
                sku=line.sku,
                from_location=location_code,
                quantity=quantity,
                trigger=trigger,
                reason=reason,
                re_sourced=re_sourced,
                backordered=backordered,
            )
        )
        return Replanned(
            order_id=order.order_id,
            line_no=line_no,
            sku=line.sku,
            from_location=location_code,
            quantity=quantity,
            re_sourced=re_sourced,
            backordered=backordered,
            excluded=sorted(refused.get(line_no, frozenset())),
        )

    # -- outages -------------------------------------------------------------------------------

    def replan_location(
        self, location_code: str, *, principal: Principal = SYSTEM, limit: int = 100_000
    ) -> OutageOutcome:
        """Re-source what a location can no longer serve, as its current status says: every
        allocated (not yet released) unit when it is ``offline`` or ``closed``; only walk-in
        collections (pickup, curbside, reserve and collect) when it is ``dark``. Each affected
        line is re-sourced or backordered (none lost), evented, in one unit of work."""
        with self._uow() as uow:
            location = uow.locations.require(location_code)
            status = location.status.value
            at = self._clock.now()
            outcome_lines: list[Replanned] = []
            orders = 0
            if status in ("offline", "closed", "dark"):
                network = uow.locations.list()
                for order_id in uow.order_refusals.orders_allocated_at(location_code, limit=limit):
                    order = _load(uow, order_id)
                    touched = False
                    for line in order.lines:
                        units = line.quantity_in(QuantityState.ALLOCATED, location_code)
                        if not units:
                            continue
                        if status == "dark" and line.delivery.method not in FROM_PICKUP_STORE:
                            continue
                        outcome_lines.append(
                            self._take_back(
                                uow,
                                order,
                                line.line_no,
                                location_code,
                                units,
                                states=(QuantityState.ALLOCATED,),
                                trigger="outage",
                                reason=f"{location_code} is {status}",
                                actor=principal.actor,
                                at=at,
                                refuse=False,
                                locations=network,
                            )
                        )
                        touched = True
                    if touched:
                        orders += 1
                        uow.orders.save(order, at=at)
                        uow.record(*order.events)
                        order.events.clear()
            uow.commit()
        return OutageOutcome(
            location_code=location_code,
            status=status,
            affected_orders=orders,
            affected_units=sum(r.quantity for r in outcome_lines),
            re_sourced_units=sum(sum(r.re_sourced.values()) for r in outcome_lines),
            backordered_units=sum(r.backordered for r in outcome_lines),
            lines=outcome_lines,
        )

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
                    judged.append(
                        (sourcing_line(line, live, items.get(line.sku), destination), line)
                    )
                if judged:
                    requests.append(
                        replace(
                            sourcing_order(order, judged, at=at, refused={}),
                            placed_at=order.created_at,
                        )
                    )
            requests.reverse()  # in the order they came
            if not requests:
                raise Invalid("no stored order can be simulated (none with a known destination)")
            skus = sorted({line.sku for request in requests for line in request.lines})
            snap = [
                _plus(c, {sku: n for (sku, code), n in held.items() if code == c.code})
                for c in snapshot(uow, locations, skus, channel=None, at=at)
            ]
        return self._sourcing.simulate(requests, snap, profile=profile, rules=rules, outage=outage)


def _load(uow: UnitOfWork, order_id: str, *, for_update: bool = True) -> Order:
    order = uow.orders.get(order_id, for_update=for_update)
    if order is None:
        found = uow.orders.id_for_number(order_id)
        order = uow.orders.get(found, for_update=for_update) if found else None
    if order is None:
        raise OrderNotFound(f"no order '{order_id}'", order_id=order_id)
    return order
