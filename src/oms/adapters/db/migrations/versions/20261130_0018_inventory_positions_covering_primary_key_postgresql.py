"""inventory: the primary key of positions covers the stock columns on PostgreSQL

Availability of a basket then reads each item's positions from the key's index alone (an
index-only scan: a few pages per item) instead of one table page per location.

Revision ID: 0018
Revises: 0012
Create Date: 2026-11-30 03:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STOCK = "on_hand, allocated, reserved, blocked, safety_stock"


def _primary_key(include: str) -> None:
    op.execute(
        "ALTER TABLE inventory_positions DROP CONSTRAINT pk_inventory_positions,"
        " ADD CONSTRAINT pk_inventory_positions PRIMARY KEY (item_id, location_id)" + include
    )


def upgrade() -> None:
    # SQLite keeps its separate covering index (0012): it has no INCLUDE.
    if op.get_bind().dialect.name == "postgresql":
        _primary_key(f" INCLUDE ({STOCK})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _primary_key("")
