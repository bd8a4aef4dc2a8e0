"""The schema of record (SQLAlchemy Core). Alembic migrations are generated from it.

Each area keeps its tables together under a heading; names are plain retail terms.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
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

from oms.adapters.db.types import JsonDocument, UtcDateTime

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

__all__ = [
    "BigId",
    "ForeignKey",
    "Text",
    "UniqueConstraint",
    "api_keys",
    "event_deliveries",
    "idempotency_records",
    "metadata",
    "outbox_events",
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_subscriptions",
]
