"""Kubernetes resource quantities, read as the API server reads them (pure).

The text comes from a tenant's pod template, so it is matched against
Kubernetes' grammar before any arithmetic: a sign, digits with an optional
decimal point, then a binary suffix (Ki..Ei), a decimal one (n, u, m, k..E) or
a decimal exponent (e3, E-2). Anything else (NaN, Infinity, 0x10, full-width
digits) is refused. Like the API server, a magnitude above 2^63-1 is capped
there and a non-zero amount below 1n is rounded up to 1n; the cap is applied
before the value is built, so ``1e1000000`` costs no more than ``1``.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_UP, Context, Decimal

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

_QUANTITY = re.compile(
    r"(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<exp>[eE][+-]?[0-9]+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?))",
    re.ASCII,
)
#: The largest magnitude Kubernetes keeps (``math.MaxInt64``); larger is capped.
MAX_QUANTITY = Decimal(2**63 - 1)
_MAX_INT = 2**63 - 1
#: The smallest non-zero magnitude (1n); smaller is rounded up to it.
_NANO = Decimal("1e-9")
#: Digits of an exponent: the API server reads it as an int64.
_MAX_EXPONENT_DIGITS = 18
#: Enough digits for 2^63 with nine decimals, exactly.
_EXACT = Context(prec=40)
#: Shown of a refused value: the message names it without echoing megabytes.
_SHOWN = 40


def _invalid(quantity: object) -> ValueError:
    text = str(quantity).strip()
    shown = repr(text[:_SHOWN]) + ("..." if len(text) > _SHOWN else "")
    return ValueError(
        f"invalid quantity {shown}: expected a number with an optional suffix "
        "(Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E) or exponent (e3), "
        'such as "500m", "2Gi" or "1e3"'
    )


def _exponent(exp: str | None, suffix: str) -> int:
    """The power of ten the suffix stands for (0 for a binary suffix)."""
    if exp is None:
        return _DECIMAL.get(suffix, 0)
    digits = exp[1:].lstrip("+-").lstrip("0") or "0"
    if len(digits) > _MAX_EXPONENT_DIGITS:
        raise OverflowError
    return -int(digits) if exp[1:].startswith("-") else int(digits)


def _bounded(number: Decimal, power: int, factor: int) -> Decimal:
    """``number * 10**power * factor``, capped and rounded as Kubernetes does."""
    if number.is_zero():
        return Decimal(0)
    # adjusted() is the power of ten of the leading digit: known before multiplying.
    magnitude = number.adjusted() + power + len(str(factor)) - 1
    if magnitude > 19:
        return MAX_QUANTITY
    if magnitude < -10:
        return _NANO
    value = _EXACT.multiply(number.scaleb(power, _EXACT), Decimal(factor))
    value = min(value, MAX_QUANTITY)
    return max(value.quantize(_NANO, rounding=ROUND_UP, context=_EXACT), _NANO)


def parse(quantity: str | int | float) -> Decimal:
    """Parse ``500m``, ``2Gi``, ``1e3``, ``4`` into a Decimal; ValueError if malformed."""
    if isinstance(quantity, bool) or not isinstance(quantity, str | int | float):
        raise _invalid(quantity)
    if isinstance(quantity, float) and not math.isfinite(quantity):
        raise _invalid(quantity)
    if isinstance(quantity, int) and abs(quantity) > _MAX_INT:
        # Capped before it is written out: str() of a huge int is slow, then refused.
        return MAX_QUANTITY if quantity > 0 else -MAX_QUANTITY
    text = str(quantity).strip() if isinstance(quantity, str) else _plain(quantity)
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise _invalid(quantity)
    suffix = match["suffix"] or ""
    try:
        power = _exponent(match["exp"], suffix)
    except OverflowError:
        raise _invalid(quantity) from None
    magnitude = _bounded(Decimal(match["number"]), power, _BINARY.get(suffix, 1))
    return -magnitude if match["sign"] == "-" else magnitude


def _plain(number: int | float) -> str:
    # YAML numbers (``cpu: 2``, ``cpu: 0.5``): a float's repr may use an exponent
    # ("1e-05"), which the grammar reads.
    return repr(number)


def ceil_int(quantity: str | int | float) -> int:
    """The integer Kubernetes reports as ``Quantity.Value()``: rounded up."""
    return math.ceil(parse(quantity))
