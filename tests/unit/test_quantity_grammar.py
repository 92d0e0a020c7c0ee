"""Resource quantities follow Kubernetes' grammar and cost bounded work, whatever the text."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from raykube.builders import quantities

MAX = Decimal(2**63 - 1)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", Decimal(1)),
        ("+1", Decimal(1)),
        ("-1", Decimal(-1)),
        ("1.", Decimal(1)),
        (".5", Decimal("0.5")),
        ("500m", Decimal("0.5")),
        ("100u", Decimal("0.0001")),
        ("5n", Decimal("5e-9")),
        ("2Ki", Decimal(2048)),
        ("1Ei", Decimal(2**60)),
        ("1E", Decimal(10**18)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("1e-3", Decimal("0.001")),
        ("1.5e+2", Decimal(150)),
        (" 4 ", Decimal(4)),
        (7, Decimal(7)),
        (0.25, Decimal("0.25")),
    ],
)
def test_kubernetes_quantities_are_read(text: str | int | float, value: Decimal) -> None:
    assert quantities.parse(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # Kubernetes caps what it cannot hold, and rounds a non-zero amount up to 1n.
        ("1e1000000", MAX),
        ("-1e1000000", -MAX),
        ("9" * 40, MAX),
        ("16Ei", MAX),
        ("1e-1000000", Decimal("1e-9")),
        ("0.1n", Decimal("1e-9")),
        ("0e1000000", Decimal(0)),
        pytest.param(10**5000, MAX, id="10**5000"),
        pytest.param(-(10**5000), -MAX, id="-10**5000"),
    ],
)
def test_out_of_range_quantities_are_capped_like_kubernetes(
    text: str | int, value: Decimal
) -> None:
    assert quantities.parse(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "sNaN",
        "",
        "lots",
        "1Gb",
        "1KI",
        "1e",
        "e3",
        "1e3.5",
        "1 Gi",
        "--1",
        ".",
        "1_000",
        "1e99999999999999999999",
        "0x10",
        "\uff11",  # a full-width 1: Python's Decimal reads it, Kubernetes does not
        True,
        float("nan"),
        float("inf"),
    ],
)
def test_anything_else_is_refused_naming_the_value(text: str) -> None:
    with pytest.raises(ValueError, match="invalid quantity") as err:
        quantities.parse(text)
    assert repr(str(text).strip())[:20] in str(err.value)


def test_a_huge_exponent_is_cheap() -> None:
    start = time.perf_counter()
    assert quantities.ceil_int("1e1000000") == 2**63 - 1
    assert quantities.ceil_int("1e999999999999999999") == 2**63 - 1
    assert time.perf_counter() - start < 1.0  # unbounded, this took minutes


def test_a_long_value_is_named_briefly() -> None:
    with pytest.raises(ValueError) as err:
        quantities.parse("x" * 100_000)
    assert len(str(err.value)) < 300
