"""Past-tense domain events.

A domain object appends events to its ``events`` list; the unit of work writes them to the
outbox in the same transaction as the change.  Each event class names its CloudEvents ``type``
(for example ``order.created``) and says which entity it is about (``subject``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    type: ClassVar[str] = "event"

    @property
    def subject(self) -> str:
        """The entity this event is about, e.g. ``orders/ORD-1``; override per event."""
        return ""

    def data(self) -> dict[str, Any]:
        """The event's payload as JSON-ready values."""
        return {name: to_json_value(getattr(self, name)) for name in _field_names(self)}


_PLAIN = frozenset({str, int, float, bool})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
"""Field names per dataclass type: ``dataclasses.fields`` is slow for a per-event call."""


def _field_names(value: Any) -> tuple[str, ...]:
    kind = type(value)
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(value))
    return names


def to_json_value(value: Any) -> Any:
    """Turn domain values into JSON: Decimal as string (never float), datetimes as ISO 8601."""
    if value is None or type(value) in _PLAIN:
        return value  # most values of an event: nothing to turn (enums are not of these types)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: to_json_value(getattr(value, name)) for name in _field_names(value)}
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json_value(v) for v in value]
    return value
