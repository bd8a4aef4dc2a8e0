"""The only place that reads the wall clock, and the place that makes ids."""

from __future__ import annotations

import os
import secrets
import time
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


_VERSION_7 = 0x7 << 76
_VARIANT = 0x2 << 62
_RANDOM_BITS = ((1 << 80) - 1) & ~(0xF << 76) & ~(0x3 << 62)


class RandomIds:
    def new_id(self) -> str:
        """A UUID version 7 (RFC 9562): the milliseconds since the epoch, then 74 random bits.
        Ids made one after another sort together, so an index on them takes new entries at its
        right edge. A version 4 UUID lands on a random index page, and the first change to a
        page after each checkpoint writes the whole page to the WAL: three such pages made a
        one-line hold commit ~20 kB of WAL instead of ~2 kB on PostgreSQL."""
        milliseconds = time.time_ns() // 1_000_000
        random = int.from_bytes(os.urandom(10)) & _RANDOM_BITS
        digits = f"{(milliseconds << 80) | _VERSION_7 | _VARIANT | random:032x}"
        return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"

    def new_token(self, nbytes: int = 24) -> str:
        return secrets.token_urlsafe(nbytes)
