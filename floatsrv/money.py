"""Money amounts: rounded to their currency's minor unit and written with exactly that many places.

The minor units are those of ISO 4217 (the list below names the currencies whose minor unit is not the
cent); rounding is half up, as invoices usually round. Prices themselves stay exact: only amounts a client
is told it owes are rounded.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 currencies with no minor unit or with a minor unit of 1/1000 (every other currency: 1/100).
_NO_MINOR_UNIT = frozenset(
    ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF",
     "XOF", "XPF"]
)  # fmt: skip
_THOUSANDTHS = frozenset(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"])


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of `currency` (an ISO 4217 code): Decimal("0.01") for most."""
    if currency in _NO_MINOR_UNIT:
        return Decimal(1)
    if currency in _THOUSANDTHS:
        return Decimal("0.001")
    return Decimal("0.01")


def round_money(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded half up to the currency's minor unit (e.g. 0.1 USD -> 0.10, 2.5 JPY -> 3)."""
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_UP)


def money_str(amount: Decimal, currency: str) -> str:
    """The amount as the wire shows money: rounded, with exactly the currency's places ("15.50", "300")."""
    return format(round_money(amount, currency), "f")
