"""inventory: covering index of stock per item on SQLite (availability reads)

Revision ID: 0012
Revises: 0015
Create Date: 2026-11-30 00:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["item_id", "location_id", "on_hand", "allocated", "reserved", "blocked", "safety_stock"]


def upgrade() -> None:
    # SQLite only (see tables.py): on PostgreSQL an index on the stock columns would turn every
    # stock update into a non-HOT update.
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_inventory_positions_stock", "inventory_positions", COLUMNS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_inventory_positions_stock", table_name="inventory_positions")
