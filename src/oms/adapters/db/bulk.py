"""Inserting many rows at once: COPY on PostgreSQL, the usual INSERT everywhere else.

SQLAlchemy sends a multi-row INSERT on PostgreSQL as "insertmanyvalues" pages of up to 1,000
rows. Each page is one long statement with thousands of placeholders, which psycopg parses
again at every execution (its statement cache only keeps short ones): a bulk re-plan of 10,000
orders spent about a third of its time there. ``COPY ... FROM STDIN`` streams the same rows with
no statement to parse. Values go through each column type's own bind processing first (UTC
datetimes, exact decimals, JSON), so a row copied is the row an INSERT would have written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Connection,
    Insert,
    String,
    Table,
    any_,
    bindparam,
    func,
    insert,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeEngine

COPY_FROM_ROWS = 100
"""Fewer rows than this go through the INSERT: COPY costs a round trip more to set up."""


def insert_rows(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    statement: Insert | None = None,
) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table``; ``statement`` is the prebuilt
    INSERT to use when the rows do not go by COPY."""
    if not rows:
        return
    if connection.dialect.name == "postgresql" and len(rows) >= COPY_FROM_ROWS:
        names = list(rows[0])
        if _copyable(table, names):
            _copy(connection, table, names, rows)
            return
    connection.execute(statement if statement is not None else insert(table), list(rows))


def insert_rows_returning_ids(
    connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]], *, id_column: str
) -> list[int]:
    """Insert ``rows`` and return the ids the database gave them, in the order of ``rows``. On
    PostgreSQL, many rows take their ids from the column's sequence in one statement, then go
    by COPY with them."""
    if not rows:
        return []
    if connection.dialect.name == "postgresql" and len(rows) >= COPY_FROM_ROWS:
        names = [id_column, *rows[0]]
        if _copyable(table, names):
            ids = [
                int(value)
                for (value,) in connection.execute(
                    text(
                        "SELECT nextval(pg_get_serial_sequence(:table, :column)) "
                        "FROM generate_series(1, :n)"
                    ),
                    {"table": table.name, "column": table.c[id_column].name, "n": len(rows)},
                )
            ]
            _copy(
                connection,
                table,
                names,
                [{id_column: id_, **row} for id_, row in zip(ids, rows, strict=True)],
            )
            return ids
    statement = insert(table).returning(table.c[id_column], sort_by_parameter_order=True)
    return [int(value) for (value,) in connection.execute(statement, list(rows))]


def _copyable(table: Table, names: Sequence[str]) -> bool:
    """COPY fills a missing column from its server default only: a column left out that has a
    Python-side default (which the INSERT would have computed) must go by the INSERT."""
    given = set(names)
    if not given <= set(table.c.keys()):
        return False
    return all(column.default is None for column in table.c if column.key not in given)


def _copy_processor(column_type: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """The column's bind processing; JSON straight to its text with the dialect's serializer
    (the bind processor wraps each value in a driver adapter that then calls the same
    serializer: a tenth of the CPU of a bulk re-plan's COPYs)."""
    if isinstance(column_type.dialect_impl(dialect), JSON):
        serializer: Callable[[Any], str] = getattr(dialect, "_json_serializer", None) or json.dumps
        return serializer
    return column_type._cached_bind_processor(dialect)


def _copy(
    connection: Connection, table: Table, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    dialect = connection.dialect
    processors = [_copy_processor(table.c[name].type, dialect) for name in names]
    columns = ", ".join(dialect.identifier_preparer.quote(table.c[name].name) for name in names)
    target = dialect.identifier_preparer.format_table(table)
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    pairs = list(zip(names, processors, strict=True))
    copy_in = f"COPY {target} ({columns}) FROM STDIN"
    with dbapi.cursor() as cursor, cursor.copy(copy_in) as copy:  # type: ignore[attr-defined]
        for row in rows:
            copy.write_row(
                [row[name] if process is None else process(row[name]) for name, process in pairs]
            )


# -- many keys in one condition ---------------------------------------------------------------

IN_LIST = 500
"""Keys per IN list on SQLite (PostgreSQL takes any number as one array parameter)."""
_KEY_ARRAY = postgresql.ARRAY(String)


def key_chunks(connection: Connection, keys: Sequence[str]) -> list[Sequence[str]]:
    """``keys`` cut into the pieces one statement of :func:`among` takes."""
    if connection.dialect.name == "postgresql":
        return [keys] if keys else []
    return [keys[i : i + IN_LIST] for i in range(0, len(keys), IN_LIST)]


def among(connection: Connection, column: Column[str], keys: Sequence[str]) -> ColumnElement[bool]:
    """``column IN keys``; on PostgreSQL ``column = ANY(array)``: one parameter instead of
    hundreds of placeholders, which psycopg parses at every execution (like a long INSERT)."""
    if connection.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(keys), type_=_KEY_ARRAY))
    return column.in_(keys)


def array_rows(alias: str, **columns: type[TypeEngine[Any]]) -> TableValuedAlias:
    """Rows passed to PostgreSQL as one array parameter per column (bound as ``{alias}_{column}``)
    and unnested into the derived table ``alias`` to join: any number of keys in one statement,
    where a row-value IN list of a thousand pairs is an OR the server tests against every row."""
    return (
        func.unnest(
            *(
                bindparam(f"{alias}_{name}", type_=postgresql.ARRAY(column_type))
                for name, column_type in columns.items()
            )
        )
        .table_valued(*columns)
        .render_derived(name=alias)
    )
