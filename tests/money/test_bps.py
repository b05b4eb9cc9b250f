"""One rounding of basis points (domain/money.py bps_of) for prices, commissions and refunds: half up, exact."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import example, given
from hypothesis import strategies as st

from domain.money import Money, bps_of


@example(30, 2500)  # 7.5
@example(1, 5000)  # 0.5
@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10_000))
def test_bps_of_is_the_exact_share_rounded_half_up(quantity: int, bps: int) -> None:
    exact = Fraction(quantity * bps, 10_000)
    got = bps_of(quantity, bps)
    assert got - Fraction(1, 2) <= exact < got + Fraction(1, 2)  # nearest, and a half goes up
    assert Money(quantity, "USD").apply_bps(bps) == Money(got, "USD")


def test_halves_round_up() -> None:
    assert bps_of(1, 5000) == 1  # 0.5
    assert bps_of(3, 5000) == 2  # 1.5
    assert bps_of(30, 2500) == 8  # 7.5 minutes
    assert bps_of(0, 10_000) == 0 and bps_of(7, 10_000) == 7 and bps_of(7, 0) == 0
