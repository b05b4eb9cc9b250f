"""Settling a booking's credit hold: the student's account captures part of it for the tutor and the platform and
releases the rest; the tutor's net accrues on their payouts stream. A collaborator the scheduling and money
applications both hold (neither inherits the other)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.store import EventStoreApp
from domain.credits import CreditAccount, HoldState
from domain.payouts import TutorPayouts


class Settlement:
    """Loads the credit accounts and payouts streams it settles through the application that holds it."""

    def __init__(self, app: EventStoreApp) -> None:
        self.app = app

    def account(self, student_id: UUID) -> CreditAccount:
        """The student's credit account (a new, empty one if they never had credit)."""
        try:
            found: Any = self.app.repository.get(CreditAccount.create_id(student_id))
        except AggregateNotFoundError:
            return CreditAccount(student_id=student_id)
        return found if isinstance(found, CreditAccount) else CreditAccount(student_id=student_id)

    def payouts(self, tutor_id: UUID) -> TutorPayouts:
        """The tutor's payouts stream (a new one before their first earning)."""
        try:
            found: Any = self.app.repository.get(TutorPayouts.create_id(tutor_id))
        except AggregateNotFoundError:
            return TutorPayouts(tutor_id=tutor_id)
        return found if isinstance(found, TutorPayouts) else TutorPayouts(tutor_id=tutor_id)

    def settle(
        self, account: CreditAccount, booking_id: str, capture_minutes: int, outcome: HoldState
    ) -> tuple[dict[str, Any], TutorPayouts | None]:
        """Resolve a hold on a loaded account; the tutor's earning accrues on their payouts stream, returned to be
        saved with the account (None when the tutor earns nothing)."""
        result = account.resolve(booking_id, capture_minutes, outcome)
        if result["tutor_net"] <= 0:
            return result, None
        payouts = self.payouts(UUID(account.holds[booking_id].tutor_id))
        payouts.accrue(booking_id, result["tutor_net"], result["currency"])
        return result, payouts
