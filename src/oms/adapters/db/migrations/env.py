"""Alembic environment: runs on the connection that :mod:`oms.adapters.db.migrate` hands in."""

from __future__ import annotations

from alembic import context

from oms.adapters.db.tables import in_schema_of, metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through oms.adapters.db.migrate
    raise RuntimeError("run migrations with 'oms db upgrade', which provides the connection")
dialect_name: str = connection.dialect.name

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=lambda _object, name, type_, _reflected, _compare_to: in_schema_of(
        dialect_name, name, type_
    ),
)
with context.begin_transaction():
    context.run_migrations()
