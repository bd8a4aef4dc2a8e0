"""The array ranking of basket sources against the loop over dictionaries it replaced."""

from __future__ import annotations

import heapq

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from oms.domain.locations import Location, LocationType
from oms.domain.promising import Candidates, rank_sources, whole_basket_slots


def reference(
    atp: list[dict[str, int]],
    quantities: list[int],
    eligible: dict[str, float | None],
    barred: list[set[str]],
    limit: int,
) -> tuple[list[tuple[int, list[tuple[str, int]]]], list[str]]:
    """What basket_availability computed before, per line and for the whole basket."""
    lines = []
    for units_at, quantity, no in zip(atp, quantities, barred, strict=True):
        options = []
        available = 0
        for code, units in units_at.items():
            if code not in eligible or code in no:
                continue
            available += units
            options.append((units < quantity, eligible[code] or 0.0, -units, code))
        lines.append(
            (available, [(code, -units) for _, _, units, code in heapq.nsmallest(limit, options)])
        )
    whole: set[str] | None = None
    for units_at, quantity, no in zip(atp, quantities, barred, strict=True):
        serving = {
            c for c, u in units_at.items() if u >= quantity and c in eligible and c not in no
        }
        whole = serving if whole is None else whole & serving
    singles = sorted(whole or (), key=lambda code: (eligible[code] or 0.0, code))[:limit]
    return lines, singles


@st.composite
def baskets(draw: st.DrawFn) -> tuple[object, ...]:
    count = draw(st.integers(1, 12))
    codes = draw(
        st.lists(
            st.text("ABC-1", min_size=1, max_size=3), min_size=count, max_size=count, unique=True
        )
    )
    types = draw(st.lists(st.sampled_from(list(LocationType)), min_size=count, max_size=count))
    # Few distinct distances, so that ties reach the later keys.
    distances = draw(
        st.lists(st.sampled_from([0.0, 5.5, 12.0, 300.0]), min_size=count, max_size=count)
    )
    usable = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    lines = draw(st.integers(1, 4))
    units = [
        draw(st.lists(st.integers(0, 6), min_size=count, max_size=count)) for _ in range(lines)
    ]
    quantities = draw(st.lists(st.integers(1, 5), min_size=lines, max_size=lines))
    no_stores = draw(st.lists(st.booleans(), min_size=lines, max_size=lines))
    with_destination = draw(st.booleans())
    limit = draw(st.integers(0, 6))
    return codes, types, distances, usable, units, quantities, no_stores, with_destination, limit


@given(baskets())
def test_the_arrays_rank_as_the_loop_did(basket: tuple[object, ...]) -> None:
    codes, types, distances, usable, units, quantities, no_stores, with_destination, limit = basket  # type: ignore[misc]
    locations = tuple(
        Location(code=code, name=code, type=kind, latitude=0.0, longitude=0.0)
        for code, kind in zip(codes, types, strict=True)
    )
    candidates = Candidates(locations)
    stores = {
        loc.code for loc in locations if loc.type in (LocationType.STORE, LocationType.DARK_STORE)
    }
    eligible = {
        code: (distance if with_destination else None)
        for code, distance, ok in zip(codes, distances, usable, strict=True)
        if ok
    }
    atp = [{code: n for code, n in zip(codes, line, strict=True) if n > 0} for line in units]
    barred = [stores if no else set() for no in no_stores]
    expected_lines, expected_singles = reference(atp, quantities, eligible, barred, limit)

    mask = np.array(usable, dtype=np.bool_)
    nearest = np.array(distances if with_destination else [0.0] * len(codes))
    arrays = [np.array(line, dtype=np.int64) for line in units]
    serving = [mask & ~candidates.is_store if no else mask for no in no_stores]
    for line, quantity, allowed, (available, ranked) in zip(
        arrays, quantities, serving, expected_lines, strict=True
    ):
        got_available, slots = rank_sources(
            line,
            usable=allowed,
            distances=nearest,
            code_rank=candidates.code_rank,
            quantity=quantity,
            limit=limit,
        )
        assert got_available == available
        assert [(codes[s], int(line[s])) for s in slots] == ranked
    singles = whole_basket_slots(
        arrays,
        quantities,
        serving=serving,
        distances=nearest,
        code_rank=candidates.code_rank,
        limit=limit,
    )
    assert [codes[s] for s in singles] == expected_singles
