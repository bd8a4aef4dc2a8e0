"""The safe expression language of process conditions, parameters and timers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms.processes.expressions import ExpressionError, compile_expression, evaluate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("decimal(order_total) > 500", True),
        ("order['lines'][0]['quantity'] * 2", 6),
        ("channel in ['web', 'app'] and not vip", True),
        ("'express' if decimal(order_total) >= decimal('900.00') else 'standard'", "express"),
        ("get(order, 'missing', 'none')", "none"),
        ("len(order['lines']) == 1 and true", True),
        ("{'order_id': order_id}", {"order_id": "ORD-1"}),
        ("1 < 2 < 3", True),
    ],
)
def test_expressions_read_process_variables(text: str, expected: object) -> None:
    variables = {
        "order_total": "900.00",
        "order": {"lines": [{"quantity": 3}]},
        "channel": "web",
        "vip": False,
        "order_id": "ORD-1",
    }
    assert evaluate(text, variables) == expected


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "order.__class__",
        "open('/etc/passwd')",
        "[x for x in range(3)]",
        "lambda: 1",
        "_secret",
        "(yield)",
        "order_total >",
    ],
)
def test_anything_beyond_the_small_language_is_refused_before_it_runs(text: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(text)


def test_a_missing_variable_is_named() -> None:
    with pytest.raises(ExpressionError, match="no variable 'order_total'"):
        evaluate("order_total > 1", {})


@given(st.integers(-10_000, 10_000), st.integers(-10_000, 10_000))
def test_arithmetic_and_comparisons_agree_with_python(a: int, b: int) -> None:
    variables = {"a": a, "b": b}
    assert evaluate("a + b * 2 - a", variables) == a + b * 2 - a
    assert evaluate("a < b", variables) == (a < b)
    assert evaluate("decimal(a) / 4", variables) == Decimal(a) / 4


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=2, min_value=-(10**6), max_value=10**6
    )
)
def test_money_compares_exactly(amount: Decimal) -> None:
    assert evaluate("decimal(total) > decimal('500.00')", {"total": str(amount)}) == (
        amount > Decimal("500.00")
    )
