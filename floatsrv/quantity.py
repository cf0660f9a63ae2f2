"""Exact quantities: decimals with at most three places, held as integer thousandths ("milli").

Input may be a JSON number (decoded as Decimal, never float) or a decimal string. `1.0000` is fine (it is
exactly 1.000); `0.0005` is not (it needs a fourth place). Output is the shortest exact decimal string.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

MILLI = 1000
# Far beyond any real usage report; keeps arithmetic and storage comfortably inside 64 bits.
MAX_UNITS = 10**12

_DECIMAL_TEXT = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*$")


class QuantityError(ValueError):
    """Why a value is not an acceptable quantity (the message is shown to the client)."""


def to_milli(value: object) -> int:
    """Parse an exact quantity into thousandths. Raises QuantityError."""
    if isinstance(value, bool) or value is None:
        raise QuantityError("must be a number or a decimal string")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        if not _DECIMAL_TEXT.match(value):
            raise QuantityError("must be a decimal number such as 12 or 0.125")
        number = Decimal(value.strip())
    elif isinstance(value, float):
        # Only reachable from callers that decoded JSON with floats; refuse rather than round.
        raise QuantityError("must be sent exactly (a JSON number or a decimal string), not a binary float")
    else:
        raise QuantityError("must be a number or a decimal string")
    if not number.is_finite():
        raise QuantityError("must be a finite number")
    # Judged by the exponent first: arithmetic on 1e999999999 would overflow the decimal context itself.
    if not number.is_zero() and number.adjusted() > 12:
        raise QuantityError(f"must be at most {MAX_UNITS}")
    if not number.is_zero() and number.adjusted() < -3:
        raise QuantityError("has more than 3 decimal places (the smallest unit is 0.001)")
    if abs(number) > MAX_UNITS:
        raise QuantityError(f"must be at most {MAX_UNITS}")
    try:
        scaled = (number * MILLI).to_integral_exact()
    except InvalidOperation:
        raise QuantityError("must be a number") from None
    if scaled != number * MILLI:
        raise QuantityError("has more than 3 decimal places (the smallest unit is 0.001)")
    return int(scaled)


def milli_to_str(milli: int) -> str:
    """Thousandths -> shortest exact decimal string: 12000 -> "12", 1500 -> "1.5", -5 -> "-0.005"."""
    sign = "-" if milli < 0 else ""
    whole, frac = divmod(abs(milli), MILLI)
    return f"{sign}{whole}" if frac == 0 else f"{sign}{whole}.{frac:03d}".rstrip("0")


def to_decimal(milli: int) -> Decimal:
    return Decimal(milli) / MILLI


def decimal_str(value: Decimal) -> str:
    """A Decimal without exponent or needless trailing zeros (money and prices)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text
