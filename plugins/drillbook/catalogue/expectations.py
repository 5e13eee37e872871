"""Parse and apply the small comparison language of SQL checks: ``"> 0"``, ``"== 1"``, ``"between 1 and 5"``."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_CMP_RE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\S.*?)\s*$")
_BETWEEN_RE = re.compile(r"^\s*between\s+(\S+)\s+and\s+(\S+)\s*$", re.IGNORECASE)


def _number(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"expected a number in the expectation, got {text!r}") from None


def parse_expectation(text: str) -> Callable[[object], bool]:
    """Return a predicate for ``text``; raise ValueError naming the accepted forms."""
    if not isinstance(text, str):
        raise ValueError(f"expected an expectation string like '> 0', got {text!r}")
    m = _BETWEEN_RE.match(text)
    if m:
        lo, hi = _number(m.group(1)), _number(m.group(2))
        return lambda v: v is not None and lo <= _number(str(v)) <= hi
    m = _CMP_RE.match(text)
    if not m:
        raise ValueError(
            f"expected an expectation like '> 0', '== 1', '>= 100', '!= 0' or 'between 1 and 5', got {text!r}"
        )
    op, rhs = _OPS[m.group(1)], m.group(2)
    try:
        target: object = _number(rhs)
    except ValueError:
        target = rhs.strip("'\"")  # compare as text

    def check(value: object) -> bool:
        if value is None:
            return False
        if isinstance(target, Decimal):
            try:
                return bool(op(_number(str(value)), target))
            except ValueError:
                return False
        return bool(op(str(value), target))

    return check
