"""Sourcing use cases: profiles and rules as versioned data, planning, and "what if" simulations.

Profiles are stored append-only: every change is a new version, the highest is current, and
older versions stay readable (``versions``). A simulation plans a supplied set of orders over a
supplied snapshot twice, with the current profiles and with a proposed change (a profile, the
rules, a location outage), and changes no data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from oms.domain.errors import Conflict, Invalid, NotFound
from oms.domain.sourcing.batch import WaveResult, plan_wave
from oms.domain.sourcing.events import (
    OrderSourced,
    SourcingProfileChanged,
    SourcingRulesChanged,
)
from oms.domain.sourcing.model import (
    CandidateLocation,
    LocationStatus,
    Network,
    SourcingOrder,
)
from oms.domain.sourcing.plan import SourcingPlan
from oms.domain.sourcing.planner import plan_order
from oms.domain.sourcing.profiles import (
    DEFAULT_PROFILE,
    InvalidProfile,
    Profile,
    ProfileSet,
    profile_from_document,
    profile_to_document,
    rule_from_document,
    rule_to_document,
)
from oms.domain.sourcing.replan import OutageReplan, replan_outage
from oms.services.ports import (
    Clock,
    StoredDecision,
    StoredProfile,
    StoredRuleSet,
    UnitOfWork,
    UnitOfWorkFactory,
)

MAX_SIMULATED_ORDERS = 5000
MAX_SIMULATED_LOCATIONS = 5000


class ProfileNotFound(NotFound):
    slug = "sourcing-profile-not-found"
    title = "No such sourcing profile"


class ProfileVersionConflict(Conflict):
    slug = "sourcing-profile-version-conflict"
    title = "The sourcing profile was changed meanwhile"


@dataclass(frozen=True)
class RuleSet:
    version: int
    """0: nothing stored yet (the built-in default applies)."""
    default_profile: str
    rules: list[dict[str, Any]]
    changed_by: str | None = None


@dataclass(frozen=True)
class SimulationTotals:
    total_cost: Decimal
    """Fulfillment cost plus backorder penalties."""
    fulfillment_cost: Decimal
    backorder_penalty: Decimal
    backordered_units: int
    packages: int
    split_orders: int

    @classmethod
    def of(cls, plans: Sequence[SourcingPlan]) -> SimulationTotals:
        cost = sum((p.cost for p in plans), Decimal(0))
        penalty = sum((p.backorder_penalty for p in plans), Decimal(0))
        return cls(
            total_cost=cost + penalty,
            fulfillment_cost=cost,
            backorder_penalty=penalty,
            backordered_units=sum(p.backordered_units for p in plans),
            packages=sum(p.shipment_count for p in plans),
            split_orders=sum(1 for p in plans if p.shipment_count > 1),
        )


@dataclass(frozen=True)
class OrderComparison:
    order_id: str
    current_cost: Decimal
    simulated_cost: Decimal
    current_sources: list[str]
    simulated_sources: list[str]
    current_backordered: int
    simulated_backordered: int


@dataclass(frozen=True)
class SimulationOutcome:
    orders: int
    current: SimulationTotals
    simulated: SimulationTotals
    changed_orders: list[OrderComparison]
    """Orders whose sources, cost or backorders differ."""


def _sources(plan: SourcingPlan) -> list[str]:
    return [f"{a.line_id}:{a.quantity}@{a.location}" for a in plan.allocations]


class SourcingService:
    def __init__(self, uow: UnitOfWorkFactory, *, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    # -- profiles ------------------------------------------------------------------------------

    def list_profiles(self) -> list[StoredProfile]:
        with self._uow(read_only=True) as uow:
            return uow.sourcing_profiles.current()

    def get_profile(self, name: str, version: int | None = None) -> StoredProfile:
        with self._uow(read_only=True) as uow:
            found = uow.sourcing_profiles.get(name, version)
        if found is None:
            which = f"version {version} of " if version is not None else ""
            raise ProfileNotFound(f"no {which}sourcing profile '{name}'")
        return found

    def profile_versions(self, name: str) -> list[StoredProfile]:
        with self._uow(read_only=True) as uow:
            found = uow.sourcing_profiles.versions(name)
        if not found:
            raise ProfileNotFound(f"no sourcing profile '{name}'")
        return found

    def create_profile(self, document: Mapping[str, Any], *, changed_by: str) -> StoredProfile:
        profile = profile_from_document(document)
        with self._uow() as uow:
            if uow.sourcing_profiles.get(profile.name) is not None:
                raise Conflict(
                    f"sourcing profile '{profile.name}' exists already: change it with PUT "
                    "(a new version)"
                )
            stored = self._store(uow, profile, version=1, changed_by=changed_by)
            uow.commit()
        return stored

    def update_profile(
        self,
        name: str,
        document: Mapping[str, Any],
        *,
        changed_by: str,
        expected_version: int | None = None,
    ) -> StoredProfile:
        """Store a new version of an existing profile (``expected_version``: optimistic lock)."""
        profile = profile_from_document({"name": name, **document})
        if profile.name != name:
            raise Invalid(
                f"the document names profile '{profile.name}', not '{name}'",
                errors=[{"pointer": "#/name", "detail": "does not match the path"}],
            )
        with self._uow() as uow:
            current = uow.sourcing_profiles.get(name)
            if current is None:
                raise ProfileNotFound(f"no sourcing profile '{name}': create it with POST")
            if expected_version is not None and current.version != expected_version:
                raise ProfileVersionConflict(
                    f"profile '{name}' is at version {current.version}, not {expected_version}",
                    current_version=current.version,
                )
            stored = self._store(uow, profile, version=current.version + 1, changed_by=changed_by)
            uow.commit()
        return stored

    def set_profile(self, document: Mapping[str, Any], *, changed_by: str) -> StoredProfile:
        """Create the profile, or store a new version when it exists and differs."""
        profile = profile_from_document(document)
        with self._uow() as uow:
            current = uow.sourcing_profiles.get(profile.name)
            if current is not None and current.document == profile_to_document(profile):
                return current
            version = 1 if current is None else current.version + 1
            stored = self._store(uow, profile, version=version, changed_by=changed_by)
            uow.commit()
        return stored

    def _store(
        self, uow: UnitOfWork, profile: Profile, *, version: int, changed_by: str
    ) -> StoredProfile:
        stored = StoredProfile(
            name=profile.name,
            version=version,
            document=profile_to_document(profile),
            changed_by=changed_by,
            created_at=self._clock.now(),
        )
        if not uow.sourcing_profiles.add(stored):
            raise ProfileVersionConflict(
                f"profile '{profile.name}' was changed at the same time: read it and retry"
            )
        uow.record(
            SourcingProfileChanged(name=profile.name, version=version, changed_by=changed_by)
        )
        return stored

    # -- rules ---------------------------------------------------------------------------------

    def rules(self) -> RuleSet:
        with self._uow(read_only=True) as uow:
            stored = uow.sourcing_profiles.current_rules()
        if stored is None:
            return RuleSet(version=0, default_profile=DEFAULT_PROFILE, rules=[])
        return RuleSet(stored.version, stored.default_profile, stored.rules, stored.changed_by)

    def set_rules(self, document: Mapping[str, Any], *, changed_by: str) -> RuleSet:
        default, rules = _rules_from_document(document)
        with self._uow() as uow:
            profiles = self._profiles(uow)
            ProfileSet(profiles, rules, default=default)  # every named profile must exist
            current = uow.sourcing_profiles.current_rules()
            version = 1 if current is None else current.version + 1
            stored = StoredRuleSet(
                version=version,
                default_profile=default,
                rules=[rule_to_document(rule) for rule in rules],
                changed_by=changed_by,
                created_at=self._clock.now(),
            )
            if not uow.sourcing_profiles.add_rules(stored):
                raise ProfileVersionConflict("the rules were changed at the same time: retry")
            uow.record(
                SourcingRulesChanged(
                    version=version,
                    default_profile=default,
                    rule_count=len(rules),
                    changed_by=changed_by,
                )
            )
            uow.commit()
        return RuleSet(version, default, stored.rules, changed_by)

    def _profiles(self, uow: UnitOfWork) -> list[Profile]:
        profiles = {
            stored.name: profile_from_document(stored.document)
            for stored in uow.sourcing_profiles.current()
        }
        profiles.setdefault(DEFAULT_PROFILE, Profile(DEFAULT_PROFILE))
        return list(profiles.values())

    def profile_set(self) -> ProfileSet:
        """The profiles and rules in force (a built-in ``default`` when none is stored)."""
        with self._uow(read_only=True) as uow:
            profiles = self._profiles(uow)
            stored = uow.sourcing_profiles.current_rules()
        if stored is None:
            return ProfileSet(profiles)
        rules = [rule_from_document(rule) for rule in stored.rules]
        return ProfileSet(profiles, rules, default=stored.default_profile)

    # -- planning ------------------------------------------------------------------------------

    def plan(
        self,
        order: SourcingOrder,
        locations: Sequence[CandidateLocation],
        *,
        explain: bool = True,
    ) -> SourcingPlan:
        """Source one order in real time over a snapshot (what order capture calls)."""
        return plan_order(order, Network(locations), self.profile_set(), explain=explain)

    def record_decision(self, plan: SourcingPlan, *, trigger: str) -> StoredDecision:
        """Store a decision with its explanation (in its own transaction).

        Order capture should rather call :func:`record_decision` inside its own unit of work, so
        that the allocation, the decision and its event commit together.
        """
        with self._uow() as uow:
            stored = record_decision(uow, plan, trigger=trigger, at=self._clock.now())
            uow.commit()
        return stored

    def decisions(self, order_id: str) -> list[StoredDecision]:
        """Every sourcing decision of an order, oldest first, each with its explanation."""
        with self._uow(read_only=True) as uow:
            found = uow.sourcing_decisions.for_order(order_id)
        if not found:
            raise NotFound(f"no sourcing decision for order '{order_id}'")
        return found

    def replan_outage(
        self,
        orders: Sequence[SourcingOrder],
        open_allocations: Mapping[str, Mapping[str, Mapping[str, int]]],
        locations: Sequence[CandidateLocation],
        *,
        statuses: Mapping[str, LocationStatus],
    ) -> OutageReplan:
        """Re-source, in bulk, what locations going offline/dark/closed can no longer serve,
        and store each affected order's decision (trigger ``outage``) in one transaction.

        ``open_allocations``: order id -> line id -> location -> allocated, unshipped units.
        The caller (orders) then moves the allocations and backorders what is left.
        """
        outcome, _ = replan_outage(
            orders,
            open_allocations,
            Network(locations),
            self.profile_set(),
            statuses=statuses,
            at=self._clock.now(),
        )
        with self._uow() as uow:
            for plan in outcome.plans.values():
                record_decision(uow, plan, trigger="outage", at=self._clock.now())
            uow.commit()
        return outcome

    def plan_wave(
        self,
        orders: Sequence[SourcingOrder],
        locations: Sequence[CandidateLocation],
        *,
        time_limit_seconds: float | None = None,
        explain: bool = True,
    ) -> WaveResult:
        """Source a wave of pending orders together (profiles whose mode is ``batch``).

        The time limit defaults to the default profile's ``batch_time_limit_seconds``; the
        greedy plan is kept when the optimisation does not beat it.
        """
        if not orders:
            raise Invalid("a wave needs at least one order")
        profiles = self.profile_set()
        limit = time_limit_seconds or profiles.profiles[profiles.default].batch_time_limit_seconds
        return plan_wave(
            orders, Network(locations), profiles, time_limit_seconds=limit, explain=explain
        )

    def simulate(
        self,
        orders: Sequence[SourcingOrder],
        locations: Sequence[CandidateLocation],
        *,
        profile: Mapping[str, Any] | None = None,
        rules: Mapping[str, Any] | None = None,
        outage: Mapping[str, LocationStatus | str] | None = None,
    ) -> SimulationOutcome:
        """How would these orders be sourced with a proposed change? Nothing is stored."""
        if not orders:
            raise Invalid("a simulation needs at least one order")
        if len(orders) > MAX_SIMULATED_ORDERS or len(locations) > MAX_SIMULATED_LOCATIONS:
            raise Invalid(
                f"a simulation takes at most {MAX_SIMULATED_ORDERS} orders and "
                f"{MAX_SIMULATED_LOCATIONS} locations"
            )
        if profile is None and rules is None and not outage:
            raise Invalid("say what to simulate: a profile, rules or an outage")
        current_set = self.profile_set()
        profiles = dict(current_set.profiles)
        if profile is not None:
            changed = profile_from_document(profile, pointer="#/profile")
            profiles[changed.name] = changed
        if rules is not None:
            default, rule_list = _rules_from_document(rules, pointer="#/rules")
        else:
            default, rule_list = current_set.default, list(current_set.rules)
        simulated_set = ProfileSet(profiles.values(), rule_list, default=default)
        network = Network(locations)
        statuses: dict[str, LocationStatus] = {}
        for code, status in (outage or {}).items():
            try:
                statuses[code] = LocationStatus(status)
            except ValueError:
                raise Invalid(
                    f"'{status}' is not a location status",
                    errors=[{"pointer": f"#/outage/{code}", "detail": "unknown status"}],
                ) from None
        simulated_network = network.with_status(statuses) if statuses else network.copy()
        current_plans = [plan_order(o, network, current_set, explain=False) for o in orders]
        simulated_plans = [
            plan_order(o, simulated_network, simulated_set, explain=False) for o in orders
        ]
        changed_orders = [
            OrderComparison(
                order_id=now.order_id,
                current_cost=now.objective,
                simulated_cost=then.objective,
                current_sources=_sources(now),
                simulated_sources=_sources(then),
                current_backordered=now.backordered_units,
                simulated_backordered=then.backordered_units,
            )
            for now, then in zip(current_plans, simulated_plans, strict=True)
            if _sources(now) != _sources(then) or now.objective != then.objective
        ]
        return SimulationOutcome(
            orders=len(orders),
            current=SimulationTotals.of(current_plans),
            simulated=SimulationTotals.of(simulated_plans),
            changed_orders=changed_orders,
        )


TRIGGERS = frozenset(
    {"capture", "change", "rejection", "short_pick", "outage", "capacity", "supply_late", "wave"}
)


def record_decision(
    uow: UnitOfWork, plan: SourcingPlan, *, trigger: str, at: datetime
) -> StoredDecision:
    """Store ``plan`` and its explanation in ``uow`` and record the event (no commit)."""
    _check_trigger(trigger)
    decision = _decision(plan, trigger=trigger, at=at)
    decision_id = uow.sourcing_decisions.add(decision)
    uow.record(_sourced(plan, decision_id, trigger=trigger))
    return replace(decision, decision_id=decision_id)


def record_decisions(
    uow: UnitOfWork, plans: Sequence[SourcingPlan], *, trigger: str, at: datetime
) -> list[int]:
    """Store many plans at once (bulk re-planning), each with its event (no commit)."""
    _check_trigger(trigger)
    ids = uow.sourcing_decisions.add_many(
        [_decision(plan, trigger=trigger, at=at) for plan in plans]
    )
    uow.record(
        *(
            _sourced(plan, decision_id, trigger=trigger)
            for plan, decision_id in zip(plans, ids, strict=True)
        )
    )
    return ids


def _check_trigger(trigger: str) -> None:
    if trigger not in TRIGGERS:
        raise Invalid(f"unknown sourcing trigger '{trigger}'; one of {', '.join(sorted(TRIGGERS))}")


def _decision(plan: SourcingPlan, *, trigger: str, at: datetime) -> StoredDecision:
    return StoredDecision(
        decision_id=0,
        order_id=plan.order_id,
        trigger=trigger,
        planner=plan.planner,
        cost=plan.cost,
        backordered_units=plan.backordered_units,
        plan=plan.to_document(),
        decided_at=at,
    )


def _sourced(plan: SourcingPlan, decision_id: int, *, trigger: str) -> OrderSourced:
    return OrderSourced(
        order_id=plan.order_id,
        decision_id=decision_id,
        trigger=trigger,
        planner=plan.planner,
        shipments=plan.shipment_count,
        backordered_units=plan.backordered_units,
        locations=sorted({s.location for s in plan.shipments}),
    )


def _rules_from_document(
    document: Mapping[str, Any], *, pointer: str = "#"
) -> tuple[str, list[Any]]:
    if not isinstance(document, Mapping):
        raise InvalidProfile("the rules must be an object with 'default_profile' and 'rules'")
    unknown = sorted(set(document) - {"default_profile", "rules"})
    if unknown:
        raise InvalidProfile(
            f"unknown field(s) {', '.join(unknown)} in the rules",
            errors=[{"pointer": f"{pointer}/{key}", "detail": "unknown field"} for key in unknown],
        )
    default = document.get("default_profile", DEFAULT_PROFILE)
    if not isinstance(default, str) or not default:
        raise InvalidProfile(
            "default_profile must name a profile",
            errors=[{"pointer": f"{pointer}/default_profile", "detail": "not a name"}],
        )
    raw = document.get("rules", [])
    if not isinstance(raw, list):
        raise InvalidProfile(
            "rules must be a list",
            errors=[{"pointer": f"{pointer}/rules", "detail": "not a list"}],
        )
    rules = [rule_from_document(rule, pointer=f"{pointer}/rules/{i}") for i, rule in enumerate(raw)]
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise InvalidProfile("two rules have the same name")
    return default, rules
