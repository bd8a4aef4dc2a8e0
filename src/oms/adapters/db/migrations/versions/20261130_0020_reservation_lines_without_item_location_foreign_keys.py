"""inventory: hold lines without foreign keys to items and locations

Revision ID: 0020
Revises: 0017
Create Date: 2026-11-30 05:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEYS = {
    "fk_reservation_lines_item_id_items": ("item_id", "items"),
    "fk_reservation_lines_location_id_locations": ("location_id", "locations"),
}


def upgrade() -> None:
    # A hold line is written only by the inventory repository, for a position whose row it
    # updates in the same transaction (the position references its item and location; items,
    # locations and positions are never deleted). On PostgreSQL each check locks its parent
    # row at the end of the hold's statement, while the hot position's row lock is held: the
    # two were a third of a one-line hold's time in the database before its commit.
    with op.batch_alter_table("reservation_lines", schema=None) as batch_op:
        for name in FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("reservation_lines", schema=None) as batch_op:
        for name, (column, table) in FOREIGN_KEYS.items():
            batch_op.create_foreign_key(name, table, [column], ["id"])
