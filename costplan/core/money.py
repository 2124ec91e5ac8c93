"""Exact money: parsing, checking and formatting ``Decimal`` amounts.

Floats never touch money. The YAML loader hands numbers over as ``Decimal``
(built from the scalar's own text), and everything written into PromQL or
YAML goes through ``format_decimal`` so ``0.1 + 0.2`` is written ``0.3``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

MAX_DECIMAL_PLACES = 10
MAX_MAGNITUDE = Decimal("1e15")
"""Every number in a plan is below this in magnitude: Prometheus computes in
float64, exact for integers only up to 2**53 (about 9.007e15), and no real
price, budget, limit or factor comes near a quadrillion."""
MAX_SIGNIFICANT_DIGITS = 28
"""The precision of Python's default decimal context: a number with more
significant digits would be rounded, silently, by the first arithmetic."""


def to_decimal(value: Any) -> Decimal:
    """Turn a plan value (``Decimal``, ``int`` or decimal string) into ``Decimal``.

    Floats are refused: a float here means a code path lost exactness.
    """
    if isinstance(value, bool):
        raise TypeError("a boolean is not an amount")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation as exc:
            raise ValueError(f"{value!r} is not a decimal number") from exc
        if not result.is_finite():
            raise ValueError(f"{value!r} is not a finite number")
        return result
    raise TypeError(f"{type(value).__name__} is not an exact amount")


def decimal_places(value: Decimal) -> int:
    """Number of digits after the decimal point (``1.50`` has 2, ``1E+3`` has 0)."""
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def format_decimal(value: Decimal | int) -> str:
    """Exact plain notation without exponent or trailing zeros: ``1.006``, ``0.000002``, ``15``."""
    value = Decimal(value)
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def per_unit(price_per_million: Decimal) -> Decimal:
    """A price per one million units as an exact price per unit."""
    return price_per_million / Decimal(1_000_000)


def format_money(value: Decimal, currency: str) -> str:
    """Human money for messages and alert text: ``1,500.00 USD``."""
    quantized = value.quantize(Decimal("0.01")) if decimal_places(value) <= 2 else value
    return f"{quantized:,f} {currency}"
