"""Kubernetes resource quantities, as far as ``ray start`` needs them."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}


def parse(quantity: str | int | float) -> Decimal:
    """Parse ``500m``, ``2Gi``, ``1e3``, ``4`` into a Decimal; ValueError if malformed."""
    text = str(quantity).strip()
    try:
        for suffix, factor in _BINARY.items():
            if text.endswith(suffix):
                return Decimal(text[: -len(suffix)]) * factor
        if text and text[-1] in _DECIMAL and not text[-1].isdigit():
            return Decimal(text[:-1]) * _DECIMAL[text[-1]]
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"invalid quantity {quantity!r}") from None


def ceil_int(quantity: str | int | float) -> int:
    """The integer Kubernetes reports as ``Quantity.Value()``: rounded up."""
    return math.ceil(parse(quantity))
