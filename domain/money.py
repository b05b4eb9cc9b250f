"""Money in integer minor units with an ISO 4217 code; never floats, never Decimal."""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.errors import ValidationFailed

_CODE = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Money:
    """An amount in minor units (cents) of one currency."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise ValidationFailed([("amount", "an integer number of minor units")])
        if not _CODE.match(self.currency):
            raise ValidationFailed([("currency", "an ISO 4217 code such as 'USD'")])

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValidationFailed([("currency", f"cannot mix {self.currency} and {other.currency}")])

    def times(self, n: int) -> Money:
        """This amount n times."""
        return Money(self.amount * n, self.currency)

    def apply_bps(self, bps: int) -> Money:
        """This amount times bps/10000, rounded half up to the minor unit (amounts are never negative here)."""
        return Money(bps_of(self.amount, bps), self.currency)


def bps_of(quantity: int, bps: int) -> int:
    """`quantity` (minor units, minutes) times bps/10000, rounded half up: the one rounding of basis points used by
    prices, commissions and refunds (quantities are never negative here)."""
    return (quantity * bps * 2 + 10_000) // 20_000


def split(total: int, weights: list[int]) -> list[int]:
    """Split `total` minor units pro rata to `weights`; the parts always add up to `total` exactly.

    Largest-remainder method: floor each share, then hand the leftover units to the largest remainders
    (ties to the earliest), so the result is deterministic."""
    if not weights or sum(weights) <= 0:
        raise ValueError("weights must be positive")
    whole = sum(weights)
    floors = [total * w // whole for w in weights]
    rests = [(total * w % whole, -i) for i, w in enumerate(weights)]
    left = total - sum(floors)
    for _, neg_i in sorted(rests, reverse=True)[:left]:
        floors[-neg_i] += 1
    return floors
