"""The demo retailer generator: reproducible to the byte, and shaped like a real retailer."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms.demo.generator import (
    CHANNELS,
    COLLECTED_AT_LOCATION,
    CURBSIDE,
    DARK_STORE,
    DATASET_FILES,
    DC,
    DELIVERY_METHODS,
    LOW_STOCK,
    NEAR_STORE_KM,
    PICKUP,
    SIZES,
    STORE,
    THIRD_PARTY,
    VENDOR,
    Order,
    Retailer,
    UnknownSize,
    distance_km,
    generate_retailer,
    gtin13,
    gtin_is_valid,
    us_cities,
    write_dataset,
)

SMALL = SIZES["small"]
# The small shape with more customers and orders, so that sampled shares settle near their targets.
BUSY = replace(SMALL, customers=4_000, orders=12_000)


@cache
def retailer(seed: int = 7, busy: bool = False) -> Retailer:
    return generate_retailer(seed, BUSY if busy else SMALL)


@cache
def orders(seed: int = 7, busy: bool = False) -> tuple[Order, ...]:
    return tuple(retailer(seed, busy).orders())


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda index: values[index])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2
        start = end + 1
    return ranks


def spearman(first: Sequence[float], second: Sequence[float]) -> float:
    a, b = _ranks(first), _ranks(second)
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    covariance = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True))
    spread = (sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b)) ** 0.5
    return covariance / spread


# --- reproducible ----------------------------------------------------------------------------


def test_the_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    first = write_dataset(generate_retailer(11, "small"), tmp_path / "first")
    second = write_dataset(generate_retailer(11, "small"), tmp_path / "second")

    assert first == second
    assert all(rows > 0 for rows in first.values())
    for name in (*DATASET_FILES, "manifest.json"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()


def test_a_different_seed_writes_different_data(tmp_path: Path) -> None:
    write_dataset(generate_retailer(11, "small"), tmp_path / "a")
    write_dataset(generate_retailer(12, "small"), tmp_path / "b")

    for name in DATASET_FILES:
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "b" / name).read_bytes(), name


def test_streams_start_again_on_every_call() -> None:
    shop = retailer()
    assert list(shop.positions()) == list(shop.positions())
    assert tuple(shop.orders()) == orders()


def test_the_manifest_counts_rows_and_names_each_files_digest(tmp_path: Path) -> None:
    import hashlib
    import json

    counts = write_dataset(retailer(), tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())

    assert manifest["seed"] == 7 and manifest["size"] == "small"
    for name in DATASET_FILES:
        data = (tmp_path / name).read_bytes()
        assert manifest["files"][name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert manifest["files"][name]["rows"] == counts[name]
    csv_lines = (tmp_path / "positions.csv").read_text().count("\n")
    assert csv_lines == counts["positions.csv"] + 1  # header


# --- places ----------------------------------------------------------------------------------


def test_the_network_has_the_shapes_location_mix_with_unique_codes() -> None:
    shop = retailer()
    types = Counter(location.type for location in shop.locations)

    assert types[DC] == SMALL.distribution_centres
    assert types[STORE] + types[DARK_STORE] == SMALL.stores
    assert types[DARK_STORE] >= 1
    assert types[VENDOR] == SMALL.vendors
    assert types[THIRD_PARTY] == SMALL.third_party_warehouses
    codes = [location.code for location in shop.locations]
    assert len(codes) == len(set(codes)) == SMALL.location_count


def test_locations_stand_in_real_cities_with_their_time_zones() -> None:
    cities = {city.geonameid: city for city in us_cities()}
    for location in retailer().locations:
        city = cities[location.city_geonameid]
        assert location.address.city == city.name
        assert location.timezone == city.timezone
        assert location.city_population == city.population
        near = distance_km(location.latitude, location.longitude, city.latitude, city.longitude)
        assert near < 25, location
        assert location.handling_cost == location.handling_cost.quantize(location.handling_cost)
        assert location.handling_cost > 0


def test_stores_follow_population_and_dark_stores_serve_no_walk_ins() -> None:
    shop = retailer(busy=True)
    stores = [location for location in shop.locations if location.type in (STORE, DARK_STORE)]
    per_city = Counter(location.city_geonameid for location in stores)
    largest = us_cities()[0]

    assert per_city[largest.geonameid] == max(per_city.values())
    for location in shop.locations:
        if location.type == DC:
            assert location.opening_hours == {}  # always open
        if location.type == VENDOR:
            assert "sat" not in location.opening_hours and "mon" in location.opening_hours
    for location in stores:
        if location.type == DARK_STORE:
            assert PICKUP not in location.capabilities
            assert CURBSIDE in location.capabilities
        else:
            assert PICKUP in location.capabilities
            assert location.opening_hours["sun"] == (("10:00", "18:00"),)
            assert location.opening_hours["mon"] == (("09:00", "21:00"),)


# --- catalogue and stock ---------------------------------------------------------------------


def test_items_are_unique_with_valid_gtins_and_sensible_values() -> None:
    items = retailer().items

    assert len({item.sku for item in items}) == len(items) == SMALL.items
    assert len({item.gtin for item in items}) == len(items)
    assert all(gtin_is_valid(item.gtin) for item in items)
    assert all(item.price > 0 and item.price.as_tuple().exponent == -2 for item in items)
    assert all(item.weight_grams > 0 and item.length_mm >= item.width_mm for item in items)
    assert any(item.hazmat for item in items) and any(item.ship_alone for item in items)
    assert sum(item.popularity for item in items) == pytest.approx(1.0)


def test_popularity_has_a_long_tail() -> None:
    items = sorted(retailer().items, key=lambda item: item.popularity_rank)
    shares = [item.popularity for item in items]
    assert shares == sorted(shares, reverse=True)
    top_tenth = sum(shares[: len(shares) // 10])
    assert top_tenth > 0.3  # the best tenth sells far more than a tenth of the units
    assert shares[0] > 20 * shares[-1]

    # and the order stream buys accordingly
    units = Counter[str]()
    for order in orders(busy=True):
        for line in order.lines:
            units[line.sku] += line.quantity
    sold = [units[item.sku] for item in items]
    assert spearman(shares, sold) > 0.8


def test_stock_is_deep_in_dcs_and_shallow_in_stores() -> None:
    shop = retailer()
    kinds = {location.code: location.type for location in shop.locations}
    on_hand: dict[str, list[int]] = {}
    safety: dict[str, set[int]] = {}
    for position in shop.positions():
        kind = kinds[position.location_code]
        on_hand.setdefault(kind, []).append(position.on_hand)
        safety.setdefault(kind, set()).add(position.safety_stock)

    assert statistics.fmean(on_hand[STORE]) * 5 < statistics.fmean(on_hand[DC])
    assert statistics.fmean(on_hand[DARK_STORE]) < statistics.fmean(on_hand[DC])
    assert all(value >= 0 for values in on_hand.values() for value in values)
    assert safety[STORE] == {2} and safety[DC] == {0}
    # stores range part of the catalogue; DCs carry all of it but the drop-ship items
    stocked = sum(1 for item in shop.items if item.vendor_code is None)
    store_count = sum(1 for kind in kinds.values() if kind == STORE)
    assert len(on_hand[DC]) == SMALL.distribution_centres * stocked
    assert len(on_hand[STORE]) < store_count * stocked


def test_drop_ship_items_are_stocked_only_by_their_vendor() -> None:
    shop = retailer()
    vendor_of = {item.sku: item.vendor_code for item in shop.items}
    vendors = {location.code for location in shop.locations if location.type == VENDOR}

    assert {code for code in vendor_of.values() if code} == vendors  # every vendor supplies
    for position in shop.positions():
        vendor = vendor_of[position.sku]
        if vendor is not None:
            assert position.location_code == vendor
        else:
            assert position.location_code not in vendors


def test_supply_replenishes_low_dcs_and_sends_popular_items_to_stores_that_lack_them() -> None:
    shop = retailer()
    kinds = {location.code: location.type for location in shop.locations}
    on_hand = {(p.sku, p.location_code): p.on_hand for p in shop.positions()}
    rank = {item.sku: item.popularity_rank for item in shop.items}
    supply = list(shop.supply())
    dates: dict[str, set[int]] = {}

    assert {line.kind for line in supply} == {"purchase_order", "transfer"}
    for line in supply:
        assert line.quantity > 0 and line.expected_in_days >= 1
        if line.kind == "purchase_order":
            assert kinds[line.location_code] in (DC, THIRD_PARTY) and line.status == "open"
            assert on_hand[(line.sku, line.location_code)] < LOW_STOCK
            assert line.quantity % 12 == 0  # whole cases
            dates.setdefault(line.reference, set()).add(line.expected_in_days)
        else:
            assert kinds[line.location_code] in (STORE, DARK_STORE)
            assert line.status == "in_transit" and line.expected_in_days <= 3
            assert on_hand[(line.sku, line.location_code)] == 0
            assert rank[line.sku] <= len(shop.items) // 5
    assert all(len(days) == 1 for days in dates.values())  # one due date per purchase order
    assert len({(line.reference, line.sku) for line in supply}) == len(supply)


# --- customers and orders ---------------------------------------------------------------------


def test_demand_by_city_follows_population() -> None:
    shop = retailer(busy=True)
    city_of = {customer.customer_number: customer.city_geonameid for customer in shop.customers}
    demand = Counter(city_of[order.customer_number] for order in orders(busy=True))
    cities = us_cities()[: BUSY.customer_cities]

    assert set(demand) <= {city.geonameid for city in cities}
    population = [city.population for city in cities]
    living = Counter(customer.city_geonameid for customer in shop.customers)
    # Customers are placed by population; orders follow them, a little less closely because
    # shopping in a store or collecting there needs a store nearby (seeds 1-6: 0.82-0.88).
    assert spearman(population, [living[city.geonameid] for city in cities]) > 0.9
    assert spearman(population, [demand[city.geonameid] for city in cities]) > 0.75
    # and the largest city orders the most
    assert demand.most_common(1)[0][0] == cities[0].geonameid


def test_channel_and_delivery_method_mixes_are_near_their_targets() -> None:
    placed = orders(busy=True)
    mix = BUSY.mix
    channels = Counter(order.channel for order in placed)
    methods = Counter(order.delivery_method for order in placed)
    total_weight = sum(mix.channels.values())

    assert set(channels) == set(CHANNELS)
    for channel in CHANNELS:
        assert channels[channel] / len(placed) == pytest.approx(
            mix.channels[channel] / total_weight, abs=0.02
        )
    expected = mix.expected_method_shares()
    assert set(methods) == set(DELIVERY_METHODS)
    for method in DELIVERY_METHODS:
        assert methods[method] / len(placed) == pytest.approx(expected[method], abs=0.02)
    assert statistics.fmean(len(order.lines) for order in placed) == pytest.approx(
        mix.mean_basket_size(), rel=0.05
    )
    assert max(len(order.lines) for order in placed) >= 6


def test_orders_are_placed_on_the_channels_time_of_day_curve() -> None:
    shop = retailer(busy=True)
    zone_of = {c.customer_number: ZoneInfo(c.timezone) for c in shop.customers}
    hours: dict[str, Counter[int]] = {channel: Counter() for channel in CHANNELS}
    for order in orders(busy=True):
        local = order.placed_at.astimezone(zone_of[order.customer_number])
        hours[order.channel][local.hour] += 1
        assert BUSY.first_day <= local.date() < BUSY.first_day + timedelta(days=BUSY.days)

    for channel in ("web", "app", "store", "call_center"):
        peak = hours[channel].most_common(1)[0][0]
        assert abs(peak - BUSY.mix.peak_hour(channel)) <= 1, (channel, hours[channel])
        closed = [hour for hour in range(24) if BUSY.mix.hours[channel][hour] == 0]
        assert all(hours[channel][hour] == 0 for hour in closed), channel
    assert hours["web"][20] > 5 * hours["web"][3]


def test_orders_name_real_customers_items_and_able_locations() -> None:
    shop = retailer()
    customers = {customer.customer_number: customer for customer in shop.customers}
    items = {item.sku: item for item in shop.items}
    locations = {location.code: location for location in shop.locations}

    for order in orders():
        assert order.customer_number in customers
        if order.channel == "store" or order.delivery_method in COLLECTED_AT_LOCATION:
            assert customers[order.customer_number].home_store_distance_km <= NEAR_STORE_KM
        assert order.placed_at.utcoffset() == timedelta(0)
        assert order.lines and len({line.sku for line in order.lines}) == len(order.lines)
        assert order.total == sum(line.unit_price * line.quantity for line in order.lines)
        for line in order.lines:
            item = items[line.sku]
            assert line.unit_price == item.price and line.quantity >= 1
            assert (item.vendor_code is not None) == (order.delivery_method == "dropship")
            if order.delivery_method in COLLECTED_AT_LOCATION:
                assert item.pickup_allowed
        if order.channel == "store":
            assert locations[order.taken_at_location_code or ""].type == STORE
        else:
            assert order.taken_at_location_code is None
        if order.delivery_method in COLLECTED_AT_LOCATION:
            pickup_at = locations[order.pickup_location_code or ""]
            needed = CURBSIDE if order.delivery_method == "curbside" else PICKUP
            assert needed in pickup_at.capabilities
        else:
            assert order.pickup_location_code is None


# --- contract -------------------------------------------------------------------------------


def test_unknown_sizes_and_impossible_shapes_are_refused() -> None:
    with pytest.raises(UnknownSize, match="use one of small, medium, large"):
        generate_retailer(1, "huge")
    with pytest.raises(ValueError, match="at least one DC"):
        generate_retailer(1, replace(SMALL, distribution_centres=0))
    with pytest.raises(ValueError, match="at most 100 vendors"):
        generate_retailer(1, replace(SMALL, vendors=200))
    with pytest.raises(ValueError, match="unknown channel"):
        generate_retailer(1, replace(SMALL, mix=replace(SMALL.mix, channels={"fax": 1.0})))


def test_the_large_size_is_the_benchmark_network() -> None:
    large = SIZES["large"]
    assert large.location_count == 500 and large.items == 20_000
    assert large.store_range_share == 1.0  # every store ranges every item: ~9M positions


@given(st.text(alphabet="0123456789", min_size=12, max_size=12), st.integers(0, 11), st.data())
def test_a_gtin_check_digit_catches_any_single_wrong_digit(
    base: str, position: int, data: st.DataObject
) -> None:
    gtin = gtin13(base)
    assert gtin_is_valid(gtin)
    wrong = data.draw(st.sampled_from([d for d in "0123456789" if d != gtin[position]]))
    assert not gtin_is_valid(gtin[:position] + wrong + gtin[position + 1 :])


def test_known_gtins() -> None:
    assert gtin13("400638133393") == "4006381333931"
    assert gtin_is_valid("036000291452")  # a UPC-A
    assert not gtin_is_valid("4006381333932")
    assert not gtin_is_valid("40063813339X")


def test_the_smallest_retailer_still_makes_whole_orders() -> None:
    tiny = replace(
        SMALL,
        distribution_centres=1,
        stores=1,
        vendors=1,
        third_party_warehouses=0,
        lockers=0,
        items=10,
        customers=5,
        orders=200,
        customer_cities=3,
    )
    shop = generate_retailer(3, tiny)

    assert [loc.type for loc in shop.locations] == [DC, STORE, VENDOR]
    placed = list(shop.orders())
    assert len(placed) == 200
    assert all(order.lines for order in placed)
    assert list(shop.positions())
