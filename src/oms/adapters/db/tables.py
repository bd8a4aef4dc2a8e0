"""The schema of record (SQLAlchemy Core). Alembic migrations are generated from it.

Each area keeps its tables together under a heading; names are plain retail terms.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from oms.adapters.db.types import JsonDocument, Money, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# An auto-incrementing 64-bit key that SQLite also treats as its rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# --- access -----------------------------------------------------------------------------------

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("location_codes", JsonDocument, nullable=False),
    Column("secret_hash", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
)

idempotency_records = Table(
    "idempotency_records",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("response_status", Integer),
    Column("response_headers", JsonDocument),
    Column("response_body", LargeBinary),
    Column("created_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime),
)

# --- events -----------------------------------------------------------------------------------

outbox_events = Table(
    "outbox_events",
    metadata,
    Column("position", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("type", String(100), nullable=False),
    Column("source", String(200), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("time", UtcDateTime, nullable=False),
    Column("data", JsonDocument, nullable=False),
    Column("published_at", UtcDateTime),
    Index(
        "ix_outbox_events_unpublished",
        "position",
        postgresql_where=text("published_at IS NULL"),
        sqlite_where=text("published_at IS NULL"),
    ),
    Index("ix_outbox_events_type_position", "type", "position"),
)

# --- inventory --------------------------------------------------------------------------------

locations = Table(
    "locations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("capabilities", JsonDocument, nullable=False),
    Column("address", JsonDocument, nullable=False),
    Column("latitude", Float, nullable=False),
    Column("longitude", Float, nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("daily_capacity", Integer),
    Column("capacity_unit", String(8), nullable=False),
    Column("handling_cost", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("pick_minutes", Integer, nullable=False),
    Column("cutoff_time", String(5)),
    Column("opening_hours", JsonDocument, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

location_capacity_usage = Table(
    "location_capacity_usage",
    metadata,
    Column("location_id", ForeignKey("locations.id"), primary_key=True),
    Column("on_date", Date, primary_key=True),
    Column("used", Integer, nullable=False),
)

items = Table(
    "items",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("sku", String(64), nullable=False, unique=True),
    Column("gtin", String(14), unique=True),
    Column("name", String(300), nullable=False),
    Column("weight_grams", Integer, nullable=False),
    Column("length_mm", Integer, nullable=False),
    Column("width_mm", Integer, nullable=False),
    Column("height_mm", Integer, nullable=False),
    Column("ship_alone", Boolean, nullable=False),
    Column("hazmat", Boolean, nullable=False),
    Column("pickup_allowed", Boolean, nullable=False),
    Column("ship_from_store_allowed", Boolean, nullable=False),
    Column("low_stock_threshold", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

safety_stock_defaults = Table(
    "safety_stock_defaults",
    metadata,
    Column("location_type", String(16), primary_key=True),
    Column("quantity", Integer, nullable=False),
)

channel_buffers = Table(
    "channel_buffers",
    metadata,
    Column("channel", String(32), primary_key=True),
    Column("percent", Integer, nullable=False),
    Column("units", Integer, nullable=False),
    CheckConstraint("percent >= 0 AND percent <= 100", name="percent_range"),
    CheckConstraint("units >= 0", name="units_positive"),
)

inventory_positions = Table(
    "inventory_positions",
    metadata,
    Column("item_id", ForeignKey("items.id"), primary_key=True),
    Column("location_id", ForeignKey("locations.id"), primary_key=True),
    Column("on_hand", Integer, nullable=False),
    Column("allocated", Integer, nullable=False),
    # The sum of active holds, including expired ones the worker has not freed yet: readers
    # subtract those with the clock (see SqlInventoryRepository), writers free them first.
    Column("reserved", Integer, nullable=False),
    Column("blocked", Integer, nullable=False),
    Column("safety_stock", Integer, nullable=False),
    # True when safety_stock was set for this position, not copied from its location type.
    Column("safety_stock_set", Boolean, nullable=False),
    Column("snapshot_as_of", UtcDateTime),
    Column("snapshot_sequence", BigInteger),
    Column("last_movement_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("on_hand >= 0", name="on_hand_positive"),
    CheckConstraint("allocated >= 0", name="allocated_positive"),
    CheckConstraint("reserved >= 0", name="reserved_positive"),
    CheckConstraint("blocked >= 0", name="blocked_positive"),
    CheckConstraint("safety_stock >= 0", name="safety_stock_positive"),
    Index("ix_inventory_positions_location", "location_id", "item_id"),
)

inventory_movements = Table(
    "inventory_movements",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("item_id", ForeignKey("items.id"), nullable=False),
    Column("location_id", ForeignKey("locations.id"), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("on_hand_change", Integer, nullable=False),
    Column("reason", String(200)),
    Column("source", String(100)),
    Column("message_id", String(200)),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Index("ix_inventory_movements_position", "item_id", "location_id", "occurred_at"),
)

feed_messages = Table(
    "feed_messages",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("message_id", String(200), primary_key=True),
    Column("kind", String(24), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("reference", String(200), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index(
        "ix_reservations_active_expiry",
        "expires_at",
        postgresql_where=text("status = 'active'"),
        sqlite_where=text("status = 'active'"),
    ),
)

reservation_lines = Table(
    "reservation_lines",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("reservation_id", ForeignKey("reservations.id"), nullable=False),
    Column("item_id", ForeignKey("items.id"), nullable=False),
    Column("location_id", ForeignKey("locations.id"), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    Index("ix_reservation_lines_reservation", "reservation_id"),
    Index(
        "ix_reservation_lines_active",
        "item_id",
        "location_id",
        "expires_at",
        postgresql_where=text("status = 'active'"),
        sqlite_where=text("status = 'active'"),
    ),
)

supply_lines = Table(
    "supply_lines",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("reference", String(100), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("item_id", ForeignKey("items.id"), nullable=False),
    Column("location_id", ForeignKey("locations.id"), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("expected_on", Date, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    UniqueConstraint("reference", "item_id", "location_id", name="uq_supply_lines_line"),
    Index("ix_supply_lines_position", "item_id", "location_id"),
)

__all__ = [
    "BigId",
    "ForeignKey",
    "Text",
    "UniqueConstraint",
    "api_keys",
    "channel_buffers",
    "feed_messages",
    "idempotency_records",
    "inventory_movements",
    "inventory_positions",
    "items",
    "location_capacity_usage",
    "locations",
    "metadata",
    "outbox_events",
    "reservation_lines",
    "reservations",
    "safety_stock_defaults",
    "supply_lines",
]
