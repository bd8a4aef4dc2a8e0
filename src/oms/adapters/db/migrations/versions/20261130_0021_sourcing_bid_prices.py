"""sourcing: bid-price tables (the opportunity cost of scarce stock)

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30 05:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import oms.adapters.db.types

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sourcing_bid_prices",
        sa.Column(
            "table_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("computed_at", oms.adapters.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "document",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("table_id", name=op.f("pk_sourcing_bid_prices")),
    )


def downgrade() -> None:
    op.drop_table("sourcing_bid_prices")
