"""Platform context: versioned policy values, and the Policy a booking keeps from the version it was made under."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import ValidationFailed
from domain.ids import derived_id
from domain.values import Value

DEFAULTS: dict[str, Any] = {
    "commission_bps": 2000,
    "cancellation_window_hours": 12,
    "late_cancel_refund_bps": 5000,
    "no_show_refund_bps": 0,
    "package_discount_bps": {"1": 0, "5": 0, "10": 500, "20": 1000},
    "credit_validity_days": 180,
    "pending_expiry_hours": 24,
    "auto_complete_hours": 24,
}
PACKAGE_SIZES = (1, 5, 10, 20)
_BPS = ("commission_bps", "late_cancel_refund_bps", "no_show_refund_bps")
_HOURS = {"cancellation_window_hours": 24 * 14, "pending_expiry_hours": 24 * 14, "auto_complete_hours": 24 * 14}
SETTINGS_ID: UUID = derived_id("platform-settings", "global")
TIMING_HOURS = 24  # the timings of requests recorded before bookings kept them


@dataclass(frozen=True, slots=True)
class Policy(Value):
    """The platform settings in force when a booking was requested, kept whatever changes later: the terms shown
    to both parties, then the timings of the sweeps (not shown).

    `Booking.Requested` records it as a JSON object of these fields in this order (the shape bookings always had);
    a request recorded before the timings were kept reads back with the defaults."""

    cancellation_window_hours: int
    late_cancel_refund_bps: int
    no_show_refund_bps: int
    commission_bps: int
    pending_expiry_hours: int = TIMING_HOURS
    auto_complete_hours: int = TIMING_HOURS

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Policy:
        """The part of a settings version's values (or of a recorded policy object) that a booking keeps."""
        return cls(
            cancellation_window_hours=int(values["cancellation_window_hours"]),
            late_cancel_refund_bps=int(values["late_cancel_refund_bps"]),
            no_show_refund_bps=int(values["no_show_refund_bps"]),
            commission_bps=int(values["commission_bps"]),
            pending_expiry_hours=int(values.get("pending_expiry_hours", TIMING_HOURS)),
            auto_complete_hours=int(values.get("auto_complete_hours", TIMING_HOURS)),
        )


DEFAULT_POLICY = Policy.of(DEFAULTS)  # what a booking keeps before anyone changed the settings


def check(changes: dict[str, Any]) -> dict[str, Any]:
    """Validate a settings change set (integers only: rates in basis points, never floats)."""
    errors: list[tuple[str, str]] = []
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in DEFAULTS:
            errors.append((key, "unknown setting"))
        elif key in _BPS:
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10_000:
                errors.append((key, "integer basis points 0-10000"))
            out[key] = value
        elif key in _HOURS:
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _HOURS[key]:
                errors.append((key, f"whole hours 0-{_HOURS[key]}"))
            out[key] = value
        elif key == "credit_validity_days":
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 3650:
                errors.append((key, "whole days 1-3650"))
            out[key] = value
        elif key == "package_discount_bps":
            if (
                not isinstance(value, dict)
                or not set(value) <= {str(n) for n in PACKAGE_SIZES}
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10_000 for v in value.values())
            ):
                errors.append((key, 'an object {"1": bps, "5": bps, "10": bps, "20": bps}'))
            else:
                out[key] = value
    if errors:
        raise ValidationFailed(errors)
    return out


class PlatformSettings(Aggregate):
    """One stream of policy versions; version 1 is the defaults."""

    @event("Created")
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = dict(values)
        self.settings_version = 1
        self.booking_policy = Policy.of(self.values)  # built once per version: every booking request keeps it

    @staticmethod
    def create_id(values: dict[str, Any]) -> UUID:
        """There is one platform settings stream."""
        return SETTINGS_ID

    @classmethod
    def defaults(cls) -> PlatformSettings:
        """The settings before anyone changed them."""
        return cls(values=DEFAULTS)

    def change(self, changes: dict[str, Any]) -> None:
        """Record a new version with the given values changed (package discounts merge by size)."""
        valid = check(changes)
        if "package_discount_bps" in valid:
            valid["package_discount_bps"] = {**self.values["package_discount_bps"], **valid["package_discount_bps"]}
        self._changed(changes=valid, settings_version=self.settings_version + 1)

    @event("Changed")
    def _changed(self, changes: dict[str, Any], settings_version: int) -> None:
        self.values.update(changes)
        self.settings_version = settings_version
        self.booking_policy = Policy.of(self.values)

    def view(self) -> dict[str, Any]:
        """The contract's settings shape."""
        return {"version": self.settings_version, **self.values}
