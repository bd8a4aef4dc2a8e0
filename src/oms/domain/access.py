"""Who may do what: roles, permissions and the location scope of store associates."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from oms.domain.errors import Forbidden


class Role(StrEnum):
    ADMIN = "admin"
    INTEGRATION = "integration"
    CARE_AGENT = "care_agent"
    STORE_ASSOCIATE = "store_associate"


class Permission(StrEnum):
    API_KEYS_MANAGE = "api_keys:manage"
    EVENTS_READ = "events:read"
    LOCATIONS_READ = "locations:read"
    LOCATIONS_WRITE = "locations:write"
    ITEMS_READ = "items:read"
    ITEMS_WRITE = "items:write"
    INVENTORY_READ = "inventory:read"
    INVENTORY_WRITE = "inventory:write"
    ORDERS_READ = "orders:read"
    ORDERS_WRITE = "orders:write"
    FULFILLMENTS_READ = "fulfillments:read"
    FULFILLMENTS_WRITE = "fulfillments:write"
    SOURCING_READ = "sourcing:read"
    SOURCING_WRITE = "sourcing:write"
    PROCESSES_READ = "processes:read"
    PROCESSES_WRITE = "processes:write"
    PROCESS_TASKS_WORK = "process_tasks:work"
    CARE = "care"
    RETURNS_READ = "returns:read"
    RETURNS_WRITE = "returns:write"
    WEBHOOKS_MANAGE = "webhooks:manage"


_ALL = frozenset(Permission)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: _ALL,
    Role.INTEGRATION: _ALL - {Permission.API_KEYS_MANAGE, Permission.CARE},
    Role.CARE_AGENT: frozenset(
        {
            Permission.LOCATIONS_READ,
            Permission.ITEMS_READ,
            Permission.INVENTORY_READ,
            Permission.ORDERS_READ,
            Permission.ORDERS_WRITE,
            Permission.FULFILLMENTS_READ,
            Permission.SOURCING_READ,
            Permission.PROCESSES_READ,
            Permission.PROCESS_TASKS_WORK,
            Permission.CARE,
            Permission.RETURNS_READ,
            Permission.RETURNS_WRITE,
        }
    ),
    Role.STORE_ASSOCIATE: frozenset(
        {
            Permission.LOCATIONS_READ,
            Permission.ITEMS_READ,
            Permission.INVENTORY_READ,
            Permission.INVENTORY_WRITE,
            Permission.FULFILLMENTS_READ,
            Permission.FULFILLMENTS_WRITE,
            Permission.PROCESSES_READ,
            Permission.PROCESS_TASKS_WORK,
            Permission.RETURNS_READ,
            Permission.RETURNS_WRITE,
        }
    ),
}


@dataclass(frozen=True)
class Principal:
    """The caller of a use case: an API key (or a person, later) with a role."""

    key_id: str
    name: str
    role: Role
    location_codes: frozenset[str] = field(default_factory=frozenset)

    @property
    def actor(self) -> str:
        """How history records this caller."""
        return f"api-key:{self.key_id}({self.name})"

    @property
    def is_location_bound(self) -> bool:
        return self.role is Role.STORE_ASSOCIATE

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise Forbidden(
                f"role '{self.role}' does not have the permission '{permission}'",
                permission=str(permission),
            )

    def can_access_location(self, location_code: str) -> bool:
        return not self.is_location_bound or location_code in self.location_codes

    def require_location(self, location_code: str) -> None:
        """The hook every location-scoped use case calls: associates see only their locations."""
        if not self.can_access_location(location_code):
            raise Forbidden(
                f"this key is bound to {sorted(self.location_codes)} and may not access "
                f"location '{location_code}'",
                location=location_code,
            )

    def visible_locations(self, location_codes: Iterable[str]) -> list[str]:
        return [code for code in location_codes if self.can_access_location(code)]


SYSTEM = Principal(key_id="system", name="system", role=Role.ADMIN)
"""The principal of the worker, timers and the CLI acting on the operator's behalf."""
