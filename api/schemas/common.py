"""Shapes every area shares."""

from __future__ import annotations

from datetime import datetime

import msgspec

from domain.money import Money


class MoneyOut(msgspec.Struct):
    """Money: integer minor units and an ISO 4217 code, never a float."""

    amount: int
    currency: str

    @classmethod
    def of(cls, m: Money) -> MoneyOut:
        """The wire form of a domain Money."""
        return cls(m.amount, m.currency)


class Interval(msgspec.Struct):
    """A half-open span of time [start, end) in UTC."""

    start: datetime
    end: datetime


class ReviewResponseOut(msgspec.Struct):
    """The tutor's answer to a review (on the review's answer and on the tutor's public page)."""

    text: str
    created_at: datetime
