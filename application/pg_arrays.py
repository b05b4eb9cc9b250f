"""Arrays sent to PostgreSQL in its binary array format, built with `struct` and `bytes.join`.

psycopg adapts a Python list element by element in Python (`ListDumper`: find the element type, then one dumper
call per element), which cost ~190 us for the aggregate cache's `unnest(uuid[], int4[])` with seven ids, where
these take ~40 us (py-spy of bench/booking.py: ~10 % of the API's CPU per booking went to list adaptation;
docs/PERFORMANCE.md). A statement opts in by wrapping its parameter: `UuidArray(ids)`. Elements are never NULL.

The format (PostgreSQL's array_send): ndim, has-nulls flag, element type oid, then per dimension its length and
lower bound (1), then each element as a 4-byte length and its binary value."""

from __future__ import annotations

import struct
from typing import Any
from uuid import UUID

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

_HEAD = struct.Struct("!iiiii")
_EMPTY = struct.Struct("!iii")


def _array(element_oid: int, items: list[bytes]) -> bytes:
    if not items:
        return _EMPTY.pack(0, 0, element_oid)
    return _HEAD.pack(1, 0, element_oid, len(items), 1) + b"".join(items)


def _sized(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


class UuidArray(list[UUID]):
    """A `uuid[]` parameter."""


class Int4Array(list[int]):
    """An `int4[]` parameter (each value in -2**31 .. 2**31-1)."""


class TextArray(list[str]):
    """A `text[]` parameter (UTF-8; PostgreSQL text holds no U+0000)."""


class ByteaArray(list[bytes]):
    """A `bytea[]` parameter."""


class _UuidArrayDumper(Dumper):
    format = Format.BINARY
    oid = 2951  # uuid[]

    def dump(self, obj: Any) -> bytes:
        return _array(2950, [b"\0\0\0\x10" + u.bytes for u in obj])


class _Int4ArrayDumper(Dumper):
    format = Format.BINARY
    oid = 1007  # int4[]

    def dump(self, obj: Any) -> bytes:
        if not obj:
            return _EMPTY.pack(0, 0, 23)
        return _HEAD.pack(1, 0, 23, len(obj), 1) + struct.pack(f"!{2 * len(obj)}i", *[x for v in obj for x in (4, v)])


class _TextArrayDumper(Dumper):
    format = Format.BINARY
    oid = 1009  # text[]

    def dump(self, obj: Any) -> bytes:
        return _array(25, [_sized(s.encode()) for s in obj])


class _ByteaArrayDumper(Dumper):
    format = Format.BINARY
    oid = 1001  # bytea[]

    def dump(self, obj: Any) -> bytes:
        return _array(17, [_sized(bytes(b)) for b in obj])


for _kind, _dumper in (
    (UuidArray, _UuidArrayDumper),
    (Int4Array, _Int4ArrayDumper),
    (TextArray, _TextArrayDumper),
    (ByteaArray, _ByteaArrayDumper),
):
    psycopg.adapters.register_dumper(_kind, _dumper)
