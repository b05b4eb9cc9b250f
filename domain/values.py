"""What frozen value objects of aggregate state share."""

from __future__ import annotations

from typing import Any


class Value:
    """Base of the frozen, slotted dataclasses aggregates keep (lots, holds, policy): they pickle as their
    constructor's arguments. Why: the aggregate cache copies aggregates by pickling (application/aggregate_cache.py
    `_copy`), and the slotted dataclass's own pickling restores each field through object.__setattr__, which made
    copying a credit account of 20 lots and 40 holds ~1.8x slower than when they were dicts."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        names: tuple[str, ...] = type(self).__dict__["__slots__"]  # the dataclass's fields, in order
        return type(self), tuple(getattr(self, name) for name in names)
