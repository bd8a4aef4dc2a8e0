"""A sourcing decision and its explanation, as plain data a care agent can read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

ZERO_CENTS = Decimal("0.00")


def money(value: float) -> Decimal:
    """A cost computed in floating point, as Decimal cents (the planner's arithmetic is float:
    fast over arrays; every figure it reports is rounded to the cent here)."""
    return Decimal(f"{value:.2f}") + ZERO_CENTS


@dataclass(frozen=True, slots=True)
class Allocation:
    line_id: str
    sku: str
    location: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Shipment:
    """What one location sends (or hands over) for one group of lines."""

    location: str
    delivery_method: str
    lines: tuple[tuple[str, int], ...]
    """(line id, units)."""
    cost: Decimal
    terms: Mapping[str, Decimal]


@dataclass(frozen=True, slots=True)
class CandidateCost:
    location: str
    distance_km: float
    atp: int
    terms: Mapping[str, Decimal]
    total: Decimal
    """Cost of serving the whole line from this location alone."""


@dataclass(frozen=True, slots=True)
class ExcludedLocation:
    location: str
    filter: str
    reason: str


@dataclass(frozen=True, slots=True)
class LineExplanation:
    line_id: str
    sku: str
    quantity: int
    profile: str
    rule: str | None
    split_policy: str
    candidate_count: int
    candidates: tuple[CandidateCost, ...]
    """The cheapest candidates (and every chosen one), cheapest first."""
    excluded_counts: Mapping[str, int]
    """Locations ruled out, by the first filter that ruled them out."""
    excluded: tuple[ExcludedLocation, ...]
    """The nearest ruled-out locations and why."""
    chosen: tuple[tuple[str, int], ...]
    backordered: int
    summary: str


@dataclass(frozen=True, slots=True)
class SourcingPlan:
    order_id: str
    planner: str
    """greedy, batch (MILP) or batch-fallback (the greedy plan kept)."""
    allocations: tuple[Allocation, ...]
    backorders: Mapping[str, int]
    """line id -> units nothing could serve."""
    shipments: tuple[Shipment, ...]
    cost: Decimal
    """Fulfillment cost of the plan (backorder penalties not included)."""
    backorder_penalty: Decimal
    terms: Mapping[str, Decimal]
    explanation: tuple[LineExplanation, ...] = ()
    notes: tuple[str, ...] = field(default=())
    opportunity_cost: Decimal = ZERO_CENTS
    """The stock opportunity cost of the allocated units (bid prices times units, weighted by
    the profile): what the plan takes from orders expected later. Weighed by the planners,
    not paid: neither in ``cost`` nor in ``objective``."""

    @property
    def shipment_count(self) -> int:
        return len(self.shipments)

    @property
    def backordered_units(self) -> int:
        return sum(self.backorders.values())

    @property
    def objective(self) -> Decimal:
        return self.cost + self.backorder_penalty

    @property
    def decision_objective(self) -> Decimal:
        """What the planners minimise: the objective plus the stock opportunity cost."""
        return self.objective + self.opportunity_cost

    def allocated(self, line_id: str) -> dict[str, int]:
        result: dict[str, int] = {}
        for allocation in self.allocations:
            if allocation.line_id == line_id:
                result[allocation.location] = result.get(allocation.location, 0) + (
                    allocation.quantity
                )
        return result

    def to_document(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "planner": self.planner,
            "cost": str(self.cost),
            "backorder_penalty": str(self.backorder_penalty),
            "opportunity_cost": str(self.opportunity_cost),
            "terms": {name: str(value) for name, value in self.terms.items()},
            "allocations": [
                {
                    "line_id": a.line_id,
                    "sku": a.sku,
                    "location": a.location,
                    "quantity": a.quantity,
                }
                for a in self.allocations
            ],
            "backorders": dict(self.backorders),
            "shipments": [
                {
                    "location": s.location,
                    "delivery_method": s.delivery_method,
                    "lines": [{"line_id": line, "quantity": q} for line, q in s.lines],
                    "cost": str(s.cost),
                    "terms": {name: str(value) for name, value in s.terms.items()},
                }
                for s in self.shipments
            ],
            "explanation": [_line_document(line) for line in self.explanation],
            "notes": list(self.notes),
        }


def _line_document(line: LineExplanation) -> dict[str, Any]:
    return {
        "line_id": line.line_id,
        "sku": line.sku,
        "quantity": line.quantity,
        "profile": line.profile,
        "rule": line.rule,
        "split_policy": line.split_policy,
        "summary": line.summary,
        "candidate_count": line.candidate_count,
        "candidates": [
            {
                "location": c.location,
                "distance_km": round(c.distance_km, 1),
                "atp": c.atp,
                "terms": {name: str(value) for name, value in c.terms.items()},
                "total": str(c.total),
            }
            for c in line.candidates
        ],
        "excluded_counts": dict(line.excluded_counts),
        "excluded": [
            {"location": e.location, "filter": e.filter, "reason": e.reason} for e in line.excluded
        ],
        "chosen": [{"location": loc, "quantity": q} for loc, q in line.chosen],
        "backordered": line.backordered,
    }
