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
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
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

# --- payments ---------------------------------------------------------------------------------

payment_orders = Table(
    "payment_orders",
    metadata,
    Column("order_ref", String(64), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("capture_order", String(32), nullable=False),
    Column("refund_order", String(32), nullable=False),
    Column("customer", JsonDocument),
    Column("created_at", UtcDateTime, nullable=False),
)

payment_tenders = Table(
    "payment_tenders",
    metadata,
    Column("order_ref", String(64), ForeignKey("payment_orders.order_ref"), primary_key=True),
    Column("tender_id", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("token", String(255), nullable=False),
    Column("limit_amount", Money),
)

payment_transactions = Table(
    "payment_transactions",
    metadata,
    Column("transaction_id", BigId, primary_key=True, autoincrement=True),
    Column("order_ref", String(64), ForeignKey("payment_orders.order_ref"), nullable=False),
    Column("tender_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("reference", String(128), nullable=False),
    Column("parent_reference", String(128)),
    Column("amount", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Column("shipment_ref", String(64)),
    Column("refund_ref", String(64)),
    Column("reason", String(200)),
    Index("ix_payment_transactions_order", "order_ref", "transaction_id"),
)

payment_gateway_calls = Table(
    "payment_gateway_calls",
    metadata,
    Column("call_id", BigId, primary_key=True, autoincrement=True),
    Column("order_ref", String(64), nullable=False),
    Column("tender_id", String(64), nullable=False),
    Column("gateway", String(32), nullable=False),
    Column("operation", String(16), nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("request", JsonDocument, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("response", JsonDocument),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_payment_gateway_calls_order", "order_ref", "call_id"),
    Index("ix_payment_gateway_calls_key", "idempotency_key"),
)

invoices = Table(
    "invoices",
    metadata,
    Column("invoice_id", String(64), primary_key=True),
    Column("number", String(32), nullable=False, unique=True),
    Column("order_ref", String(64), nullable=False),
    Column("shipment_ref", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("document", JsonDocument, nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
    UniqueConstraint("order_ref", "shipment_ref", name="uq_invoices_order_shipment"),
)

invoice_series = Table(
    "invoice_series",
    metadata,
    Column("series", String(16), primary_key=True),
    Column("last_number", Integer, nullable=False),
)
"""The last number issued per series (``INV-2026``): the next one is one upsert, its row locked
until the issuing transaction ends, so numbers have neither gaps nor duplicates."""

# The sandbox gateway's own state: a real gateway keeps this on its side. It is written on the
# sandbox's own connection and committed at once, whatever the caller's transaction does.
sandbox_gateway_requests = Table(
    "sandbox_gateway_requests",
    metadata,
    Column("idempotency_key", String(255), primary_key=True),
    Column("operation", String(16), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("result", JsonDocument, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

sandbox_gateway_payments = Table(
    "sandbox_gateway_payments",
    metadata,
    Column("reference", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("parent_reference", String(64)),
    Column("token", String(255), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", Money, nullable=False),
    Column("captured", Money, nullable=False),
    Column("refunded", Money, nullable=False),
    Column("released", Money, nullable=False),
    Column("expires_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_sandbox_gateway_payments_token", "token"),
)

# --- notifications ----------------------------------------------------------------------------

contact_preferences = Table(
    "contact_preferences",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("email_enabled", Boolean, nullable=False),
    Column("marketing_opt_out", Boolean, nullable=False),
    Column("language", String(8)),
    Column("updated_at", UtcDateTime, nullable=False),
)

notification_cursors = Table(
    "notification_cursors",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("delivery_id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("template", String(64), nullable=False),
    Column("language", String(8), nullable=False),
    Column("recipient", String(320)),
    Column("subject", Text),
    Column("body", Text),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime),
    Column("last_error", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),
    UniqueConstraint("event_id", "channel", name="uq_notification_deliveries_event_channel"),
    Index("ix_notification_deliveries_due", "status", "next_attempt_at"),
)

# --- processes --------------------------------------------------------------------------------

process_definitions = Table(
    "process_definitions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("key", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("bpmn_xml", Text, nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("deployed_at", UtcDateTime, nullable=False),
    Column("deployed_by", String(200), nullable=False),
    UniqueConstraint("key", "version", name="uq_process_definitions_key_version"),
)

process_instances = Table(
    "process_instances",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("definition_id", BigId, ForeignKey("process_definitions.id"), nullable=False),
    Column("process_key", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("correlation_key", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    # SpiffWorkflow's JSON as text: its task tree must keep key order, which JSONB does not.
    Column("state", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("waiting_messages", JsonDocument, nullable=False),
    Column("active_elements", JsonDocument, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime),
    Index("ix_process_instances_correlation", "correlation_key", "status"),
)

process_tasks = Table(
    "process_tasks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("instance_id", String(36), ForeignKey("process_instances.id"), nullable=False),
    Column("spiff_task_id", String(36), nullable=False),
    Column("element_id", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("location_code", String(64)),
    Column("candidate_role", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("required_fields", JsonDocument, nullable=False),
    Column("data", JsonDocument, nullable=False),
    Column("result", JsonDocument),
    Column("claimed_by", String(200)),
    Column("completed_by", String(200)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("claimed_at", UtcDateTime),
    Column("completed_at", UtcDateTime),
    UniqueConstraint("instance_id", "spiff_task_id", name="uq_process_tasks_instance_spiff_task"),
    Index("ix_process_tasks_location_state", "location_code", "state"),
)

process_timers = Table(
    "process_timers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("instance_id", String(36), ForeignKey("process_instances.id"), nullable=False),
    Column("spiff_task_id", String(36), nullable=False),
    Column("element_id", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("fired_at", UtcDateTime),
    Column("error", Text),
    UniqueConstraint("instance_id", "spiff_task_id", name="uq_process_timers_instance_spiff_task"),
    Index(
        "ix_process_timers_pending_due",
        "due_at",
        postgresql_where=text("state = 'pending'"),
        sqlite_where=text("state = 'pending'"),
    ),
)

process_messages = Table(
    "process_messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("message_name", String(100), nullable=False),
    Column("correlation_key", String(200), nullable=False),
    Column("payload", JsonDocument, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("consumed_at", UtcDateTime),
    Column("consumed_by", String(36)),
    Index(
        "ix_process_messages_waiting",
        "correlation_key",
        "message_name",
        postgresql_where=text("consumed_at IS NULL"),
        sqlite_where=text("consumed_at IS NULL"),
    ),
)

process_history = Table(
    "process_history",
    metadata,
    Column("position", BigId, primary_key=True, autoincrement=True),
    Column("instance_id", String(36), ForeignKey("process_instances.id"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("element_id", String(200)),
    Column("detail", JsonDocument, nullable=False),
    Index("ix_process_history_instance", "instance_id", "position"),
)

# --- event deliveries and webhooks ------------------------------------------------------------

event_deliveries = Table(
    # One row per event handed to a broker (channel 'nats'): where it went and its stream sequence.
    "event_deliveries",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("channel", String(16), primary_key=True),
    Column("target", String(200), nullable=False),
    Column("sequence", BigInteger),
    Column("duplicate", Boolean, nullable=False),
    Column("delivered_at", UtcDateTime, nullable=False),
)

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("subscription_id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("event_types", JsonDocument, nullable=False),
    Column("secret", String(100), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_by", String(300), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("delivery_id", String(36), primary_key=True),
    Column(
        "subscription_id",
        String(36),
        ForeignKey("webhook_subscriptions.subscription_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event_id", String(64), nullable=False),
    Column("event_position", BigInteger, nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt_count", Integer, nullable=False),
    Column("round_attempts", Integer, nullable=False),
    Column("replays", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime),
    Column("lease_token", String(64)),
    Column("leased_until", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_attempt_at", UtcDateTime),
    Column("last_response_status", Integer),
    Column("last_error", Text),
    Column("succeeded_at", UtcDateTime),
    Column("dead_lettered_at", UtcDateTime),
    UniqueConstraint("event_id", "subscription_id"),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_subscription", "subscription_id", "created_at"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("attempt_id", BigId, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        String(36),
        ForeignKey("webhook_deliveries.delivery_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("number", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("response_status", Integer),
    Column("error", Text),
    Column("succeeded", Boolean, nullable=False),
    Index("ix_webhook_attempts_delivery", "delivery_id", "number"),
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
    # 1 when added, one more at every update: the count of locations and the sum of their
    # revisions change with every change, the signature reference-data caches are keyed by
    Column("revision", Integer, nullable=False, server_default="1"),
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

SQLITE_ONLY_INDEX = "ix_inventory_positions_stock"


def in_schema_of(dialect_name: str, name: str | None, type_: str) -> bool:
    """Whether an object of tables.py exists on this dialect (for migrations' comparisons):
    the covering stock index exists on SQLite only."""
    return not (type_ == "index" and name == SQLITE_ONLY_INDEX and dialect_name != "sqlite")


STOCK_COLUMNS = ("on_hand", "allocated", "reserved", "blocked", "safety_stock")

inventory_positions = Table(
    "inventory_positions",
    metadata,
    Column("item_id", ForeignKey("items.id"), nullable=False),
    Column("location_id", ForeignKey("locations.id"), nullable=False),
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
    # Availability reads an item's positions at every location from an index alone (its
    # entries sit together), not one table page per position (positions arrive location by
    # location, so an item's rows are spread over as many pages as it has locations). On
    # PostgreSQL the primary key carries the stock columns (INCLUDE): no second index to
    # maintain; its cost is that stock updates are not HOT (bulk counts were not anyway: full
    # pages). SQLite has no INCLUDE: a separate covering index.
    # Measured (10M positions, 500 locations x 20,000 items): a plain key with fillfactor 50
    # makes a recount's updates HOT (~100%), but the heap as counts build it is in location
    # order, so a basket then fetches one table page per position: p99 65-72 ms against
    # 9-21 ms with this key. Only with the heap clustered by item (CLUSTER, not something
    # the system does) were baskets on a par (p99 10-12 ms) and a recount 7.1k -> 10k/s.
    PrimaryKeyConstraint("item_id", "location_id", postgresql_include=list(STOCK_COLUMNS)),
    Index("ix_inventory_positions_location", "location_id", "item_id"),
    Index(SQLITE_ONLY_INDEX, "item_id", "location_id", *STOCK_COLUMNS).ddl_if(dialect="sqlite"),
)

inventory_movements = Table(
    "inventory_movements",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # No foreign keys: the journal is appended by the inventory repository only, for positions
    # it has just written (which reference their item and location); items, locations and
    # positions are never deleted. On PostgreSQL the two checks per row (each locking the
    # parent row) were half the time of a snapshot's journal insert.
    Column("item_id", BigId, nullable=False),
    Column("location_id", BigId, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("on_hand_change", Integer, nullable=False),
    Column("reason", String(200)),
    Column("source", String(100)),
    Column("message_id", String(200)),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Index("ix_inventory_movements_position", "location_id", "item_id", "occurred_at"),
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
    # No foreign keys to items and locations: a line is written only for a position whose row
    # the same transaction updates (the position references both; none of the three is ever
    # deleted). On PostgreSQL the two checks ran inside a hot item's row lock (migration 0020).
    Column("item_id", BigId, nullable=False),
    Column("location_id", BigId, nullable=False),
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

# --- orders -----------------------------------------------------------------------------------

orders = Table(
    "orders",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("order_number", String(32), nullable=False, unique=True),
    Column("channel", String(16), nullable=False),
    Column("channel_reference", String(200), nullable=False),
    Column("customer_id", String(100)),
    Column("customer_name", String(200)),
    Column("customer_email", String(254)),
    Column("customer_phone", String(40)),
    Column("currency", String(3), nullable=False),
    Column("subtotal", Money, nullable=False),
    Column("discount_total", Money, nullable=False),
    Column("tax_total", Money, nullable=False),
    Column("shipping_charge", Money, nullable=False),
    Column("total", Money, nullable=False),
    # Derived from the line quantities at every save, kept here for search only.
    Column("status", String(40), nullable=False),
    Column("on_hold", Boolean, nullable=False),
    Column("payments", JsonDocument, nullable=False),
    Column("notes", Text),
    Column("tags", JsonDocument, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    # A retried capture finds the order by the channel's own reference: never a duplicate.
    UniqueConstraint("channel", "channel_reference", name="uq_orders_channel_reference"),
    Index("ix_orders_created", "created_at", "order_id"),
    Index("ix_orders_status_created", "status", "created_at"),
    Index("ix_orders_customer_email", "customer_email"),
    Index("ix_orders_customer_phone", "customer_phone"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", ForeignKey("orders.order_id"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("sku", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Money, nullable=False),
    Column("discount", Money, nullable=False),
    Column("tax", Money, nullable=False),
    Column("delivery_method", String(24), nullable=False),
    Column("ship_address", JsonDocument),
    Column("pickup_location_code", String(64)),
    Column("requested_on", Date),
    Column("gift", Boolean, nullable=False),
    Column("gift_message", Text),
    Column("promised_on", Date),
    Column("status", String(40), nullable=False),
    CheckConstraint("quantity >= 0", name="quantity_not_negative"),
    Index("ix_order_lines_sku", "sku"),
)

order_line_quantities = Table(
    "order_line_quantities",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("state", String(24), primary_key=True),
    # '' for states not tied to a location (open, backordered, cancelled, returned).
    Column("location_code", String(64), primary_key=True),
    Column("quantity", Integer, nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    ForeignKeyConstraint(
        ["order_id", "line_no"],
        ["order_lines.order_id", "order_lines.line_no"],
        name="fk_order_line_quantities_line",
    ),
    Index("ix_order_line_quantities_state", "state", "order_id"),
    Index("ix_order_line_quantities_location", "location_code", "order_id"),
)

order_holds = Table(
    "order_holds",
    metadata,
    Column("hold_id", String(64), primary_key=True),
    Column("order_id", ForeignKey("orders.order_id"), nullable=False, index=True),
    Column("type", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("placed_by", String(200), nullable=False),
    Column("placed_at", UtcDateTime, nullable=False),
    Column("released_by", String(200)),
    Column("released_at", UtcDateTime),
    Column("release_reason", Text),
)

order_cancel_requests = Table(
    "order_cancel_requests",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("order_id", ForeignKey("orders.order_id"), nullable=False, index=True),
    Column("line_no", Integer, nullable=False),
    Column("location_code", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("decided_by", String(200)),
    Column("decided_at", UtcDateTime),
    Column("decision_reason", Text),
    Index("ix_order_cancel_requests_location", "location_code", "status"),
)

order_timeline = Table(
    "order_timeline",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("order_id", ForeignKey("orders.order_id"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(40), nullable=False),
    Column("reason", Text),
    Column("line_no", Integer),
    Column("old", JsonDocument),
    Column("new", JsonDocument),
    Index("ix_order_timeline_order", "order_id", "id"),
)

# GET /orders/{id} lists the order's events from the outbox by subject ("orders/<id>").
Index("ix_outbox_events_subject", outbox_events.c.subject, outbox_events.c.position)

# --- sourcing ---------------------------------------------------------------------------------

sourcing_profiles = Table(
    "sourcing_profiles",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("document", JsonDocument, nullable=False),
    Column("changed_by", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)
"""Every version of every sourcing profile; the highest version of a name is the current one."""

sourcing_rule_sets = Table(
    "sourcing_rule_sets",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("default_profile", String(100), nullable=False),
    Column("rules", JsonDocument, nullable=False),
    Column("changed_by", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)
"""Every version of the rules that choose a profile per order line; the highest is current."""

sourcing_decisions = Table(
    "sourcing_decisions",
    metadata,
    Column("decision_id", BigId, primary_key=True, autoincrement=True),
    Column("order_id", String(64), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("planner", String(32), nullable=False),
    Column("cost", Money, nullable=False),
    Column("backordered_units", Integer, nullable=False),
    Column("plan", JsonDocument, nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
    Index("ix_sourcing_decisions_order_id_decision_id", "order_id", "decision_id"),
)
"""Every sourcing decision with its explanation (capture, re-plan, outage), newest last."""

sourcing_bid_prices = Table(
    "sourcing_bid_prices",
    metadata,
    Column("table_id", BigId, primary_key=True, autoincrement=True),
    Column("computed_at", UtcDateTime, nullable=False),
    Column("document", JsonDocument, nullable=False),
)
"""Bid-price tables (the opportunity cost of stock, derived from recent orders and stock by the
``sourcing.bid_prices`` job), newest last; older ones are deleted when a new one is stored."""
# --- fulfillment ------------------------------------------------------------------------------

fulfillments = Table(
    "fulfillments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("order_number", String(32), nullable=False),
    Column("location_code", String(64), nullable=False),
    # ship_to_store: the store the transfer goes to (its associates see the fulfillment too)
    Column("destination_code", String(64)),
    Column("delivery_method", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("pickup_code", String(16)),
    # lines, packages, tracking, check-in, history: read and written whole with the row
    Column("document", JsonDocument, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Index("ix_fulfillments_order", "order_id"),
    Index("ix_fulfillments_location_status", "location_code", "status", "created_at"),
    Index("ix_fulfillments_destination_status", "destination_code", "status"),
)

# --- order sourcing ---

order_line_refusals = Table(
    "order_line_refusals",
    metadata,
    Column("refusal_id", BigId, primary_key=True, autoincrement=True),
    Column("order_id", String(64), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("location_code", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("reason", String(500), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("refused_at", UtcDateTime, nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
    Index("ix_order_line_refusals_order_id", "order_id", "line_no"),
)
"""Locations that refused (rejected, short-picked) units of an order line: never chosen again."""

__all__ = [
    "BigId",
    "ForeignKey",
    "Text",
    "UniqueConstraint",
    "api_keys",
    "appeasements",
    "care_notes",
    "channel_buffers",
    "contact_preferences",
    "event_deliveries",
    "feed_messages",
    "fulfillments",
    "idempotency_records",
    "inventory_movements",
    "inventory_positions",
    "invoices",
    "items",
    "location_capacity_usage",
    "locations",
    "metadata",
    "notification_cursors",
    "notification_deliveries",
    "order_cancel_requests",
    "order_holds",
    "order_line_quantities",
    "order_line_refusals",
    "order_lines",
    "order_timeline",
    "orders",
    "outbox_events",
    "payment_gateway_calls",
    "payment_orders",
    "payment_tenders",
    "payment_transactions",
    "process_definitions",
    "process_history",
    "process_instances",
    "process_messages",
    "process_tasks",
    "process_timers",
    "reservation_lines",
    "reservations",
    "returns",
    "safety_stock_defaults",
    "sandbox_gateway_payments",
    "sandbox_gateway_requests",
    "sourcing_decisions",
    "sourcing_profiles",
    "sourcing_rule_sets",
    "supply_lines",
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_subscriptions",
]

# --- care: returns, appeasements, notes ---

returns = Table(
    "returns",
    metadata,
    Column("return_id", String(64), primary_key=True),
    Column("rma_number", String(32), nullable=False, unique=True),
    Column("order_id", String(64), nullable=False),
    Column("order_number", String(32), nullable=False),
    Column("customer_email", String(320)),
    Column("method", String(16), nullable=False),
    Column("location_code", String(64)),
    Column("status", String(16), nullable=False),
    Column("resolution", String(16), nullable=False),
    Column("allow_ship_before_return", Boolean, nullable=False),
    Column("exchange_order_id", String(64)),
    Column("currency", String(3), nullable=False),
    Column("refunded_amount", Money, nullable=False),
    Column("lines", JsonDocument, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Index("ix_returns_order", "order_id"),
    Index("ix_returns_customer_email", "customer_email"),
)

appeasements = Table(
    "appeasements",
    metadata,
    Column("appeasement_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("order_number", String(32), nullable=False),
    Column("customer_email", String(320)),
    Column("kind", String(16), nullable=False),
    Column("reason_code", String(32), nullable=False),
    Column("note", Text),
    Column("currency", String(3), nullable=False),
    Column("amount", Money, nullable=False),
    Column("basis", JsonDocument, nullable=False),
    Column("status", String(24), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("requested_role", String(32), nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("decided_by", String(200)),
    Column("decided_at", UtcDateTime),
    Column("decision_reason", Text),
    Column("version", Integer, nullable=False),
    Index("ix_appeasements_order", "order_id"),
    Index("ix_appeasements_status", "status"),
)

care_notes = Table(
    "care_notes",
    metadata,
    Column("note_id", String(64), primary_key=True),
    Column("order_id", String(64)),
    Column("customer_key", String(320)),
    Column("text", Text, nullable=False),
    Column("author", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_care_notes_order", "order_id"),
    Index("ix_care_notes_customer", "customer_key"),
)
