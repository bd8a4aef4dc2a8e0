"""inventory: the movement journal without foreign keys; positions pages with room for HOT updates

Revision ID: 0017
Revises: 0012
Create Date: 2026-11-30 02:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEYS = {
    "fk_inventory_movements_item_id_items": ("item_id", "items"),
    "fk_inventory_movements_location_id_locations": ("location_id", "locations"),
}


def upgrade() -> None:
    # The journal is written only by the inventory repository, for positions it has just
    # written; on PostgreSQL the per-row checks (each locking its parent row) were half the
    # cost of a snapshot's journal insert.
    with op.batch_alter_table("inventory_movements", schema=None) as batch_op:
        for name in FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")
    if op.get_bind().dialect.name == "postgresql":
        # New pages keep 40% free for the next version of their rows (HOT updates); existing
        # pages get it when the table is rewritten (VACUUM FULL), or as rows move.
        op.execute("ALTER TABLE inventory_positions SET (fillfactor = 60)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE inventory_positions RESET (fillfactor)")
    with op.batch_alter_table("inventory_movements", schema=None) as batch_op:
        for name, (column, table) in FOREIGN_KEYS.items():
            batch_op.create_foreign_key(name, table, [column], ["id"])
