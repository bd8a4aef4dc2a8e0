"""Reference data every capture reads, cached per engine behind one signature query.

A capture reads the network of locations, the sourcing profiles and rule sets, and the latest
process definition of each delivery method. They change rarely, so each unit of work reads one
small signature instead (one round trip, no rows to parse):

* locations: their count and the sum of their ``revision`` (every update adds one, rows are
  never deleted);
* sourcing profiles and rule sets: count, highest version and latest time of each (append-only);
* process definitions: count and highest id (append-only);
* the channel buffer of each order channel (percent and units, NULL where none is stored): the
  figures themselves, so a capture needs no read of its own for them.

A cached value is used only when the part of the signature it was read under is the one this
unit of work reads now. A unit of work that wrote reference data itself reads past the cache
(and never fills it): what it sees may still roll back. Stock is never cached.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from sqlalchemy import Connection, Engine, func, select

from oms.adapters.db.tables import (
    channel_buffers,
    locations,
    process_definitions,
    sourcing_profiles,
    sourcing_rule_sets,
)
from oms.domain.orders import Channel

T = TypeVar("T")

_SIGNATURE = select(
    select(func.count()).select_from(locations).scalar_subquery(),
    select(func.coalesce(func.sum(locations.c.revision), 0)).scalar_subquery(),
    select(func.count()).select_from(sourcing_profiles).scalar_subquery(),
    select(func.max(sourcing_profiles.c.version)).scalar_subquery(),
    select(func.max(sourcing_profiles.c.created_at)).scalar_subquery(),
    select(func.count()).select_from(sourcing_rule_sets).scalar_subquery(),
    select(func.max(sourcing_rule_sets.c.version)).scalar_subquery(),
    select(func.max(sourcing_rule_sets.c.created_at)).scalar_subquery(),
    select(func.count()).select_from(process_definitions).scalar_subquery(),
    select(func.max(process_definitions.c.id)).scalar_subquery(),
    *(
        select(column).where(channel_buffers.c.channel == channel.value).scalar_subquery()
        for channel in Channel
        for column in (channel_buffers.c.percent, channel_buffers.c.units)
    ),
)
"""Built once: the one statement that tells whether cached reference data still holds."""

LOCATIONS = slice(0, 2)
PROFILES = slice(2, 8)
DEFINITIONS = slice(8, 10)
_BUFFERS_AT = {channel.value: 10 + 2 * index for index, channel in enumerate(Channel)}
"""Where each order channel's buffer (percent, units) sits in the signature."""


class ReferenceCache:
    """Values read under a signature part, shared by every unit of work of one engine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[Hashable, tuple[Hashable, object]] = {}

    def get(self, key: Hashable, signature: Hashable) -> tuple[bool, object]:
        with self._lock:
            found = self._values.get(key)
        if found is not None and found[0] == signature:
            return True, found[1]
        return False, None

    def put(self, key: Hashable, signature: Hashable, value: object) -> None:
        with self._lock:
            self._values[key] = (signature, value)


_Held = TypeVar("_Held")


class PerEngine(Generic[_Held]):
    """One object per database engine, made on first use: derived data cached for one database
    never answers for another (tests and benchmarks open several in one process)."""

    def __init__(self, factory: Callable[[], _Held]) -> None:
        self._factory = factory
        self._held: weakref.WeakKeyDictionary[Engine, _Held] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __call__(self, engine: Engine) -> _Held:
        with self._lock:
            found = self._held.get(engine)
            if found is None:
                found = self._held[engine] = self._factory()
            return found


cache_for: PerEngine[ReferenceCache] = PerEngine(ReferenceCache)
"""The reference cache of an engine's database."""


class ReferenceView:
    """One unit of work's view of the cache: its signature is read once, on first use."""

    def __init__(self, connection: Connection, cache: ReferenceCache) -> None:
        self._connection = connection
        self._cache = cache
        self._signature: tuple[object, ...] | None = None
        self._wrote = False

    @property
    def has_written(self) -> bool:
        return self._wrote

    def wrote(self) -> None:
        """This unit of work changed reference data: read past the cache from now on."""
        self._wrote = True
        self._signature = None

    def signature(self, part: slice) -> Hashable:
        if self._signature is None:
            self._signature = tuple(self._connection.execute(_SIGNATURE).one())
        return self._signature[part]

    def channel_buffer(self, channel: str) -> tuple[bool, tuple[int, int] | None]:
        """(known, (percent, units) or None when the channel has no buffer stored) as the
        signature read it; not known for a channel that is not an order channel, or once this
        unit of work wrote reference data (a buffer included): then read the table."""
        at = _BUFFERS_AT.get(channel)
        if at is None or self._wrote:
            return False, None
        found = self.signature(slice(at, at + 2))
        assert isinstance(found, tuple)
        percent, units = found
        if percent is None:
            return True, None
        return True, (int(percent), int(units))

    def read(self, key: Hashable, part: slice, load: Callable[[], T]) -> T:
        """The value cached under ``key`` for this signature part, or ``load()`` (then cached)."""
        if self._wrote:
            return load()
        signature = self.signature(part)
        found, value = self._cache.get(key, signature)
        if found:
            return value  # type: ignore[return-value]
        loaded = load()
        self._cache.put(key, signature, loaded)
        return loaded
