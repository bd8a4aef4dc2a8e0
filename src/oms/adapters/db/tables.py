"""The schema of record (SQLAlchemy Core). Alembic migrations are generated from it.

Each area keeps its tables together under a heading; names are plain retail terms.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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

__all__ = [
    "BigId",
    "ForeignKey",
    "Text",
    "UniqueConstraint",
    "api_keys",
    "idempotency_records",
    "metadata",
    "outbox_events",
    "sourcing_decisions",
    "sourcing_profiles",
    "sourcing_rule_sets",
]
