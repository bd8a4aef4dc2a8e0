"""Reading committed events from the outbox (the pull side of the event stream)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from oms.domain.errors import Invalid
from oms.services.ports import Clock, EventPage, OutboxEvent, UnitOfWorkFactory

# How long a gap in the positions may stay open before the reader treats it as a rolled-back
# transaction's and reads past it. An event's time is taken just before its transaction commits,
# so a transaction still in flight this long after a later event was written is not expected.
DEFAULT_GAP_GRACE = timedelta(seconds=10)


class EventService:
    def __init__(
        self, uow: UnitOfWorkFactory, *, clock: Clock, gap_grace: timedelta = DEFAULT_GAP_GRACE
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._gap_grace = gap_grace

    def read(
        self, *, after: int = 0, limit: int = 100, types: Sequence[str] | None = None
    ) -> list[OutboxEvent]:
        return self.read_page(after=after, limit=limit, types=types).events

    def read_page(
        self, *, after: int = 0, limit: int = 100, types: Sequence[str] | None = None
    ) -> EventPage:
        """The next committed events after ``after``, never skipping one that commits later."""
        if after < 0:
            raise Invalid("'after' must be a position >= 0")
        if not 1 <= limit <= 1000:
            raise Invalid("'limit' must be between 1 and 1000")
        with self._uow(read_only=True) as uow:
            return uow.outbox.read_after(
                after,
                limit=limit,
                types=types,
                settled_before=self._clock.now() - self._gap_grace,
            )
