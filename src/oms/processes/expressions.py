"""Safe expressions for gateway conditions, activity parameters and timer durations.

BPMN files are uploaded by operators, so their expressions are never handed to ``eval``: they
are parsed with :mod:`ast` and walked here, allowing only literals, process variables,
comparisons, boolean and arithmetic operators, indexing (``order['total']``) and a few pure
functions (``decimal``, ``int``, ``str``, ``len``, ``min``, ``max``, ``abs``, ``round``,
``bool``, ``get``).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any


class ExpressionError(Exception):
    """An expression that may not be used, or that failed on the process data."""


def _decimal(value: Any) -> Decimal:
    if isinstance(value, float):
        value = repr(value)
    try:
        return Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ExpressionError(f"decimal({value!r}) is not a number") from None


def _get(mapping: Any, key: Any, default: Any = None) -> Any:
    if not isinstance(mapping, Mapping):
        raise ExpressionError("get() needs a mapping as first argument")
    return mapping.get(key, default)


FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "decimal": _decimal,
    "int": int,
    "str": str,
    "len": len,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "bool": bool,
    "get": _get,
}

_BINARY: Mapping[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: Mapping[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.Not: operator.not_,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_COMPARE: Mapping[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_CONSTANTS = {"True": True, "False": False, "None": None, "true": True, "false": False}


@lru_cache(maxsize=4096)
def compile_expression(text: str) -> ast.Expression:
    """Parse and check an expression; raises :class:`ExpressionError` naming what is refused."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"'{text}' is not a valid expression: {error.msg}") from None
    for node in ast.walk(tree):
        _check(node, text)
    return tree


def _check(node: ast.AST, text: str) -> None:
    allowed = (
        ast.Expression,
        ast.BoolOp,
        ast.And,
        ast.Or,
        ast.BinOp,
        ast.UnaryOp,
        ast.Compare,
        ast.IfExp,
        ast.Constant,
        ast.Name,
        ast.Load,
        ast.List,
        ast.Tuple,
        ast.Set,
        ast.Dict,
        ast.Subscript,
        ast.Call,
        ast.keyword,
        *_BINARY,
        *_UNARY,
        *_COMPARE,
    )
    if not isinstance(node, allowed):
        raise ExpressionError(f"'{text}' uses {type(node).__name__}, which is not allowed")
    if isinstance(node, ast.Name) and node.id.startswith("_"):
        raise ExpressionError(f"'{text}' refers to '{node.id}': names may not start with '_'")
    if isinstance(node, ast.Call) and not (
        isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
    ):
        raise ExpressionError(f"'{text}' calls something other than {', '.join(sorted(FUNCTIONS))}")


def evaluate(text: str, data: Mapping[str, Any]) -> Any:
    """Evaluate ``text`` against the process variables ``data``."""
    tree = compile_expression(text)
    try:
        return _eval(tree.body, data, text)
    except ExpressionError:
        raise
    except Exception as error:
        raise ExpressionError(f"'{text}' failed: {type(error).__name__}: {error}") from None


def _eval(node: ast.AST, data: Mapping[str, Any], text: str) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name):
            if name in data:
                return data[name]
            if name in _CONSTANTS:
                return _CONSTANTS[name]
            raise ExpressionError(f"'{text}': the process has no variable '{name}'")
        case ast.BoolOp(op=ast.And(), values=values):
            result: Any = True
            for value_node in values:
                result = _eval(value_node, data, text)
                if not result:
                    return result
            return result
        case ast.BoolOp(op=ast.Or(), values=values):
            result = False
            for value_node in values:
                result = _eval(value_node, data, text)
                if result:
                    return result
            return result
        case ast.BinOp(left=left, op=op, right=right):
            return _BINARY[type(op)](_eval(left, data, text), _eval(right, data, text))
        case ast.UnaryOp(op=op, operand=operand):
            return _UNARY[type(op)](_eval(operand, data, text))
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            current = _eval(left, data, text)
            for comparison, comparator_node in zip(ops, comparators, strict=True):
                right_value = _eval(comparator_node, data, text)
                if not _COMPARE[type(comparison)](current, right_value):
                    return False
                current = right_value
            return True
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return _eval(body if _eval(test, data, text) else orelse, data, text)
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            return [_eval(e, data, text) for e in elts]
        case ast.Set(elts=elts):
            return {_eval(e, data, text) for e in elts}
        case ast.Dict(keys=keys, values=values):
            return {
                _eval(k, data, text) if k is not None else None: _eval(v, data, text)
                for k, v in zip(keys, values, strict=True)
            }
        case ast.Subscript(value=value, slice=index):
            return _eval(value, data, text)[_eval(index, data, text)]
        case ast.Call(func=ast.Name(id=name), args=args, keywords=keywords):
            return FUNCTIONS[name](
                *(_eval(a, data, text) for a in args),
                **{k.arg: _eval(k.value, data, text) for k in keywords if k.arg},
            )
    raise ExpressionError(f"'{text}' uses {type(node).__name__}, which is not allowed")
