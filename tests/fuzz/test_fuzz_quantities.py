"""Resource quantities: any text, number or grammar-shaped string gives a bounded
Decimal or a ValueError naming it, quickly."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from raykube.builders import quantities
from tests.fuzz.budget import bounded
from tests.fuzz.strategies import HOSTILE_TEXT, quantity_values

anything = st.one_of(
    quantity_values,
    st.text(max_size=40),
    st.sampled_from(HOSTILE_TEXT),
    st.floats(),
    st.from_regex(r"\A[0-9.eE+\-KMGTPEimunk ]{1,30}\Z"),
)


def read(value: str | int | float) -> Decimal | None:
    try:
        return quantities.parse(value)
    except ValueError as err:
        assert "invalid quantity" in str(err)
        return None


@given(value=anything)
def test_any_quantity_reads_or_is_refused(value: str | int | float) -> None:
    amount = bounded("quantities.parse", lambda: read(value))
    if amount is not None:
        assert abs(amount) <= quantities.MAX_QUANTITY
        bounded("quantities.ceil_int", lambda: quantities.ceil_int(value))


@given(value=quantity_values)
def test_the_grammar_always_reads(value: str | int | float) -> None:
    amount = bounded("quantities.parse(grammar)", lambda: quantities.parse(value))
    assert amount == 0 or abs(amount) >= Decimal("1e-9")
