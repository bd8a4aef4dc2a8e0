"""The only place that reads the wall clock, and the place that makes ids."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ControlledClock:
    """A clock that tests and simulations move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ControlledClock needs a timezone-aware start")

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("ControlledClock needs timezone-aware datetimes")
        self._now = moment


class RandomIds:
    def new_id(self) -> str:
        return str(uuid.uuid4())

    def new_token(self, nbytes: int = 24) -> str:
        return secrets.token_urlsafe(nbytes)
