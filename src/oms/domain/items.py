"""Items (SKUs): what is sold, its size and weight, and how it may be fulfilled."""

from __future__ import annotations

import re
from dataclasses import dataclass

from oms.domain.errors import Conflict, Invalid, NotFound

DEFAULT_LOW_STOCK_THRESHOLD = 3


class ItemNotFound(NotFound):
    slug = "item-not-found"
    title = "No such item"


class ItemExists(Conflict):
    slug = "item-exists"
    title = "An item with this SKU exists already"


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    gtin: str | None = None
    weight_grams: int = 0
    length_mm: int = 0
    width_mm: int = 0
    height_mm: int = 0
    ship_alone: bool = False
    """Ships in its own package (a bicycle, a sofa)."""
    hazmat: bool = False
    pickup_allowed: bool = True
    ship_from_store_allowed: bool = True
    low_stock_threshold: int = DEFAULT_LOW_STOCK_THRESHOLD
    """At or below this ATP at a location, ``availability.low`` is emitted."""


def gtin_check_digit_ok(gtin: str) -> bool:
    """GTIN-8/12/13/14 with a valid GS1 check digit."""
    if not re.fullmatch(r"\d{8}|\d{12,14}", gtin):
        return False
    digits = [int(d) for d in gtin]
    body, check = digits[:-1], digits[-1]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def validate_item(item: Item) -> Item:
    errors: list[dict[str, str]] = []
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}", item.sku or ""):
        errors.append({"pointer": "#/sku", "detail": "1-64 letters, digits, '.', '_' or '-'"})
    if not item.name.strip():
        errors.append({"pointer": "#/name", "detail": "empty"})
    if item.gtin is not None and not gtin_check_digit_ok(item.gtin):
        errors.append({"pointer": "#/gtin", "detail": "not a GTIN-8/12/13/14 with a valid check"})
    for name in ("weight_grams", "length_mm", "width_mm", "height_mm", "low_stock_threshold"):
        if getattr(item, name) < 0:
            errors.append({"pointer": f"#/{name}", "detail": "must be >= 0"})
    if errors:
        raise Invalid(f"item '{item.sku}' is not valid", errors=errors)
    return item
