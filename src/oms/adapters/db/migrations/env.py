"""Alembic environment: runs on the connection that :mod:`oms.adapters.db.migrate` hands in."""

from __future__ import annotations

from alembic import context

from oms.adapters.db.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through oms.adapters.db.migrate
    raise RuntimeError("run migrations with 'oms db upgrade', which provides the connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
