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


def insert_tables(
    connection: Connection,
    batches: Sequence[tuple[Table, Sequence[Mapping[str, Any]]]],
) -> None:
    """Insert rows into several tables (each batch: dicts with the same keys) as one statement
    on PostgreSQL: one INSERT per table, each over its columns passed as one array parameter
    apiece and unnested, joined as data-modifying CTEs. The rows of a new order, its lines,
    their quantities and its timeline then cost one round trip instead of four, and foreign
    keys between them hold (PostgreSQL checks them at the end of the statement). Values go
    through each column type's bind processing (as for COPY), so a row is the row an INSERT of
    its own would have written. Elsewhere, and for batches large enough for COPY, one INSERT
    per table in the order given (parents first)."""
    batches = [(table, rows) for table, rows in batches if rows]
    if not batches:
        return
    dialect = connection.dialect
    if dialect.name != "postgresql" or any(len(rows) >= COPY_FROM_ROWS for _, rows in batches):
        for table, rows in batches:
            insert_rows(connection, table, rows)
        return
    shape = tuple((table, tuple(rows[0])) for table, rows in batches)
    sql, processors = _statement_over_arrays(shape, dialect)
    parameters: dict[str, list[Any]] = {}
    for index, ((table, rows), (_, names)) in enumerate(zip(batches, shape, strict=True)):
        for position, name in enumerate(names):
            process = processors[(table.name, name)]
            parameters[f"p{index}_{position}"] = [
                row[name] if process is None else process(row[name]) for row in rows
            ]
    connection.exec_driver_sql(sql, parameters)


_OVER_ARRAYS: dict[
    tuple[tuple[str, tuple[str, ...]], ...],
    tuple[str, dict[tuple[str, str], Callable[[Any], Any] | None]],
] = {}
"""The statement of :func:`insert_tables` and its value processing, per set of tables and
columns (built once)."""


def _statement_over_arrays(
    shape: tuple[tuple[Table, tuple[str, ...]], ...], dialect: Dialect
) -> tuple[str, dict[tuple[str, str], Callable[[Any], Any] | None]]:
    key = tuple((table.name, names) for table, names in shape)
    found = _OVER_ARRAYS.get(key)
    if found is not None:
        return found
    quote = dialect.identifier_preparer.quote
    processors: dict[tuple[str, str], Callable[[Any], Any] | None] = {}
    inserts: list[str] = []
    for index, (table, names) in enumerate(shape):
        if not _copyable(table, names):
            raise ValueError(f"rows of {table.name} leave out a column with a Python default")
        arrays = []
        for position, name in enumerate(names):
            column_type = table.c[name].type
            processors[(table.name, name)] = _copy_processor(column_type, dialect)
            # The array of the type without its length or precision: the INSERT's assignment
            # then checks and rounds each value as a plain INSERT does (an explicit cast to
            # VARCHAR(n) would cut a longer text short instead of refusing it).
            base = column_type.compile(dialect=dialect).split("(")[0].strip()
            # %(...)b: the array goes in binary, not as text escaped element by element (the
            # text form cost psycopg twice the client CPU)
            arrays.append(f"CAST(%(p{index}_{position})b AS {base}[])")
        columns = ", ".join(quote(table.c[name].name) for name in names)
        target = dialect.identifier_preparer.format_table(table)
        unnested = ", ".join(arrays)
        # built from the schema's names; every value is a bound parameter
        inserts.append(f"INSERT INTO {target} ({columns}) SELECT * FROM unnest({unnested})")  # noqa: S608
    *first, last = inserts
    ctes = ", ".join(f"t{index} AS ({sql})" for index, sql in enumerate(first))
    statement = f"WITH {ctes} {last}" if ctes else last
    _OVER_ARRAYS[key] = (statement, processors)
    return statement, processors


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


def keys_in(column: Column[str], name: str, *, postgres: bool) -> ColumnElement[bool]:
    """:func:`among` for a statement built once, its keys bound later as ``name`` (a list): on
    PostgreSQL one array parameter, so the statement's text never changes with their number
    (neither rendered again at each execution nor parsed again by psycopg, and the server
    keeps it prepared); elsewhere an expanding IN list."""
    if postgres:
        return column == any_(bindparam(name, type_=_KEY_ARRAY))
    return column.in_(bindparam(name, expanding=True))


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
