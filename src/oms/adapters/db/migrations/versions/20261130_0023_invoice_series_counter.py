"""invoices: a counter row per number series

The next invoice number was the count of the year's invoices plus one, read under a global
advisory lock on PostgreSQL: a scan of every number issued that year on each shipment, growing
all year, while every other shipment waited on the lock. A counter row per series makes it one
upsert. Existing series start from the highest number issued.

Revision ID: 0023
Revises: 0021
Create Date: 2026-11-30 08:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "invoice_series",
        sa.Column("series", sa.String(length=16), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("series", name=op.f("pk_invoice_series")),
    )
    # Numbers are INV-YYYY-NNNNNN: the series is the first 8 characters, the number the rest.
    op.execute(
        "INSERT INTO invoice_series (series, last_number)"
        " SELECT substr(number, 1, 8), max(CAST(substr(number, 10) AS INTEGER))"
        " FROM invoices WHERE number LIKE 'INV-____-%'"
        " GROUP BY substr(number, 1, 8)"
    )


def downgrade() -> None:
    op.drop_table("invoice_series")
