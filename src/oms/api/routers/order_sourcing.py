"""Sourcing of stored orders: the explanation of every decision (for care agents), refusals
that re-source a line elsewhere, re-planning after an outage, and "what if" over recent orders."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field

from oms.api.deps import ServicesDep, require
from oms.api.errors import CONFLICT, NOT_FOUND, PROBLEM_RESPONSES
from oms.api.routers.sourcing import DecisionOut, RuleSetIn, SimulationOut
from oms.domain.access import Permission, Principal
from oms.domain.sourcing.model import LocationStatus
from oms.services.order_sourcing import (
    BID_PRICE_HISTORY_ORDERS,
    BidPriceOutcome,
    OrderSourcingView,
    OutageOutcome,
    Replanned,
)
from oms.services.ports import LineRefusal

router = APIRouter(tags=["sourcing"], responses=PROBLEM_RESPONSES)
Reader = Annotated[Principal, Depends(require(Permission.SOURCING_READ))]
Writer = Annotated[Principal, Depends(require(Permission.SOURCING_WRITE))]
Fulfiller = Annotated[Principal, Depends(require(Permission.FULFILLMENTS_WRITE))]


class RefusalOut(BaseModel):
    line_no: int
    location_code: str
    quantity: int
    reason: str
    trigger: str
    refused_at: datetime

    @classmethod
    def of(cls, refusal: LineRefusal) -> RefusalOut:
        return cls(
            line_no=refusal.line_no,
            location_code=refusal.location_code,
            quantity=refusal.quantity,
            reason=refusal.reason,
            trigger=refusal.trigger,
            refused_at=refusal.refused_at,
        )


class OrderSourcingOut(BaseModel):
    order_id: str
    order_number: str
    decisions: list[DecisionOut] = Field(
        description="Every decision, oldest first: plan.explanation has per line the candidates "
        "with their cost terms, the excluded locations with filter and reason, what was chosen "
        "and a one-sentence summary"
    )
    refusals: list[RefusalOut] = Field(
        description="Locations that refused units of a line: never chosen for it again"
    )

    @classmethod
    def of(cls, view: OrderSourcingView) -> OrderSourcingOut:
        return cls(
            order_id=view.order_id,
            order_number=view.order_number,
            decisions=[DecisionOut.of(d) for d in view.decisions],
            refusals=[RefusalOut.of(r) for r in view.refusals],
        )


class RefusalIn(BaseModel):
    model_config = {"extra": "forbid"}
    location_code: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0)
    reason: str = Field(min_length=1, max_length=500)
    trigger: str = Field("rejection", pattern="^(rejection|short_pick)$")


class ReplannedOut(BaseModel):
    order_id: str
    line_no: int
    sku: str
    from_location: str
    quantity: int
    re_sourced: dict[str, int]
    backordered: int
    excluded: list[str]

    @classmethod
    def of(cls, outcome: Replanned) -> ReplannedOut:
        return cls(**vars(outcome))


class OutageOut(BaseModel):
    location_code: str
    status: str
    affected_orders: int
    affected_units: int
    re_sourced_units: int
    backordered_units: int
    lines: list[ReplannedOut]

    @classmethod
    def of(cls, outcome: OutageOutcome) -> OutageOut:
        return cls(
            location_code=outcome.location_code,
            status=outcome.status,
            affected_orders=outcome.affected_orders,
            affected_units=outcome.affected_units,
            re_sourced_units=outcome.re_sourced_units,
            backordered_units=outcome.backordered_units,
            lines=[ReplannedOut.of(line) for line in outcome.lines],
        )


class RecentSimulationIn(BaseModel):
    model_config = {"extra": "forbid"}
    orders: int = Field(100, gt=0, le=5000, description="How many of the latest orders")
    profile: dict[str, Any] | None = None
    rules: RuleSetIn | None = None
    outage: dict[str, LocationStatus] = Field(default_factory=dict)


@router.get(
    "/orders/{order_id}/sourcing",
    responses=NOT_FOUND,
    summary="Why the order's lines come from where they come from: every sourcing decision",
)
def order_sourcing(order_id: str, services: ServicesDep, _: Reader) -> OrderSourcingOut:
    return OrderSourcingOut.of(services.order_sourcing.explain(order_id))


@router.post(
    "/orders/{order_id}/lines/{line_no}/refusals",
    responses={**NOT_FOUND, **CONFLICT},
    summary="A location rejects or short-picks units: source them elsewhere, never there again",
)
def refuse(
    order_id: str, line_no: int, body: RefusalIn, services: ServicesDep, principal: Fulfiller
) -> ReplannedOut:
    return ReplannedOut.of(
        services.order_sourcing.replan_refused(
            order_id,
            line_no,
            body.location_code,
            body.quantity,
            body.reason,
            trigger=body.trigger,
            principal=principal,
        )
    )


@router.post(
    "/sourcing/locations/{code}/replan",
    responses=NOT_FOUND,
    summary="Re-source what an offline, dark or closed location holds allocated (also automatic)",
)
def replan_location(code: str, services: ServicesDep, principal: Writer) -> OutageOut:
    return OutageOut.of(services.order_sourcing.replan_location(code, principal=principal))


class BidPriceRefreshIn(BaseModel):
    orders: int = Field(
        default=BID_PRICE_HISTORY_ORDERS,
        ge=1,
        le=100_000,
        description="How many of the latest orders are the demand",
    )
    scale: float = Field(
        default=1.0, gt=0, le=100, description="Demand expected until replenishment, in those"
    )


class BidPriceRefreshOut(BaseModel):
    status: str = Field(
        description="optimal, empty (no demand or no stock), off (no profile weighs "
        "stock_opportunity: nothing computed), time_limit or failed (the table in force stays)"
    )
    history_orders: int
    lanes: int
    priced_skus: int
    priced_locations: int

    @classmethod
    def of(cls, outcome: BidPriceOutcome) -> BidPriceRefreshOut:
        return cls(
            status=outcome.status,
            history_orders=outcome.history_orders,
            lanes=outcome.lanes,
            priced_skus=outcome.priced_skus,
            priced_locations=outcome.priced_locations,
        )


class BidPriceTableOut(BaseModel):
    table_id: int
    computed_at: datetime
    history_orders: int
    scale: float
    lanes: int
    expected_units: float
    backordered_units: float
    priced_skus: int = Field(description="Items priced anywhere (before the sku filter)")
    stock: dict[str, dict[str, float]] = Field(
        description="Per SKU asked for (or every SKU), per location code: the opportunity cost "
        "of one unit there"
    )
    capacity: dict[str, float] = Field(description="Per location code: one unit of capacity")


@router.get(
    "/sourcing/bid-prices",
    responses=NOT_FOUND,
    summary="The stock opportunity costs decisions weigh now (the newest bid-price table)",
)
def bid_prices(
    services: ServicesDep,
    _: Reader,
    sku: Annotated[list[str] | None, Query(description="Only these items (repeatable)")] = None,
) -> BidPriceTableOut:
    table = services.order_sourcing.bid_price_table(sku or ())
    return BidPriceTableOut.model_validate(table, from_attributes=True)


@router.post(
    "/sourcing/bid-prices",
    summary="Compute the bid prices now from the latest orders (the worker does it every hour)",
)
def refresh_bid_prices(
    services: ServicesDep,
    _: Writer,
    body: Annotated[BidPriceRefreshIn | None, Body()] = None,
) -> BidPriceRefreshOut:
    asked = body or BidPriceRefreshIn()
    return BidPriceRefreshOut.of(
        services.order_sourcing.refresh_bid_prices(orders=asked.orders, scale=asked.scale)
    )


@router.post(
    "/sourcing/simulations/recent",
    summary="What if: the latest N stored orders sourced with a change (no data changes)",
)
def simulate_recent(body: RecentSimulationIn, services: ServicesDep, _: Reader) -> SimulationOut:
    outcome = services.order_sourcing.simulate_last(
        body.orders,
        profile=body.profile,
        rules=None if body.rules is None else body.rules.model_dump(),
        outage={code: status.value for code, status in body.outage.items()},
    )
    return SimulationOut.of(outcome)
