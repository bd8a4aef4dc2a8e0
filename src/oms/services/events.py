"""Reading committed events from the outbox (the pull side of the event stream)."""

from __future__ import annotations

from collections.abc import Sequence

from oms.domain.errors import Invalid
from oms.services.ports import OutboxEvent, UnitOfWorkFactory


class EventService:
    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    def read(
        self, *, after: int = 0, limit: int = 100, types: Sequence[str] | None = None
    ) -> list[OutboxEvent]:
        if after < 0:
            raise Invalid("'after' must be a position >= 0")
        if not 1 <= limit <= 1000:
            raise Invalid("'limit' must be between 1 and 1000")
        with self._uow(read_only=True) as uow:
            return uow.outbox.read_after(after, limit=limit, types=types)
