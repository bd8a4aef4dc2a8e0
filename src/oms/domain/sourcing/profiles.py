"""Sourcing profiles and the rules that choose one per order line: data, never code.

A profile names its filter settings, the weights of the cost terms, its split policy and its
planning mode. Documents (JSON-ready dicts) go through :func:`profile_from_document`, which checks
every field and raises :class:`InvalidProfile` with a JSON pointer for each problem.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from oms.domain.errors import Invalid
from oms.domain.sourcing.model import DeliveryMethod, LocationType, SourcingLine, SourcingOrder


class SplitPolicy(StrEnum):
    NEVER = "never"
    """One location per group of lines going to one place, or backorder."""
    MINIMISE = "minimise"
    """Fewest shipments first, then cost; a line is split only when no location has all of it."""
    ALLOW = "allow"
    """Cost decides; a line may be split across locations (up to max_shipments)."""


class PlanningMode(StrEnum):
    REAL_TIME = "real_time"
    BATCH = "batch"


E = TypeVar("E", bound=StrEnum)


class InvalidProfile(Invalid):
    slug = "sourcing-profile-invalid"
    title = "The sourcing profile is not valid"


COST_TERM_NAMES = (
    "shipping",
    "handling",
    "split",
    "lateness",
    "store_priority",
    "stock_balance",
    "stock_opportunity",
)

OPT_IN_TERMS = frozenset({"stock_opportunity"})
"""Terms a profile switches on by giving them a weight (missing: 0, not 1): the stock
opportunity cost trades a shipment now against the backorder of a later order, which is the
retailer's call, not the engine's."""


@dataclass(frozen=True, slots=True)
class ShippingZone:
    """Parcels going at most ``up_to_km`` cost ``base + per_kg * weight`` and take ``days``."""

    up_to_km: float
    base: Decimal
    per_kg: Decimal
    transit_days: int


DEFAULT_ZONES = (
    ShippingZone(150.0, Decimal("5.50"), Decimal("0.40"), 1),
    ShippingZone(500.0, Decimal("7.00"), Decimal("0.60"), 2),
    ShippingZone(1200.0, Decimal("8.50"), Decimal("0.85"), 3),
    ShippingZone(2500.0, Decimal("10.00"), Decimal("1.10"), 4),
    ShippingZone(math.inf, Decimal("12.00"), Decimal("1.40"), 5),
)


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str = ""
    # -- candidate filters ----------------------------------------------------------------
    allowed_types: frozenset[LocationType] | None = None
    """None: the delivery method's usual types (see ``model.DEFAULT_TYPES``)."""
    max_distance_km: float | None = None
    excluded_locations: frozenset[str] = frozenset()
    preferred_locations: frozenset[str] = frozenset()
    preferred_only: bool = False
    """True: only preferred locations are candidates. False: preferred ones rank first (cost)."""
    hazmat_types: frozenset[LocationType] = frozenset({LocationType.DC, LocationType.VENDOR})
    minimum_atp: int = 1
    max_late_days: int | None = None
    """Candidates that would arrive more than this many days after the promise date are out."""
    # -- objective ------------------------------------------------------------------------
    weights: Mapping[str, Decimal] = field(default_factory=dict)
    """Multiplier per cost term (missing: 1, except ``stock_opportunity``: 0). 0 switches a
    term off."""
    zones: tuple[ShippingZone, ...] = DEFAULT_ZONES
    split_penalty: Decimal = Decimal("3.00")
    """Cost of each shipment beyond the first for one destination."""
    lateness_per_day: Decimal = Decimal("4.00")
    priority_per_rank: Decimal = Decimal("0.05")
    """Per unit and per rank of store priority."""
    protected_types: frozenset[LocationType] = frozenset({LocationType.STORE})
    protected_units: int = 2
    """Last units kept for walk-in shoppers: taking them costs ``last_unit_penalty`` each."""
    last_unit_penalty: Decimal = Decimal("2.50")
    preferred_discount: Decimal = Decimal("0.50")
    """Per unit, taken off the cost at a preferred location."""
    backorder_penalty: Decimal = Decimal("40.00")
    """Per unit that cannot be served: how much a backorder hurts, to weigh against costs."""
    opportunity_may_backorder: bool = False
    """True: a line waits (is backordered) when its cheapest source, counting the
    ``stock_opportunity`` term, costs more than ``backorder_penalty``. False: that term only
    chooses among sources; a line whose paid cost is under the penalty is served."""
    # -- split and planning ---------------------------------------------------------------
    split_policy: SplitPolicy = SplitPolicy.ALLOW
    max_shipments: int = 3
    mode: PlanningMode = PlanningMode.REAL_TIME
    batch_time_limit_seconds: float = 5.0

    def weight(self, term: str) -> float:
        default = Decimal(0) if term in OPT_IN_TERMS else Decimal(1)
        return float(self.weights.get(term, default))


@dataclass(frozen=True, slots=True)
class ProfileRule:
    """Choose ``profile`` for a line when every condition that is set holds."""

    name: str
    profile: str
    priority: int = 100
    """Lower numbers are tried first."""
    channels: frozenset[str] = frozenset()
    delivery_methods: frozenset[DeliveryMethod] = frozenset()
    regions: frozenset[str] = frozenset()
    item_flags: frozenset[str] = frozenset()
    """All of: ship_alone, hazmat, not_pickup_allowed, not_ship_from_store_allowed."""
    min_order_value: Decimal | None = None
    max_order_value: Decimal | None = None

    def matches(self, order: SourcingOrder, line: SourcingLine) -> bool:
        if self.channels and order.channel not in self.channels:
            return False
        if self.delivery_methods and line.delivery_method not in self.delivery_methods:
            return False
        if self.regions and order.destination_region not in self.regions:
            return False
        if self.item_flags and not self.item_flags <= item_flags(line):
            return False
        if self.min_order_value is not None and order.order_value < self.min_order_value:
            return False
        return not (self.max_order_value is not None and order.order_value > self.max_order_value)


ITEM_FLAGS = ("ship_alone", "hazmat", "not_pickup_allowed", "not_ship_from_store_allowed")


def item_flags(line: SourcingLine) -> frozenset[str]:
    flags = set()
    if line.ship_alone:
        flags.add("ship_alone")
    if line.hazmat:
        flags.add("hazmat")
    if not line.pickup_allowed:
        flags.add("not_pickup_allowed")
    if not line.ship_from_store_allowed:
        flags.add("not_ship_from_store_allowed")
    return frozenset(flags)


DEFAULT_PROFILE = "default"


@dataclass(frozen=True, slots=True)
class ProfileChoice:
    profile: Profile
    rule: str | None
    """The rule that chose it; None when no rule matched and the default applied."""


class ProfileSet:
    """Profiles by name plus the rules that pick one per line (first match by priority)."""

    def __init__(
        self,
        profiles: Iterable[Profile],
        rules: Iterable[ProfileRule] = (),
        *,
        default: str = DEFAULT_PROFILE,
    ) -> None:
        self.profiles: dict[str, Profile] = {p.name: p for p in profiles}
        self.rules: tuple[ProfileRule, ...] = tuple(
            sorted(rules, key=lambda rule: (rule.priority, rule.name))
        )
        if default not in self.profiles:
            raise InvalidProfile(f"the default profile '{default}' is not defined")
        for rule in self.rules:
            if rule.profile not in self.profiles:
                raise InvalidProfile(
                    f"rule '{rule.name}' names an unknown profile '{rule.profile}'"
                )
        self.default = default

    def choose(self, order: SourcingOrder, line: SourcingLine) -> ProfileChoice:
        for rule in self.rules:
            if rule.matches(order, line):
                return ProfileChoice(self.profiles[rule.profile], rule.name)
        return ProfileChoice(self.profiles[self.default], None)

    @classmethod
    def single(cls, profile: Profile) -> ProfileSet:
        return cls([profile], default=profile.name)


# -- documents ---------------------------------------------------------------------------------


class _Reader:
    def __init__(self, document: Mapping[str, Any], pointer: str) -> None:
        if not isinstance(document, Mapping):
            raise InvalidProfile(
                "a profile must be a JSON object",
                errors=[{"pointer": pointer or "#", "detail": "not an object"}],
            )
        self.document = document
        self.pointer = pointer
        self.errors: list[dict[str, str]] = []

    def fail(self, key: str, detail: str) -> None:
        self.errors.append({"pointer": f"{self.pointer}/{key}", "detail": detail})

    def get(self, key: str, default: Any = None) -> Any:
        return self.document.get(key, default)

    def decimal(self, key: str, default: Decimal, *, minimum: Decimal = Decimal(0)) -> Decimal:
        raw = self.document.get(key)
        if raw is None:
            return default
        if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
            self.fail(key, "must be a decimal number (a string like '2.50' is exact)")
            return default
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            self.fail(key, "must be a decimal number")
            return default
        if not value.is_finite() or value < minimum:
            self.fail(key, f"must be a finite number >= {minimum}")
            return default
        return value

    def integer(self, key: str, default: int, *, minimum: int = 0, maximum: int = 10**6) -> int:
        raw = self.document.get(key)
        if raw is None:
            return default
        if isinstance(raw, bool) or not isinstance(raw, int) or not minimum <= raw <= maximum:
            self.fail(key, f"must be a whole number from {minimum} to {maximum}")
            return default
        return raw

    def optional_integer(self, key: str, *, minimum: int = 0) -> int | None:
        if self.document.get(key) is None:
            return None
        return self.integer(key, 0, minimum=minimum)

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        raw = self.document.get(key)
        if raw is None:
            return default
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw >= minimum:
            self.fail(key, f"must be a number >= {minimum}")
            return default
        if not math.isfinite(raw):
            self.fail(key, "must be finite")
            return default
        return float(raw)

    def boolean(self, key: str, default: bool) -> bool:
        raw = self.document.get(key)
        if raw is None:
            return default
        if not isinstance(raw, bool):
            self.fail(key, "must be true or false")
            return default
        return raw

    def strings(self, key: str) -> frozenset[str]:
        raw = self.document.get(key)
        if raw is None:
            return frozenset()
        if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
            self.fail(key, "must be a list of non-empty strings")
            return frozenset()
        return frozenset(raw)

    def enums(self, key: str, kind: type[E]) -> frozenset[E] | None:
        raw = self.document.get(key)
        if raw is None:
            return None
        if not isinstance(raw, list):
            self.fail(key, "must be a list")
            return None
        values = set()
        for value in raw:
            try:
                values.add(kind(value))
            except ValueError:
                allowed = ", ".join(member.value for member in kind)
                self.fail(key, f"'{value}' is not one of {allowed}")
        return frozenset(values)

    def enum(self, key: str, kind: type[E], default: E) -> E:
        raw = self.document.get(key)
        if raw is None:
            return default
        try:
            return kind(raw)
        except ValueError:
            self.fail(key, f"must be one of {', '.join(member.value for member in kind)}")
            return default

    def unknown(self, known: Iterable[str]) -> None:
        for key in sorted(set(self.document) - set(known)):
            self.fail(key, "unknown field")


_PROFILE_FIELDS = (
    "name",
    "description",
    "allowed_types",
    "max_distance_km",
    "excluded_locations",
    "preferred_locations",
    "preferred_only",
    "hazmat_types",
    "minimum_atp",
    "max_late_days",
    "weights",
    "zones",
    "split_penalty",
    "lateness_per_day",
    "priority_per_rank",
    "protected_types",
    "protected_units",
    "last_unit_penalty",
    "preferred_discount",
    "backorder_penalty",
    "opportunity_may_backorder",
    "split_policy",
    "max_shipments",
    "mode",
    "batch_time_limit_seconds",
)


def profile_from_document(document: Mapping[str, Any], *, pointer: str = "#") -> Profile:
    """Check and read a profile document; every problem is reported at once."""
    reader = _Reader(document, pointer)
    reader.unknown(_PROFILE_FIELDS)
    name = reader.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        reader.fail("name", "a profile needs a name of 1 to 100 characters")
        name = ""
    description = reader.get("description", "")
    if not isinstance(description, str):
        reader.fail("description", "must be text")
        description = ""
    defaults = Profile(name="defaults")
    max_distance = reader.get("max_distance_km")
    if max_distance is not None:
        max_distance = reader.number("max_distance_km", 0.0, minimum=1.0)
    weights: dict[str, Decimal] = {}
    raw_weights = reader.get("weights") or {}
    if not isinstance(raw_weights, Mapping):
        reader.fail("weights", "must be an object of cost term -> weight")
    else:
        weight_reader = _Reader(raw_weights, f"{pointer}/weights")
        weight_reader.unknown(COST_TERM_NAMES)
        for term in COST_TERM_NAMES:
            if term in raw_weights:
                weights[term] = weight_reader.decimal(term, Decimal(1))
        reader.errors.extend(weight_reader.errors)
    zones = defaults.zones
    raw_zones = reader.get("zones")
    if raw_zones is not None:
        zones = _zones(raw_zones, reader)
    profile = Profile(
        name=name.strip(),
        description=description,
        allowed_types=reader.enums("allowed_types", LocationType),
        max_distance_km=max_distance,
        excluded_locations=reader.strings("excluded_locations"),
        preferred_locations=reader.strings("preferred_locations"),
        preferred_only=reader.boolean("preferred_only", False),
        hazmat_types=reader.enums("hazmat_types", LocationType) or defaults.hazmat_types,
        minimum_atp=reader.integer("minimum_atp", 1, minimum=1),
        max_late_days=reader.optional_integer("max_late_days"),
        weights=weights,
        zones=zones,
        split_penalty=reader.decimal("split_penalty", defaults.split_penalty),
        lateness_per_day=reader.decimal("lateness_per_day", defaults.lateness_per_day),
        priority_per_rank=reader.decimal("priority_per_rank", defaults.priority_per_rank),
        protected_types=(
            reader.enums("protected_types", LocationType)
            if reader.get("protected_types") is not None
            else defaults.protected_types
        )
        or frozenset(),
        protected_units=reader.integer("protected_units", defaults.protected_units),
        last_unit_penalty=reader.decimal("last_unit_penalty", defaults.last_unit_penalty),
        preferred_discount=reader.decimal("preferred_discount", defaults.preferred_discount),
        backorder_penalty=reader.decimal("backorder_penalty", defaults.backorder_penalty),
        opportunity_may_backorder=reader.boolean(
            "opportunity_may_backorder", defaults.opportunity_may_backorder
        ),
        split_policy=reader.enum("split_policy", SplitPolicy, defaults.split_policy),
        max_shipments=reader.integer(
            "max_shipments", defaults.max_shipments, minimum=1, maximum=50
        ),
        mode=reader.enum("mode", PlanningMode, defaults.mode),
        batch_time_limit_seconds=reader.number(
            "batch_time_limit_seconds", defaults.batch_time_limit_seconds, minimum=0.1
        ),
    )
    if reader.errors:
        raise InvalidProfile(
            f"the profile has {len(reader.errors)} problem(s): "
            + "; ".join(f"{e['pointer']}: {e['detail']}" for e in reader.errors),
            errors=reader.errors,
        )
    return profile


def _zones(raw: Any, reader: _Reader) -> tuple[ShippingZone, ...]:
    if not isinstance(raw, list) or not raw:
        reader.fail("zones", "must be a non-empty list of zones")
        return DEFAULT_ZONES
    zones = []
    for i, item in enumerate(raw):
        zone_reader = _Reader(item, f"{reader.pointer}/zones/{i}")
        zone_reader.unknown(("up_to_km", "base", "per_kg", "transit_days"))
        up_to = item.get("up_to_km") if isinstance(item, Mapping) else None
        zones.append(
            ShippingZone(
                up_to_km=math.inf
                if up_to is None
                else zone_reader.number("up_to_km", math.inf, minimum=0.0),
                base=zone_reader.decimal("base", Decimal(0)),
                per_kg=zone_reader.decimal("per_kg", Decimal(0)),
                transit_days=zone_reader.integer("transit_days", 1, maximum=60),
            )
        )
        reader.errors.extend(zone_reader.errors)
    if any(b.up_to_km <= a.up_to_km for a, b in itertools.pairwise(zones)):
        reader.fail("zones", "zones must be ordered by increasing up_to_km")
    if zones[-1].up_to_km != math.inf:
        reader.fail("zones", "the last zone must have no up_to_km (it covers every distance)")
    return tuple(zones)


def _enum_list(values: Iterable[StrEnum]) -> list[str]:
    return sorted(value.value for value in values)


def profile_to_document(profile: Profile) -> dict[str, Any]:
    return {
        "name": profile.name,
        "description": profile.description,
        "allowed_types": None
        if profile.allowed_types is None
        else _enum_list(profile.allowed_types),
        "max_distance_km": profile.max_distance_km,
        "excluded_locations": sorted(profile.excluded_locations),
        "preferred_locations": sorted(profile.preferred_locations),
        "preferred_only": profile.preferred_only,
        "hazmat_types": _enum_list(profile.hazmat_types),
        "minimum_atp": profile.minimum_atp,
        "max_late_days": profile.max_late_days,
        "weights": {term: str(value) for term, value in sorted(profile.weights.items())},
        "zones": [
            {
                **({} if zone.up_to_km == math.inf else {"up_to_km": zone.up_to_km}),
                "base": str(zone.base),
                "per_kg": str(zone.per_kg),
                "transit_days": zone.transit_days,
            }
            for zone in profile.zones
        ],
        "split_penalty": str(profile.split_penalty),
        "lateness_per_day": str(profile.lateness_per_day),
        "priority_per_rank": str(profile.priority_per_rank),
        "protected_types": _enum_list(profile.protected_types),
        "protected_units": profile.protected_units,
        "last_unit_penalty": str(profile.last_unit_penalty),
        "preferred_discount": str(profile.preferred_discount),
        "backorder_penalty": str(profile.backorder_penalty),
        "opportunity_may_backorder": profile.opportunity_may_backorder,
        "split_policy": profile.split_policy.value,
        "max_shipments": profile.max_shipments,
        "mode": profile.mode.value,
        "batch_time_limit_seconds": profile.batch_time_limit_seconds,
    }


_RULE_FIELDS = (
    "name",
    "profile",
    "priority",
    "channels",
    "delivery_methods",
    "regions",
    "item_flags",
    "min_order_value",
    "max_order_value",
)


def rule_from_document(document: Mapping[str, Any], *, pointer: str = "#") -> ProfileRule:
    reader = _Reader(document, pointer)
    reader.unknown(_RULE_FIELDS)
    name = reader.get("name")
    profile = reader.get("profile")
    if not isinstance(name, str) or not name.strip():
        reader.fail("name", "a rule needs a name")
        name = ""
    if not isinstance(profile, str) or not profile.strip():
        reader.fail("profile", "a rule names the profile it chooses")
        profile = ""
    flags = reader.strings("item_flags")
    for flag in sorted(flags - set(ITEM_FLAGS)):
        reader.fail("item_flags", f"'{flag}' is not one of {', '.join(ITEM_FLAGS)}")
    minimum = reader.get("min_order_value")
    maximum = reader.get("max_order_value")
    rule = ProfileRule(
        name=name.strip(),
        profile=profile.strip(),
        priority=reader.integer("priority", 100),
        channels=reader.strings("channels"),
        delivery_methods=reader.enums("delivery_methods", DeliveryMethod) or frozenset(),
        regions=reader.strings("regions"),
        item_flags=flags,
        min_order_value=None if minimum is None else reader.decimal("min_order_value", Decimal(0)),
        max_order_value=None if maximum is None else reader.decimal("max_order_value", Decimal(0)),
    )
    if reader.errors:
        raise InvalidProfile(
            f"the rule has {len(reader.errors)} problem(s): "
            + "; ".join(f"{e['pointer']}: {e['detail']}" for e in reader.errors),
            errors=reader.errors,
        )
    return rule


def rule_to_document(rule: ProfileRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "profile": rule.profile,
        "priority": rule.priority,
        "channels": sorted(rule.channels),
        "delivery_methods": _enum_list(rule.delivery_methods),
        "regions": sorted(rule.regions),
        "item_flags": sorted(rule.item_flags),
        "min_order_value": None if rule.min_order_value is None else str(rule.min_order_value),
        "max_order_value": None if rule.max_order_value is None else str(rule.max_order_value),
    }


def profile_names(profiles: Sequence[Profile]) -> list[str]:
    return [profile.name for profile in profiles]
