"""inventory: the movement journal without foreign keys, indexed location first

Revision ID: 0017
Revises: 0018
Create Date: 2026-11-30 02:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEYS = {
    "fk_inventory_movements_item_id_items": ("item_id", "items"),
    "fk_inventory_movements_location_id_locations": ("location_id", "locations"),
}

POSITION_FIRST_BY_ITEM = ["item_id", "location_id", "occurred_at"]
POSITION_FIRST_BY_LOCATION = ["location_id", "item_id", "occurred_at"]


def upgrade() -> None:
    # The journal is written only by the inventory repository, for positions it has just
    # written; on PostgreSQL the per-row checks (each locking its parent row) were half the
    # cost of a snapshot's journal insert.
    with op.batch_alter_table("inventory_movements", schema=None) as batch_op:
        for name in FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")
        # Location first: a count arrives location by location, and its journal rows then go
        # to a few neighbouring index pages instead of one page per item.
        batch_op.drop_index("ix_inventory_movements_position")
        batch_op.create_index("ix_inventory_movements_position", POSITION_FIRST_BY_LOCATION)


def downgrade() -> None:
    with op.batch_alter_table("inventory_movements", schema=None) as batch_op:
        batch_op.drop_index("ix_inventory_movements_position")
        batch_op.create_index("ix_inventory_movements_position", POSITION_FIRST_BY_ITEM)
        for name, (column, table) in FOREIGN_KEYS.items():
            batch_op.create_foreign_key(name, table, [column], ["id"])
