"""Sourcing profiles and rules (versioned data) and "what if" simulations."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field

from oms.api.deps import ServicesDep, require
from oms.api.errors import CONFLICT, NOT_FOUND, PROBLEM_RESPONSES
from oms.domain.access import Permission, Principal
from oms.domain.sourcing.model import (
    CandidateLocation,
    Capability,
    DeliveryMethod,
    GeoPoint,
    LocationStatus,
    LocationType,
    SourcingLine,
    SourcingOrder,
)
from oms.services.ports import StoredDecision, StoredProfile
from oms.services.sourcing import RuleSet, SimulationOutcome

router = APIRouter(prefix="/sourcing", tags=["sourcing"], responses=PROBLEM_RESPONSES)
Reader = Annotated[Principal, Depends(require(Permission.SOURCING_READ))]
Writer = Annotated[Principal, Depends(require(Permission.SOURCING_WRITE))]

PROFILE_EXAMPLE = {
    "name": "stores first",
    "description": "Ship from stores within 800 km, keep 2 units for walk-in shoppers",
    "allowed_types": ["store", "dc"],
    "max_distance_km": 800,
    "weights": {"shipping": "1", "handling": "1", "split": "1.5"},
    "split_policy": "minimise",
    "max_shipments": 2,
}


class ProfileOut(BaseModel):
    name: str
    version: int
    changed_by: str
    created_at: datetime
    document: dict[str, Any] = Field(description="The whole profile, every default filled in")

    @classmethod
    def of(cls, stored: StoredProfile) -> ProfileOut:
        return cls(
            name=stored.name,
            version=stored.version,
            changed_by=stored.changed_by,
            created_at=stored.created_at,
            document=stored.document,
        )


class RuleSetIn(BaseModel):
    default_profile: str = Field("default", min_length=1, max_length=100)
    rules: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Tried by priority (lowest first); the first that matches a line wins",
        examples=[
            [
                {
                    "name": "hazmat from DCs",
                    "profile": "dc only",
                    "priority": 10,
                    "item_flags": ["hazmat"],
                },
                {"name": "big orders", "profile": "no split", "min_order_value": "500"},
            ]
        ],
    )


class RuleSetOut(BaseModel):
    version: int = Field(description="0 while no rules were ever stored")
    default_profile: str
    rules: list[dict[str, Any]]
    changed_by: str | None

    @classmethod
    def of(cls, rules: RuleSet) -> RuleSetOut:
        return cls(
            version=rules.version,
            default_profile=rules.default_profile,
            rules=rules.rules,
            changed_by=rules.changed_by,
        )


class LocationIn(BaseModel):
    code: str = Field(min_length=1, max_length=64)
    type: LocationType
    status: LocationStatus = LocationStatus.ACTIVE
    capabilities: list[Capability]
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    atp: dict[str, Annotated[int, Field(ge=0)]] = Field(
        description="Available to promise per SKU, after buffers"
    )
    remaining_capacity: int | None = Field(None, ge=0)
    handling_cost: Decimal = Field(Decimal("0"), ge=0)
    pick_hours: float = Field(2.0, ge=0)
    cut_off_hour: float = Field(24.0, ge=0, le=24)
    priority: int = Field(0, ge=0)

    def to_domain(self) -> CandidateLocation:
        return CandidateLocation(
            code=self.code,
            type=self.type,
            status=self.status,
            capabilities=frozenset(self.capabilities),
            point=GeoPoint(self.latitude, self.longitude),
            atp=self.atp,
            remaining_capacity=self.remaining_capacity,
            handling_cost=self.handling_cost,
            pick_hours=self.pick_hours,
            cut_off_hour=self.cut_off_hour,
            priority=self.priority,
        )


class LineIn(BaseModel):
    line_id: str = Field(min_length=1, max_length=64)
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0)
    delivery_method: DeliveryMethod
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    pickup_location: str | None = None
    weight_kg: float = Field(1.0, ge=0)
    ship_alone: bool = False
    hazmat: bool = False
    pickup_allowed: bool = True
    ship_from_store_allowed: bool = True

    def to_domain(self) -> SourcingLine:
        destination = None
        if self.latitude is not None and self.longitude is not None:
            destination = GeoPoint(self.latitude, self.longitude)
        return SourcingLine(
            line_id=self.line_id,
            sku=self.sku,
            quantity=self.quantity,
            delivery_method=self.delivery_method,
            destination=destination,
            pickup_location=self.pickup_location,
            weight_kg=self.weight_kg,
            ship_alone=self.ship_alone,
            hazmat=self.hazmat,
            pickup_allowed=self.pickup_allowed,
            ship_from_store_allowed=self.ship_from_store_allowed,
        )


class OrderIn(BaseModel):
    order_id: str = Field(min_length=1, max_length=64)
    channel: str = Field("web", min_length=1, max_length=32)
    placed_at: datetime
    order_value: Decimal = Field(Decimal("0"), ge=0)
    promise_on: date | None = None
    destination_region: str = ""
    lines: list[LineIn] = Field(min_length=1)

    def to_domain(self) -> SourcingOrder:
        return SourcingOrder(
            order_id=self.order_id,
            channel=self.channel,
            lines=tuple(line.to_domain() for line in self.lines),
            placed_at=self.placed_at,
            order_value=self.order_value,
            promise_on=self.promise_on,
            destination_region=self.destination_region,
        )


class SimulationIn(BaseModel):
    locations: list[LocationIn] = Field(min_length=1, max_length=5000)
    orders: list[OrderIn] = Field(min_length=1, max_length=5000)
    profile: dict[str, Any] | None = Field(
        None, description="A changed (or new) profile, used in place of the stored one"
    )
    rules: RuleSetIn | None = Field(None, description="Rules used in place of the stored ones")
    outage: dict[str, LocationStatus] = Field(
        default_factory=dict,
        description="Location code -> status to assume (offline, dark, closed)",
        examples=[{"DC-EAST": "offline"}],
    )


class TotalsOut(BaseModel):
    total_cost: Decimal
    fulfillment_cost: Decimal
    backorder_penalty: Decimal
    backordered_units: int
    packages: int
    split_orders: int


class OrderChangeOut(BaseModel):
    order_id: str
    current_cost: Decimal
    simulated_cost: Decimal
    current_sources: list[str] = Field(description="line:units@location")
    simulated_sources: list[str]
    current_backordered: int
    simulated_backordered: int


class SimulationOut(BaseModel):
    orders: int
    current: TotalsOut
    simulated: TotalsOut
    changed_orders: list[OrderChangeOut]

    @classmethod
    def of(cls, outcome: SimulationOutcome) -> SimulationOut:
        return cls(
            orders=outcome.orders,
            current=TotalsOut(**vars(outcome.current)),
            simulated=TotalsOut(**vars(outcome.simulated)),
            changed_orders=[OrderChangeOut(**vars(change)) for change in outcome.changed_orders],
        )


class DecisionOut(BaseModel):
    decision_id: int
    order_id: str
    trigger: str = Field(description="capture, change, rejection, short_pick, outage, ...")
    planner: str
    cost: Decimal
    backordered_units: int
    decided_at: datetime
    plan: dict[str, Any] = Field(
        description="Allocations, shipments with their cost terms, and per line: candidates "
        "with cost terms, excluded locations with the filter and reason, the chosen sources"
    )

    @classmethod
    def of(cls, stored: StoredDecision) -> DecisionOut:
        return cls(**vars(stored))


@router.get(
    "/decisions/{order_id}",
    responses=NOT_FOUND,
    summary="Every sourcing decision of an order with its explanation, oldest first",
)
def order_decisions(order_id: str, services: ServicesDep, _: Reader) -> list[DecisionOut]:
    return [DecisionOut.of(stored) for stored in services.sourcing.decisions(order_id)]


@router.get("/profiles", summary="The current version of every sourcing profile")
def list_profiles(services: ServicesDep, _: Reader) -> list[ProfileOut]:
    return [ProfileOut.of(stored) for stored in services.sourcing.list_profiles()]


@router.post("/profiles", status_code=201, responses=CONFLICT, summary="Create a sourcing profile")
def create_profile(
    services: ServicesDep,
    principal: Writer,
    document: Annotated[dict[str, Any], Body(examples=[PROFILE_EXAMPLE])],
) -> ProfileOut:
    return ProfileOut.of(services.sourcing.create_profile(document, changed_by=principal.actor))


@router.get(
    "/profiles/{name}", responses=NOT_FOUND, summary="A sourcing profile (current or a version)"
)
def get_profile(
    name: str,
    services: ServicesDep,
    _: Reader,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> ProfileOut:
    return ProfileOut.of(services.sourcing.get_profile(name, version))


@router.get("/profiles/{name}/versions", responses=NOT_FOUND, summary="Every version of a profile")
def profile_versions(name: str, services: ServicesDep, _: Reader) -> list[ProfileOut]:
    return [ProfileOut.of(stored) for stored in services.sourcing.profile_versions(name)]


@router.put(
    "/profiles/{name}",
    responses={**NOT_FOUND, **CONFLICT},
    summary="Change a profile: stores a new version",
)
def update_profile(
    name: str,
    services: ServicesDep,
    principal: Writer,
    document: Annotated[dict[str, Any], Body(examples=[PROFILE_EXAMPLE])],
    expected_version: Annotated[
        int | None, Query(ge=1, description="Refuse (409) unless this is the current version")
    ] = None,
) -> ProfileOut:
    return ProfileOut.of(
        services.sourcing.update_profile(
            name, document, changed_by=principal.actor, expected_version=expected_version
        )
    )


@router.get("/rules", summary="The rules that choose a profile per order line")
def get_rules(services: ServicesDep, _: Reader) -> RuleSetOut:
    return RuleSetOut.of(services.sourcing.rules())


@router.put("/rules", summary="Replace the rules: stores a new version")
def set_rules(body: RuleSetIn, services: ServicesDep, principal: Writer) -> RuleSetOut:
    return RuleSetOut.of(services.sourcing.set_rules(body.model_dump(), changed_by=principal.actor))


@router.post(
    "/simulations",
    summary="What if: source these orders with a profile change or an outage (no data changes)",
)
def simulate(body: SimulationIn, services: ServicesDep, _: Reader) -> SimulationOut:
    outcome = services.sourcing.simulate(
        [order.to_domain() for order in body.orders],
        [location.to_domain() for location in body.locations],
        profile=body.profile,
        rules=None if body.rules is None else body.rules.model_dump(),
        outage=body.outage,
    )
    return SimulationOut.of(outcome)
