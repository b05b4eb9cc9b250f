"""notifications: each user's inbox, derived from booking, review and approval events, the admins' notice of
each submitted tutor profile, and one notice per thread of messages not yet read (thread_notices.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID, uuid5

import psycopg
from psycopg.types.json import Jsonb

from domain.booking import Booking
from domain.credits import CreditAccount
from domain.ids import NAMESPACE
from domain.inbox import Inbox
from domain.messaging import Thread
from domain.tutor import TutorProfile
from domain.user import User
from projections.runner import Envelope, FoldedProjection, by_type, replace_rows, topic_of
from projections.thread_notices import THREAD_TYPES, ThreadNotices

USER_COLUMNS = ("user_id", "full_name", "role", "active")


class Inboxes:
    """One batch's inbox writes. Each handler (ON_EVENT) applies one event, in order; what they write is gathered
    here and written at the end of the batch with two COPYs (and an UPDATE per read receipt), and the parties of
    the batch's bookings are read with one SELECT. Why: folding live, a batch holds a few bookings' events, and a
    statement per notification and per party lookup was most of this projection's cost per booking
    (bench/booking.py). An event's notice depends on the parties its booking's first event recorded, maybe in the
    same batch: those are kept in memory (`born`).

    Who is an admin, and a tutor's name, come from the user events this projection reads into its own
    `notification_users` (never from another read model): a submitted profile is announced to the admins as of
    that event's position, so a rebuild gives the same inboxes. The batch's users are folded in memory like the
    rest: the rows its user events and submissions need (and, when it holds a submission, every admin's) are
    read with one SELECT and the changed ones written back at the end."""

    def __init__(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        self.cur, self.inbox, self.parties, self.users_t = (
            cur,
            t["notifications"],
            t["notification_bookings"],
            t["notification_users"],
        )
        self.notices: list[tuple[Any, ...]] = []
        self.born: dict[Any, tuple[Any, Any]] = {}  # booking (or tutor profile) id -> (student, tutor), this batch
        self.reads: list[tuple[Any, Any]] = []
        # a booking (or profile) whose first event is in this batch has its parties recorded in `born` by then
        here = {e.aggregate_id for e in events if e.type in BORN}
        asked = list({e.aggregate_id for e in events if e.type not in NO_LOOKUP} - here)
        rows = (
            cur.execute(
                f"SELECT booking_id, student_id, tutor_id FROM {self.parties} WHERE booking_id = ANY(%s)", (asked,)
            ).fetchall()
            if asked
            else []
        )
        self.known: dict[Any, tuple[Any, Any]] = {r[0]: (r[1], r[2]) for r in rows}
        self.users, self.stored_users, self.changed_users = self._load_users(events)
        self.threads = ThreadNotices(cur, events, t)

    def _load_users(self, events: Sequence[Envelope]) -> tuple[dict[UUID, dict[str, Any]], set[UUID], set[UUID]]:
        """The `notification_users` rows this batch reads or changes: users of its user events (but those it
        registers), the tutors whose profiles it submits, and every active admin if it submits any."""
        profiles = {e.aggregate_id: e.data["tutor_id"] for e in events if e.type == "TutorProfile.Created"}
        submitted = [e.aggregate_id for e in events if e.type == "TutorProfile.Submitted"]
        wanted = {e.aggregate_id for e in events if e.type in USER_TYPES and e.type != "User.Registered"}
        wanted |= {UUID(str(e.data["sender_id"])) for e in events if e.type == "Thread.MessagePosted"}
        for pid in submitted:
            tutor = profiles.get(pid) or (self.known.get(pid) or (None, None))[1]
            if tutor is not None:
                wanted.add(UUID(str(tutor)))
        if not wanted and not submitted:
            return {}, set(), set()
        rows = self.cur.execute(
            f"SELECT {', '.join(USER_COLUMNS)} FROM {self.users_t}"
            " WHERE user_id = ANY(%s) OR (%s AND role = 'admin' AND active)",
            (list(wanted), bool(submitted)),
        ).fetchall()
        users = {r[0]: dict(zip(USER_COLUMNS, r, strict=True)) for r in rows}
        return users, set(users), set()

    def user(self, e: Envelope, **changes: Any) -> None:
        """A user event: change the user's row (if the projection knows the user)."""
        if (row := self.users.get(e.aggregate_id)) is not None:
            row.update(changes)
            self.changed_users.add(e.aggregate_id)

    def add(self, e: Envelope, user_id: Any, kind: str, data: dict[str, Any]) -> UUID:
        """One notification; its id is derived from the event position so a rebuild gives the same ids."""
        nid = uuid5(NAMESPACE, f"notification:{e.position}:{user_id}")
        self.notices.append((nid, user_id, kind, e.meta.get("recorded_at"), e.position, Jsonb(data)))
        return nid

    def parties_of(self, e: Envelope) -> tuple[Any, Any] | None:
        """(student, tutor) of the booking (the tutor alone, for a tutor profile) the event belongs to."""
        return self.born.get(e.aggregate_id) or self.known.get(e.aggregate_id)

    def write(self) -> None:
        """The batch's rows: users and parties first, then notifications, then read receipts (which name
        notifications that exist by then, maybe written in this batch)."""
        if self.changed_users:
            changed = [self.users[u] for u in self.changed_users]
            replace_rows(self.cur, self.users_t, USER_COLUMNS, changed, self.changed_users & self.stored_users)
        if self.born:
            with self.cur.copy(f"COPY {self.parties} (booking_id, student_id, tutor_id) FROM STDIN") as copy:
                for booking_id, (student_id, tutor_id) in self.born.items():
                    copy.write_row((booking_id, student_id, tutor_id))
        if self.notices:
            with self.cur.copy(
                f"COPY {self.inbox} (notification_id, user_id, type, created_at, position, data) FROM STDIN"
            ) as copy:
                for row in self.notices:
                    copy.write_row(row)
        for ids, user_id in self.reads:
            self.cur.execute(
                f"UPDATE {self.inbox} SET read = true WHERE notification_id = ANY(%s) AND user_id = %s", (ids, user_id)
            )
        self.threads.write(self.inbox)

    def read(self, e: Envelope) -> None:
        self.reads.append((e.data["notification_ids"], e.data["user_id"]))
        self.threads.inbox_read(e)

    def message_posted(self, e: Envelope) -> None:
        sender = self.users.get(UUID(str(e.data["sender_id"])))
        self.threads.posted(e, self.add, sender["full_name"] if sender else None)

    def reminded(self, e: Envelope) -> None:
        d = e.data
        self.add(e, d["user_id"], "booking.reminder", {"booking_id": d["booking_id"], "start": d["start"]})

    def tutor_created(self, e: Envelope) -> None:
        self.born[e.aggregate_id] = (None, e.data["tutor_id"])

    def requested(self, e: Envelope) -> None:
        d = e.data
        self.born[e.aggregate_id] = (d["student_id"], d["tutor_id"])
        data = {"booking_id": str(e.aggregate_id), "student_id": d["student_id"], "start": d["start"]}
        self.add(e, d["tutor_id"], "booking.requested", data)

    def registered(self, e: Envelope) -> None:
        d = e.data
        self.users[e.aggregate_id] = {
            "user_id": e.aggregate_id,
            "full_name": d["full_name"],
            "role": d["role"],
            "active": True,
        }
        self.changed_users.add(e.aggregate_id)

    def profile_updated(self, e: Envelope) -> None:
        if "full_name" in e.data["changes"]:
            self.user(e, full_name=e.data["changes"]["full_name"])

    def submitted(self, e: Envelope) -> None:
        """A tutor sent their profile for approval: each admin (active, as of this event) hears of it."""
        if (parties := self.parties_of(e)) is None:
            return
        tutor_id = UUID(str(parties[1]))
        tutor = self.users.get(tutor_id)
        data = {"tutor_id": str(tutor_id), "name": tutor["full_name"] if tutor else ""}
        admins = sorted(u for u, r in self.users.items() if r["role"] == "admin" and r["active"])
        for admin in admins:
            self.add(e, admin, "tutor.submitted", data)

    def expired(self, e: Envelope) -> None:
        if (parties := self.parties_of(e)) is not None:
            for who in parties:
                self.add(e, who, "booking.expired", {"booking_id": str(e.aggregate_id)})

    def reviewed(self, e: Envelope) -> None:
        if (parties := self.parties_of(e)) is not None:
            self.add(e, parties[1], "review.received", {"booking_id": str(e.aggregate_id), "rating": e.data["rating"]})


def _credit_expiring(w: Inboxes, e: Envelope) -> None:
    """Unused credit of a lot expires within a week: the student hears of it once."""
    d = e.data
    data = {k: d[k] for k in ("lot_id", "tutor_id", "minutes", "expires_at")}
    w.add(e, d["student_id"], "credit.expiring", data)


Handler = Callable[[Inboxes, Envelope], None]


def _to_student(kind: str) -> Handler:
    """A booking event the student hears of."""

    def handle(w: Inboxes, e: Envelope) -> None:
        if (parties := w.parties_of(e)) is not None:
            w.add(e, parties[0], kind, {"booking_id": str(e.aggregate_id)})

    return handle


def _to_other(kind: str) -> Handler:
    """A booking event one party caused (`by`, or `proposed_by`), which the other hears of."""

    def handle(w: Inboxes, e: Envelope) -> None:
        if (parties := w.parties_of(e)) is not None:
            d = e.data
            student, tutor = parties
            by = d.get("by") or d.get("proposed_by")
            data = {"booking_id": str(e.aggregate_id), **{k: d[k] for k in ("start",) if k in d}}
            w.add(e, tutor if by == "student" else student, kind, data)

    return handle


def _to_tutor(kind: str) -> Handler:
    """A decision on a tutor's profile, which the tutor hears of."""

    def handle(w: Inboxes, e: Envelope) -> None:
        if (parties := w.parties_of(e)) is not None:
            w.add(e, parties[1], kind, {"feedback": e.data.get("feedback")})

    return handle


# What each event the projection reads writes; `topics` is these classes.
ON_EVENT: dict[type, Handler] = {
    Booking.Requested: Inboxes.requested,
    Booking.Confirmed: _to_student("booking.confirmed"),
    Booking.Declined: _to_student("booking.declined"),
    Booking.Expired: Inboxes.expired,
    Booking.Cancelled: _to_other("booking.cancelled"),
    Booking.RescheduleProposed: _to_other("booking.reschedule_proposed"),
    Booking.Rescheduled: _to_other("booking.rescheduled"),
    Booking.RescheduleRejected: _to_other("booking.reschedule_rejected"),
    Booking.Completed: _to_student("booking.completed"),
    Booking.NoShowMarked: _to_student("booking.no_show"),
    Booking.Reviewed: Inboxes.reviewed,
    Booking.ReviewResponded: _to_student("review.responded"),
    TutorProfile.Created: Inboxes.tutor_created,
    TutorProfile.Submitted: Inboxes.submitted,
    TutorProfile.Approved: _to_tutor("tutor.approved"),
    TutorProfile.Rejected: _to_tutor("tutor.rejected"),
    Inbox.Read: Inboxes.read,
    Inbox.Reminded: Inboxes.reminded,
    CreditAccount.ExpiryWarned: _credit_expiring,
    User.Registered: Inboxes.registered,
    User.ProfileUpdated: Inboxes.profile_updated,
    User.RoleChanged: lambda w, e: w.user(e, role=e.data["role"]),
    User.Deactivated: lambda w, e: w.user(e, active=False),
    User.Reactivated: lambda w, e: w.user(e, active=True),
    User.Deleted: lambda w, e: w.user(e, active=False),
    Thread.Opened: lambda w, e: w.threads.opened(e),
    Thread.MessagePosted: Inboxes.message_posted,
    Thread.ReadUpTo: lambda w, e: w.threads.thread_read(e),
}
HANDLERS = by_type(ON_EVENT)
USER_EVENTS = (User.Registered, User.ProfileUpdated, User.RoleChanged, User.Deactivated, User.Reactivated, User.Deleted)
USER_TYPES = frozenset(by_type(dict.fromkeys(USER_EVENTS, 0)))  # what notification_users folds
# the events whose handlers do not look up their booking's parties
BORN = frozenset(by_type(dict.fromkeys((Booking.Requested, TutorProfile.Created), 0)))
NO_LOOKUP = (
    frozenset(
        by_type(
            dict.fromkeys(
                (Booking.Requested, TutorProfile.Created, Inbox.Read, Inbox.Reminded, CreditAccount.ExpiryWarned), 0
            )
        )
    )
    | USER_TYPES
    | THREAD_TYPES
)


class Notifications(FoldedProjection):
    """Inbox rows, by the handler of each event's type (ON_EVENT), written once per batch (Inboxes)."""

    name = "notifications"
    # 2: notification_users (admins and names, for tutor.submitted); 3: message.created (projections/thread_notices.py)
    # and credit.expiring
    version = 3
    # one inbox item per event: at worst one notification is missing (and recorded), not every later one
    skippable = True
    tables = (
        "notifications",
        "notification_bookings",
        "notification_users",
        "notification_threads",
        "notification_unread_threads",
    )
    topics = tuple(topic_of(c) for c in ON_EVENT)
    fold = Inboxes
    handlers = HANDLERS
