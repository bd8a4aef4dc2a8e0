"""Events of the sourcing area."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from oms.domain.events import DomainEvent


@dataclass(frozen=True, kw_only=True)
class SourcingProfileChanged(DomainEvent):
    type: ClassVar[str] = "sourcing.profile_changed"
    name: str
    version: int
    changed_by: str

    @property
    def subject(self) -> str:
        return f"sourcing-profiles/{self.name}"


@dataclass(frozen=True, kw_only=True)
class SourcingRulesChanged(DomainEvent):
    type: ClassVar[str] = "sourcing.rules_changed"
    version: int
    default_profile: str
    rule_count: int
    changed_by: str

    @property
    def subject(self) -> str:
        return f"sourcing-rules/{self.version}"


@dataclass(frozen=True, kw_only=True)
class OrderSourced(DomainEvent):
    """A sourcing decision for an order (at capture, on a re-plan or after an outage)."""

    type: ClassVar[str] = "sourcing.order_sourced"
    order_id: str
    decision_id: int
    trigger: str
    planner: str
    shipments: int
    backordered_units: int
    locations: list[str]

    @property
    def subject(self) -> str:
        return f"orders/{self.order_id}"
