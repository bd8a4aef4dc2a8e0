"""Many rows at once go by COPY on PostgreSQL and must land exactly as an INSERT writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    cast,
    event,
    insert,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from oms.adapters.db import bulk
from oms.adapters.db.bulk import COPY_FROM_ROWS, insert_rows, insert_rows_returning_ids
from oms.adapters.db.tables import BigId, outbox_events
from oms.adapters.db.types import JsonDocument, Money, UtcDateTime

START = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


SAMPLE = Table(
    "test_bulk_sample",
    MetaData(),
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(10), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("amount", Money),
    Column("note", Text),
    Column("count", Integer),
    Column("document", JsonDocument),
)
"""Every column type the schema uses, nullable ones included."""


def _rows(kind: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "kind": kind,
            "at": START + timedelta(seconds=i),
            "amount": None if i % 5 == 0 else Decimal("1.10") * i,
            "note": None if i % 2 else f"note {i} 'quoted', tab\there, back\\slash\nnew line",
            "count": i % 3 or None,
            "document": None if i % 4 == 0 else {"nested": {"list": [i, None, "ü"]}, "ok": True},
        }
        for i in range(n)
    ]


def _read_back(
    connection: Connection, kinds: tuple[str, ...], document: Any
) -> dict[str, list[tuple[Any, ...]]]:
    """The SAMPLE rows of each kind as written, in id order (``document``: the JSON column as
    read, as it is or as its text)."""
    c = SAMPLE.c
    return {
        kind: [
            tuple(row)
            for row in connection.execute(
                select(c.at, c.amount, c.note, c.count, document)
                .where(c.kind == kind)
                .order_by(c.id)
            )
        ]
        for kind in kinds
    }


def test_copied_rows_equal_inserted_rows(postgres_engine: Engine) -> None:
    with postgres_engine.begin() as connection:
        SAMPLE.drop(connection, checkfirst=True)
        SAMPLE.create(connection)
    try:
        n = COPY_FROM_ROWS + 20
        with postgres_engine.begin() as connection:
            insert_rows(connection, SAMPLE, _rows("copy", n))
            connection.execute(insert(SAMPLE), _rows("insert", n))
        with postgres_engine.connect() as connection:
            read = _read_back(connection, ("copy", "insert"), SAMPLE.c.document)
        assert len(read["copy"]) == n
        assert read["copy"] == read["insert"]
    finally:
        with postgres_engine.begin() as connection:
            SAMPLE.drop(connection)


def test_copy_takes_part_in_the_transaction(postgres_engine: Engine) -> None:
    events = [
        {
            "event_id": f"e-{i}",
            "type": "test.bulk",
            "source": "/test",
            "subject": "bulk",
            "time": START,
            "data": {"i": i},
        }
        for i in range(COPY_FROM_ROWS)
    ]
    with postgres_engine.connect() as connection:
        transaction = connection.begin()
        insert_rows(connection, outbox_events, events)
        transaction.rollback()
    with postgres_engine.connect() as connection:
        assert connection.execute(select(outbox_events.c.position)).all() == []
    with postgres_engine.begin() as connection:
        insert_rows(connection, outbox_events, events)
    with postgres_engine.connect() as connection:
        positions = list(
            connection.execute(
                select(outbox_events.c.position).order_by(outbox_events.c.position)
            ).scalars()
        )
    # taken from the sequence (the column's server default), one after another
    assert positions == list(range(positions[0], positions[0] + COPY_FROM_ROWS))


def test_a_column_with_a_python_default_left_out_goes_by_insert() -> None:
    table = Table(
        "with_default",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String(10), default="unnamed"),
    )
    assert bulk._copyable(table, ["id", "name"])
    assert not bulk._copyable(table, ["id"])
    assert not bulk._copyable(table, ["id", "not_a_column"])


def test_many_rows_get_their_ids_in_order_on_both_paths(postgres_engine: Engine) -> None:
    with postgres_engine.begin() as connection:
        SAMPLE.drop(connection, checkfirst=True)
        SAMPLE.create(connection)
    try:
        few, many = _rows("few", 3), _rows("many", COPY_FROM_ROWS + 5)
        with postgres_engine.begin() as connection:
            few_ids = insert_rows_returning_ids(connection, SAMPLE, few, id_column="id")
            many_ids = insert_rows_returning_ids(connection, SAMPLE, many, id_column="id")
        c = SAMPLE.c
        with postgres_engine.connect() as connection:
            stored = {row.id: row for row in connection.execute(select(c.id, c.kind, c.at))}
        assert len(few_ids) == 3 and len(many_ids) == len(many)
        assert len(set(few_ids + many_ids)) == len(few_ids) + len(many_ids)
        for ids, rows in ((few_ids, few), (many_ids, many)):
            assert [(stored[i].kind, stored[i].at) for i in ids] == [
                (row["kind"], row["at"]) for row in rows
            ]
        with postgres_engine.begin() as connection:  # the sequence moved past the copied ids
            (after,) = insert_rows_returning_ids(connection, SAMPLE, _rows("x", 1), id_column="id")
        assert after > max(many_ids)
    finally:
        with postgres_engine.begin() as connection:
            SAMPLE.drop(connection)


SAMPLE_CHILD = Table(
    "test_bulk_sample_child",
    SAMPLE.metadata,
    Column("parent_id", BigId, ForeignKey("test_bulk_sample.id"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("code", String(5), nullable=False),
)


def test_rows_of_several_tables_in_one_statement_equal_inserted_rows(
    postgres_engine: Engine,
) -> None:
    """insert_tables: one statement on PostgreSQL (a child's foreign key to a parent row of the
    same statement holds), and every value, JSON null and SQL NULL alike, lands as an INSERT
    of its own writes it."""
    with postgres_engine.begin() as connection:
        SAMPLE.metadata.drop_all(connection, checkfirst=True)
        SAMPLE.metadata.create_all(connection)
    try:
        n = 12
        parents = [{"id": 1000 + i, **row} for i, row in enumerate(_rows("tables", n))]
        inserted = [{"id": 2000 + i, **row} for i, row in enumerate(_rows("insert", n))]
        children = [
            {"parent_id": 1000 + i, "line_no": line, "code": f"c{line}"}
            for i in range(n)
            for line in (1, 2)
        ]
        statements: list[str] = []
        with postgres_engine.begin() as connection:
            listen = event.listens_for(connection, "before_cursor_execute")
            listen(lambda *args: statements.append(args[2]))
            bulk.insert_tables(connection, [(SAMPLE, parents), (SAMPLE_CHILD, children)])
            connection.execute(insert(SAMPLE), inserted)
        assert len(statements) == 2  # the two tables' rows in one, the plain INSERT
        with postgres_engine.connect() as connection:
            read = _read_back(connection, ("tables", "insert"), cast(SAMPLE.c.document, Text))
            kids = connection.execute(
                select(
                    SAMPLE_CHILD.c.parent_id, SAMPLE_CHILD.c.line_no, SAMPLE_CHILD.c.code
                ).order_by(SAMPLE_CHILD.c.parent_id, SAMPLE_CHILD.c.line_no)
            ).all()
        assert len(read["tables"]) == n
        assert read["tables"] == read["insert"]
        assert ("null" in {row[4] for row in read["insert"]}) is True  # None is JSON null
        assert [tuple(row) for row in kids] == [
            (row["parent_id"], row["line_no"], row["code"]) for row in children
        ]
    finally:
        with postgres_engine.begin() as connection:
            SAMPLE.metadata.drop_all(connection)


def test_rows_of_several_tables_refuse_what_an_insert_refuses(postgres_engine: Engine) -> None:
    """A text longer than its column is refused (not cut short), a child without its parent
    breaks the foreign key, and nothing of the statement is left."""
    with postgres_engine.begin() as connection:
        SAMPLE.metadata.drop_all(connection, checkfirst=True)
        SAMPLE.metadata.create_all(connection)
    try:
        parent = [{"id": 1, **_rows("x", 1)[0]}]
        with pytest.raises(DBAPIError, match="too long"), postgres_engine.begin() as connection:
            bulk.insert_tables(
                connection,
                [
                    (SAMPLE, parent),
                    (SAMPLE_CHILD, [{"parent_id": 1, "line_no": 1, "code": "toolong"}]),
                ],
            )
        with (
            pytest.raises(IntegrityError, match="test_bulk_sample"),
            postgres_engine.begin() as connection,
        ):
            bulk.insert_tables(
                connection,
                [
                    (SAMPLE, parent),
                    (SAMPLE_CHILD, [{"parent_id": 2, "line_no": 1, "code": "a"}]),
                ],
            )
        with postgres_engine.connect() as connection:
            assert connection.execute(select(SAMPLE.c.id)).all() == []
    finally:
        with postgres_engine.begin() as connection:
            SAMPLE.metadata.drop_all(connection)
