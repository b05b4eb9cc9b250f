"""Read models built from the event log; every one can be rebuilt and gives the same rows."""

from __future__ import annotations

from projections.audit_log import AuditLog
from projections.bookings import Bookings
from projections.emails import Emails
from projections.ledger import Ledger
from projections.messaging import Messaging
from projections.notifications import Notifications
from projections.purchases import Purchases
from projections.runner import Projection
from projections.student_credits import StudentCredits
from projections.student_favorites import StudentFavorites
from projections.subjects import Subjects
from projections.tutor_payouts import TutorPayoutHistory
from projections.tutors import Tutors
from projections.users_directory import UsersDirectory


def all_projections() -> list[Projection]:
    """Every projection the system runs."""
    return [
        UsersDirectory(),
        AuditLog(),
        Subjects(),
        Tutors(),
        StudentFavorites(),
        Ledger(),
        StudentCredits(),
        Purchases(),
        TutorPayoutHistory(),
        Bookings(),
        Notifications(),
        Messaging(),
        Emails(),
    ]


def by_name(name: str) -> Projection:
    """Look a projection up by name."""
    for p in all_projections():
        if p.name == name:
            return p
    raise KeyError(name)
