"""Candidate filters: each a named pure function saying which locations it excludes and why.

A filter looks at one order line against every location of the snapshot at once (arrays, so that
500 locations cost microseconds) and returns an :class:`Exclusion`: a mask of the locations it
rules out and a function that words the reason for one of them. The explanation of a decision
names, for each excluded location, the first filter (in :data:`FILTERS` order) that excluded it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from oms.domain.sourcing.model import (
    COLLECTED_AT_LOCATION,
    DEFAULT_TYPES,
    REQUIRED_CAPABILITY,
    WALK_IN,
    BoolArray,
    Capability,
    DeliveryMethod,
    FloatArray,
    IntArray,
    LocationStatus,
    LocationType,
    Network,
    SourcingLine,
    SourcingOrder,
)
from oms.domain.sourcing.profiles import Profile

SHIPPING_METHODS = frozenset(
    {DeliveryMethod.SHIP, DeliveryMethod.DROPSHIP, DeliveryMethod.SHIP_TO_STORE}
)
STORE_TYPES = frozenset({LocationType.STORE, LocationType.DARK_STORE})


@dataclass(slots=True)
class LineContext:
    """Everything the filters and cost terms need about one line, computed once."""

    network: Network
    profile: Profile
    order: SourcingOrder
    line: SourcingLine
    distance_km: FloatArray
    """From each location to where the parcel goes (the customer or the pickup store)."""
    zone: IntArray
    late_days: FloatArray
    atp: FloatArray
    refused: frozenset[str]
    destination_known: bool = True


@dataclass(frozen=True, slots=True)
class Exclusion:
    mask: BoolArray
    reason: Callable[[int], str]


CandidateFilter = Callable[[LineContext], Exclusion | None]
"""None: the filter excludes nothing for this line."""


def status(ctx: LineContext) -> Exclusion:
    network = ctx.network
    never = network.status_is(LocationStatus.OFFLINE) | network.status_is(LocationStatus.CLOSED)
    walk_in = ctx.line.delivery_method in WALK_IN
    mask = never | network.status_is(LocationStatus.DARK) if walk_in else never

    def reason(i: int) -> str:
        state = network.locations[i].status
        if state is LocationStatus.DARK:
            return f"dark: closed to walk-in shoppers, cannot serve {ctx.line.delivery_method}"
        return f"{state}: takes no orders"

    return Exclusion(mask, reason)


def capability(ctx: LineContext) -> Exclusion:
    needed = REQUIRED_CAPABILITY[ctx.line.delivery_method]
    mask = ~ctx.network.capable[needed]
    return Exclusion(mask, lambda i: f"cannot {needed.value}")


def location_type(ctx: LineContext) -> Exclusion:
    types = ctx.profile.allowed_types or DEFAULT_TYPES[ctx.line.delivery_method]
    mask = ~ctx.network.types_mask(types)

    def reason(i: int) -> str:
        allowed = ", ".join(sorted(t.value for t in types))
        return f"a {ctx.network.locations[i].type.value} is not allowed here (only {allowed})"

    return Exclusion(mask, reason)


def pickup_location(ctx: LineContext) -> Exclusion | None:
    """Collected lines come from the store the customer named; a ship-to-store line needs a
    store that can receive the transfer."""
    line = ctx.line
    network = ctx.network
    if line.delivery_method is DeliveryMethod.SHIP_TO_STORE:
        store = network.index.get(line.pickup_location or "")
        if store is None:
            return None  # the planner reports the unknown store for every location
        receiving = network.locations[store]
        if Capability.RECEIVE_TRANSFER in receiving.capabilities and receiving.status in (
            LocationStatus.ACTIVE,
            LocationStatus.DARK,
        ):
            return None
        return Exclusion(
            np.ones(network.size, dtype=np.bool_),
            lambda i: f"{line.pickup_location} cannot receive a transfer for the customer now",
        )
    if line.delivery_method not in COLLECTED_AT_LOCATION:
        return None
    mask = np.ones(ctx.network.size, dtype=np.bool_)
    index = ctx.network.index.get(line.pickup_location or "")
    if index is not None:
        mask[index] = False
    return Exclusion(mask, lambda i: f"the customer collects at {line.pickup_location}")


def listed_locations(ctx: LineContext) -> Exclusion | None:
    profile = ctx.profile
    if not profile.excluded_locations and not (
        profile.preferred_only and profile.preferred_locations
    ):
        return None
    codes = ctx.network.codes
    excluded = np.array([code in profile.excluded_locations for code in codes], dtype=np.bool_)
    if profile.preferred_only and profile.preferred_locations:
        excluded |= np.array(
            [code not in profile.preferred_locations for code in codes], dtype=np.bool_
        )

    def reason(i: int) -> str:
        if codes[i] in profile.excluded_locations:
            return f"excluded by profile '{profile.name}'"
        return f"profile '{profile.name}' uses only its preferred locations"

    return Exclusion(excluded, reason)


def refused(ctx: LineContext) -> Exclusion | None:
    if not ctx.refused:
        return None
    mask = np.array([code in ctx.refused for code in ctx.network.codes], dtype=np.bool_)
    return Exclusion(mask, lambda i: "refused this line before (rejected or short-picked)")


def item_eligibility(ctx: LineContext) -> Exclusion | None:
    line = ctx.line
    network = ctx.network
    size = network.size
    mask = np.zeros(size, dtype=np.bool_)
    if not line.pickup_allowed and line.delivery_method in COLLECTED_AT_LOCATION:
        mask |= True
    shipping_from_store = line.delivery_method in SHIPPING_METHODS
    if not line.ship_from_store_allowed and shipping_from_store:
        mask |= network.types_mask(STORE_TYPES)
    if line.hazmat and shipping_from_store:
        mask |= ~network.types_mask(ctx.profile.hazmat_types)
    if not mask.any():
        return None

    def reason(i: int) -> str:
        kind = network.locations[i].type
        if not line.pickup_allowed and line.delivery_method in COLLECTED_AT_LOCATION:
            return f"{line.sku} cannot be collected in store"
        if not line.ship_from_store_allowed and kind in STORE_TYPES:
            return f"{line.sku} may not ship from a store"
        return f"{line.sku} is hazardous and may not ship from a {kind.value}"

    return Exclusion(mask, reason)


def max_distance(ctx: LineContext) -> Exclusion | None:
    limit = ctx.profile.max_distance_km
    if limit is None or ctx.line.delivery_method in COLLECTED_AT_LOCATION:
        return None
    distance = ctx.distance_km
    return Exclusion(
        distance > limit, lambda i: f"{distance[i]:.0f} km away, beyond the {limit:.0f} km limit"
    )


def capacity(ctx: LineContext) -> Exclusion:
    remaining = ctx.network.capacity
    return Exclusion(remaining < 1, lambda i: "no fulfillment capacity left today")


def promise(ctx: LineContext) -> Exclusion | None:
    limit = ctx.profile.max_late_days
    if limit is None or ctx.order.promise_on is None:
        return None
    late = ctx.late_days
    return Exclusion(
        late > limit,
        lambda i: (
            f"would arrive {late[i]:.0f} day(s) after the promise date "
            f"{ctx.order.promise_on} (cut-off, pick time and transit)"
        ),
    )


def minimum_atp(ctx: LineContext) -> Exclusion:
    minimum = max(1, ctx.profile.minimum_atp)
    atp = ctx.atp
    sku = ctx.line.sku

    def reason(i: int) -> str:
        if atp[i] <= 0:
            return f"no {sku} available"
        return f"only {atp[i]:.0f} {sku} available, the profile needs at least {minimum}"

    return Exclusion(atp < minimum, reason)


FILTERS: Mapping[str, CandidateFilter] = {
    "status": status,
    "capability": capability,
    "location_type": location_type,
    "pickup_location": pickup_location,
    "listed_locations": listed_locations,
    "refused": refused,
    "item_eligibility": item_eligibility,
    "max_distance": max_distance,
    "capacity": capacity,
    "promise": promise,
    "minimum_atp": minimum_atp,
}


LINE_FILTERS = frozenset({"refused", "item_eligibility", "minimum_atp"})
"""Filters that look at the line itself (its id, item flags, stock); the others read only what
the lines of a group share (profile, delivery method, where the parcel goes, the order)."""


LINE_CHECKS = tuple(f for name, f in FILTERS.items() if name in LINE_FILTERS)


def _nowhere(ctx: LineContext) -> tuple[BoolArray, list[tuple[str, Exclusion]]]:
    nowhere = np.zeros(ctx.network.size, dtype=np.bool_)
    pickup = ctx.line.pickup_location
    exclusion = Exclusion(
        ~nowhere, lambda i: f"the pickup location {pickup} is not in the snapshot"
    )
    return nowhere, [("pickup_location", exclusion)]


def candidates(ctx: LineContext) -> tuple[BoolArray, list[tuple[str, Exclusion]]]:
    """The mask of locations that pass every filter, and each filter's exclusion (in order)."""
    masks, exclusions = group_candidates([ctx])
    return masks[0], exclusions[0]


@dataclass(frozen=True, slots=True)
class SharedFilters:
    """The filters outside :data:`LINE_FILTERS` for lines that share profile, delivery method
    and place (None: the filter excludes nothing), and every location they exclude."""

    found: Mapping[str, Exclusion | None]
    excluded: BoolArray


def shared_filters(ctx: LineContext) -> SharedFilters:
    found: dict[str, Exclusion | None] = {}
    excluded = np.zeros(ctx.network.size, dtype=np.bool_)
    for name, candidate_filter in FILTERS.items():
        if name in LINE_FILTERS:
            continue
        exclusion = candidate_filter(ctx)
        found[name] = exclusion
        if exclusion is not None:
            excluded |= exclusion.mask
    return SharedFilters(found, excluded)


def group_candidates(
    contexts: Sequence[LineContext], shared: SharedFilters | None = None, *, explain: bool = True
) -> tuple[BoolArray, list[list[tuple[str, Exclusion]]]]:
    """:func:`candidates` of each line of one group (lines that share profile, delivery method
    and place), the masks as one array (lines x locations): the filters outside
    :data:`LINE_FILTERS` run once for the group (``shared``: already run for another group that
    shares them). Without ``explain`` the exclusions, only read to explain, are left empty."""
    first = contexts[0]
    size = first.network.size
    if not first.destination_known:
        unknown = [_nowhere(ctx) for ctx in contexts]
        return np.zeros((len(contexts), size), dtype=np.bool_), [e for _, e in unknown]
    if shared is None:
        shared = shared_filters(first)
    out = np.zeros((len(contexts), size), dtype=np.bool_)
    out |= shared.excluded
    exclusions: list[list[tuple[str, Exclusion]]] = []
    for i, ctx in enumerate(contexts):
        excluded: list[tuple[str, Exclusion]] = []
        exclusions.append(excluded)
        if not explain:
            for line_filter in LINE_CHECKS:
                found = line_filter(ctx)
                if found is not None:
                    out[i] |= found.mask
            continue
        for name, candidate_filter in FILTERS.items():
            if name in LINE_FILTERS:
                found = candidate_filter(ctx)
                if found is not None:
                    out[i] |= found.mask
            else:
                found = shared.found[name]
            if found is not None:
                excluded.append((name, found))
    return ~out, exclusions


def first_reasons(
    exclusions: list[tuple[str, Exclusion]], indices: list[int]
) -> dict[int, tuple[str, str]]:
    """For each location index, the first filter that excluded it and its reason."""
    found: dict[int, tuple[str, str]] = {}
    for index in indices:
        for name, exclusion in exclusions:
            if exclusion.mask[index]:
                found[index] = (name, exclusion.reason(index))
                break
    return found


def excluded_counts(exclusions: list[tuple[str, Exclusion]], size: int) -> dict[str, int]:
    """How many locations each filter excluded first."""
    counts: dict[str, int] = {}
    seen = np.zeros(size, dtype=np.bool_)
    for name, exclusion in exclusions:
        fresh = exclusion.mask & ~seen
        count = int(fresh.sum())
        if count:
            counts[name] = count
        seen |= exclusion.mask
    return counts
