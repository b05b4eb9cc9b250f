"""emails: the outbox of e-mails people are due, one row per e-mail and recipient, derived from booking, reminder
and credit events; the mailer (workers/mailer.py) sends them and records what it sent in its own runtime table.

Each row holds everything its e-mail says (the subject's and the other party's names, the lesson's time and the
recipient's time zone as of its event), so the mailer renders without reading anything else, and a rebuild gives
the same rows with the same ids: uuid5 of the event's position and the recipient, as notification ids."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

import psycopg
from psycopg.types.json import Jsonb

from domain.booking import Booking
from domain.credits import CreditAccount
from domain.ids import NAMESPACE
from domain.inbox import Inbox
from domain.subject import Subject
from domain.user import User
from projections.runner import Envelope, FoldedProjection, by_type, load_rows, replace_rows, topic_of

USER_COLUMNS = ("user_id", "email", "full_name", "timezone", "notify", "active")
SUBJECT_COLUMNS = ("subject_id", "name")
BOOKING_COLUMNS = ("booking_id", "student_id", "tutor_id", "subject_id", "start_at", "duration_minutes")
EMAIL_COLUMNS = ("email_id", "position", "user_id", "kind", "address", "created_at", "data")
Row = dict[str, Any]


def email_id(position: int, user_id: Any) -> UUID:
    """The id of the e-mail an event at `position` sends to `user_id`: the same on every rebuild."""
    return uuid5(NAMESPACE, f"email:{position}:{user_id}")


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


class Outbox:
    """One batch's e-mails. The users, subjects and bookings the batch needs are read with one SELECT each
    (runner.load_rows), the events applied to them in order (an e-mail says what was true at its event), and the
    changed rows and the new e-mails written at the end."""

    def __init__(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        self.cur, self.t = cur, t
        self.mails: list[tuple[Any, ...]] = []
        born = {e.aggregate_id for e in events if e.type == "Booking.Requested"}
        wanted = {e.aggregate_id for e in events if e.type.startswith("Booking.")}
        wanted |= {_uuid(e.data["booking_id"]) for e in events if e.type == "Inbox.Reminded"}
        self.bookings = load_rows(cur, t["email_bookings"], BOOKING_COLUMNS, wanted - born)
        self.stored = {"bookings": set(self.bookings)}
        users = {e.aggregate_id for e in events if e.type.startswith("User.")}
        subjects = {e.aggregate_id for e in events if e.type.startswith("Subject.")}
        for b in self.bookings.values():
            users |= {b["student_id"], b["tutor_id"]}
            subjects.add(b["subject_id"])
        for e in events:
            if e.type == "Booking.Requested":
                users |= {_uuid(e.data["student_id"]), _uuid(e.data["tutor_id"])}
                subjects.add(_uuid(e.data["subject_id"]))
            elif e.type == "CreditAccount.ExpiryWarned":
                users |= {_uuid(e.data["student_id"]), _uuid(e.data["tutor_id"])}
        self.users = load_rows(cur, t["email_users"], USER_COLUMNS, users)
        self.subjects = load_rows(cur, t["email_subjects"], SUBJECT_COLUMNS, subjects)
        self.stored.update(users=set(self.users), subjects=set(self.subjects))
        self.changed: dict[str, set[Any]] = {"users": set(), "subjects": set(), "bookings": set()}

    # ---------------------------------------------------------------------------------------------- facts

    def registered(self, e: Envelope) -> None:
        d = e.data
        self.users[e.aggregate_id] = {
            "user_id": e.aggregate_id,
            "email": d["email"],
            "full_name": d["full_name"],
            "timezone": "UTC",
            "notify": True,
            "active": True,
        }
        self.changed["users"].add(e.aggregate_id)

    def user(self, e: Envelope, **changes: Any) -> None:
        if (row := self.users.get(e.aggregate_id)) is not None and changes:
            row.update(changes)
            self.changed["users"].add(e.aggregate_id)

    def profile_updated(self, e: Envelope) -> None:
        c = e.data["changes"]
        named = {"full_name": "full_name", "timezone": "timezone", "email_notifications": "notify"}
        self.user(e, **{column: c[key] for key, column in named.items() if key in c})

    def subject(self, e: Envelope) -> None:
        self.subjects[e.aggregate_id] = {"subject_id": e.aggregate_id, "name": e.data["name"]}
        self.changed["subjects"].add(e.aggregate_id)

    def rescheduled(self, e: Envelope) -> None:
        if (b := self.bookings.get(e.aggregate_id)) is not None:
            b["start_at"] = datetime.fromisoformat(e.data["start"])
            self.changed["bookings"].add(e.aggregate_id)

    # --------------------------------------------------------------------------------------------- e-mails

    def add(self, e: Envelope, user_id: Any, kind: str, data: dict[str, Any]) -> None:
        """An e-mail to `user_id`, unless they turned e-mails off or their account is closed."""
        u = self.users.get(_uuid(user_id))
        if u is None or not u["notify"] or not u["active"]:
            return
        data = {**data, "recipient_name": u["full_name"], "timezone": u["timezone"]}
        created = e.meta.get("recorded_at")
        self.mails.append(
            (email_id(e.position, u["user_id"]), e.position, u["user_id"], kind, u["email"], created, Jsonb(data))
        )

    def name_of(self, user_id: Any) -> str:
        u = self.users.get(_uuid(user_id))
        return str(u["full_name"]) if u else ""

    def about(self, e: Envelope, booking_id: Any, to_student: bool, kind: str, **extra: Any) -> None:
        """An e-mail about a lesson to one of its parties, naming the other."""
        if (b := self.bookings.get(_uuid(booking_id))) is None:
            return
        to, other = (b["student_id"], b["tutor_id"]) if to_student else (b["tutor_id"], b["student_id"])
        subject = self.subjects.get(b["subject_id"])
        data = {
            "booking_id": str(b["booking_id"]),
            "subject": subject["name"] if subject else "",
            "other_name": self.name_of(other),
            "start": extra.pop("start", None) or b["start_at"].isoformat(),
            "duration_minutes": b["duration_minutes"],
            **extra,
        }
        self.add(e, to, kind, data)

    def requested(self, e: Envelope) -> None:
        d = e.data
        self.bookings[e.aggregate_id] = {
            "booking_id": e.aggregate_id,
            "student_id": _uuid(d["student_id"]),
            "tutor_id": _uuid(d["tutor_id"]),
            "subject_id": _uuid(d["subject_id"]),
            "start_at": datetime.fromisoformat(d["start"]),
            "duration_minutes": d["duration_minutes"],
        }
        self.changed["bookings"].add(e.aggregate_id)
        self.about(e, e.aggregate_id, False, "booking.requested", note=d.get("note", ""))

    def cancelled(self, e: Envelope) -> None:
        """The party who did not cancel hears of it (the student, when the platform withdrew the lesson)."""
        d = e.data
        self.about(e, e.aggregate_id, d["by"] != "student", "booking.cancelled", by=d["by"], reason=d["reason"])

    def reminded(self, e: Envelope) -> None:
        d = e.data
        if (b := self.bookings.get(_uuid(d["booking_id"]))) is not None:
            to_student = _uuid(d["user_id"]) == b["student_id"]
            self.about(e, b["booking_id"], to_student, "booking.reminder", start=d["start"])

    def expiring(self, e: Envelope) -> None:
        d = e.data
        data = {
            "lot_id": d["lot_id"],
            "other_name": self.name_of(d["tutor_id"]),
            "minutes": d["minutes"],
            "expires_at": d["expires_at"],
        }
        self.add(e, d["student_id"], "credit.expiring", data)

    def write(self) -> None:
        """The changed users, subjects and bookings back (one DELETE and one COPY each), then the e-mails."""
        for name, rows, columns in (
            ("users", self.users, USER_COLUMNS),
            ("subjects", self.subjects, SUBJECT_COLUMNS),
            ("bookings", self.bookings, BOOKING_COLUMNS),
        ):
            if changed := self.changed[name]:
                table = self.t[f"email_{name}"]
                replace_rows(self.cur, table, columns, [rows[k] for k in changed], changed & self.stored[name])
        if self.mails:
            with self.cur.copy(f"COPY {self.t['emails']} ({', '.join(EMAIL_COLUMNS)}) FROM STDIN") as copy:
                for mail in self.mails:
                    copy.write_row(mail)


def _to_student(kind: str) -> Callable[[Outbox, Envelope], None]:
    """A booking event the student hears of, naming the tutor."""
    return lambda w, e: w.about(e, e.aggregate_id, True, kind)


# What each event the projection reads does; `topics` is these classes.
ON_EVENT: dict[type, Callable[[Outbox, Envelope], None]] = {
    Booking.Requested: Outbox.requested,
    Booking.Confirmed: _to_student("booking.confirmed"),
    Booking.Declined: _to_student("booking.declined"),
    Booking.Cancelled: Outbox.cancelled,
    Booking.Rescheduled: Outbox.rescheduled,
    Inbox.Reminded: Outbox.reminded,
    CreditAccount.ExpiryWarned: Outbox.expiring,
    Subject.Created: Outbox.subject,
    Subject.Renamed: Outbox.subject,
    User.Registered: Outbox.registered,
    User.ProfileUpdated: Outbox.profile_updated,
    User.Deactivated: lambda w, e: w.user(e, active=False),
    User.Reactivated: lambda w, e: w.user(e, active=True),
    User.Deleted: lambda w, e: w.user(e, active=False),
}


class Emails(FoldedProjection):
    """The e-mail outbox (Outbox), by the handler of each event's type (ON_EVENT)."""

    name = "emails"
    background = True  # back office: followed in the slower-paced rounds (Projection.background)
    version = 1
    # one row per e-mail: at worst one e-mail is missing (and recorded), not every later one
    skippable = True
    tables = ("emails", "email_users", "email_subjects", "email_bookings")
    topics = tuple(topic_of(c) for c in ON_EVENT)
    fold = Outbox
    handlers = by_type(ON_EVENT)
