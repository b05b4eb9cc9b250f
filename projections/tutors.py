"""tutors: the approval queue, each tutor's documents, and public search over approved tutors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from domain.availability import available, parse_rules, slots
from domain.booking import Booking
from domain.subject import Subject
from domain.tutor import TutorProfile, completeness_of
from domain.user import User
from projections.runtime import Envelope, Projection, topic_of

_encode = msgspec.json.Encoder().encode

TUTOR_EVENTS = (
    TutorProfile.Created,
    TutorProfile.PersonalSet,
    TutorProfile.ExperienceSet,
    TutorProfile.TeachingSet,
    TutorProfile.AvailabilitySet,
    TutorProfile.PreferencesSet,
    TutorProfile.DocumentRequested,
    TutorProfile.DocumentUploaded,
    TutorProfile.Submitted,
    TutorProfile.Approved,
    TutorProfile.Rejected,
    TutorProfile.Suspended,
    TutorProfile.Reinstated,
)


class Tutors(Projection):
    """One row per tutor; search text and completeness are recomputed once per batch for touched tutors."""

    name = "tutors"
    version = 2
    tables = ("tutors", "tutors_people", "tutors_subject_names")
    topics = tuple(
        topic_of(c)
        for c in (
            Booking.Reviewed,
            User.Registered,
            User.ProfileUpdated,
            Subject.Created,
            Subject.Renamed,
            Subject.Retired,
            *TUTOR_EVENTS,
        )
    )

    def apply(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        tutors, people, names = t["tutors"], t["tutors_people"], t["tutors_subject_names"]
        touched: set[Any] = set()
        renamed: set[Any] = set()
        for e in events:
            d, tid = e.data, e.aggregate_id
            kind = e.type
            if kind == "Booking.Reviewed":
                cur.execute(
                    f"UPDATE {tutors} SET rating_sum = rating_sum + %s, rating_count = rating_count + 1,"
                    " rating_avg = (rating_sum + %s)::float8 / (rating_count + 1) WHERE tutor_id = %s",
                    (d["rating"], d["rating"], d["tutor_id"]),
                )
            elif kind == "User.Registered":
                cur.execute(
                    f"INSERT INTO {people} (user_id, full_name, email) VALUES (%s, %s, %s)",
                    (tid, d["full_name"], d["email"]),
                )
            elif kind == "User.ProfileUpdated" and "full_name" in d["changes"]:
                cur.execute(f"UPDATE {people} SET full_name = %s WHERE user_id = %s", (d["changes"]["full_name"], tid))
                rows = cur.execute(
                    f"UPDATE {tutors} SET full_name = %s WHERE tutor_id = %s RETURNING profile_id",
                    (d["changes"]["full_name"], tid),
                ).fetchall()
                touched.update(r[0] for r in rows)
            elif kind == "Subject.Created":
                cur.execute(
                    f"INSERT INTO {names} (subject_id, name, category, active) VALUES (%s, %s, %s, true)",
                    (tid, d["name"], d["category"]),
                )
            elif kind == "Subject.Renamed":
                cur.execute(f"UPDATE {names} SET name = %s WHERE subject_id = %s", (d["name"], tid))
                renamed.add(tid)
            elif kind == "Subject.Retired":
                cur.execute(f"UPDATE {names} SET active = false WHERE subject_id = %s", (tid,))
            elif kind == "TutorProfile.Created":
                cur.execute(
                    f"INSERT INTO {tutors} (tutor_id, profile_id, full_name, email, status, availability,"
                    f" updated_position) SELECT %s, %s, coalesce(p.full_name, ''), coalesce(p.email, ''), 'draft',"
                    f" %s, %s FROM (SELECT 1) x LEFT JOIN {people} p ON p.user_id = %s",
                    (
                        d["tutor_id"],
                        tid,
                        Jsonb({"timezone": None, "weekly": [], "blocks": [], "openings": []}),
                        e.position,
                        d["tutor_id"],
                    ),
                )
                touched.add(tid)
            else:
                self._profile_event(cur, tutors, e)
                touched.add(tid)
        for sid in renamed:
            rows = cur.execute(f"SELECT profile_id FROM {tutors} WHERE %s = ANY(subject_ids)", (sid,)).fetchall()
            touched.update(r[0] for r in rows)
        if touched:
            self._refresh(cur, tutors, names, list(touched))

    @staticmethod
    def _profile_event(cur: psycopg.Cursor[Any], tutors: str, e: Envelope) -> None:
        d, tid, kind = e.data, e.aggregate_id, e.type
        sets: dict[str, Any] = {}
        if kind == "TutorProfile.PersonalSet":
            p = d["personal"]
            sets = {"bio": p["bio"], "location": p["location"], "languages": p["languages"]}
        elif kind == "TutorProfile.ExperienceSet":
            sets = {"experience": Jsonb(d["experience"])}
        elif kind == "TutorProfile.TeachingSet":
            rate = d["hourly_rate"] or {}
            sets = {"subject_ids": d["subjects"], "hourly_amount": rate.get("amount"), "currency": rate.get("currency")}
        elif kind == "TutorProfile.AvailabilitySet":
            sets = {"availability": Jsonb(d["availability"])}
        elif kind == "TutorProfile.PreferencesSet":
            sets = {"auto_confirm": d["auto_confirm"], "min_notice_minutes": d["min_notice_minutes"]}
        elif kind == "TutorProfile.DocumentRequested":
            doc = {
                "id": d["document_id"],
                "filename": d["filename"],
                "content_type": d["content_type"],
                "size": d["size"],
                "key": d["key"],
                "status": "pending",
                "uploaded_at": None,
            }
            cur.execute(
                f"UPDATE {tutors} SET documents = documents || %s::jsonb, updated_position = %s WHERE profile_id = %s",
                (_encode([doc]).decode(), e.position, tid),
            )
            return
        elif kind == "TutorProfile.DocumentUploaded":
            cur.execute(
                f"UPDATE {tutors} SET documents = (SELECT jsonb_agg(CASE WHEN x->>'id' = %s THEN x || %s::jsonb"
                f" ELSE x END ORDER BY n) FROM jsonb_array_elements(documents) WITH ORDINALITY AS a(x, n)),"
                f" updated_position = %s WHERE profile_id = %s",
                (
                    d["document_id"],
                    _encode({"status": "uploaded", "size": d["size"], "uploaded_at": d["uploaded_at"]}).decode(),
                    e.position,
                    tid,
                ),
            )
            return
        elif kind == "TutorProfile.Submitted":
            sets = {"status": "pending_approval", "submitted_at": d["submitted_at"]}
        elif kind == "TutorProfile.Approved":
            sets = {"status": "approved", "feedback": None}
        elif kind == "TutorProfile.Rejected":
            sets = {"status": "rejected", "feedback": d["feedback"]}
        elif kind == "TutorProfile.Suspended":
            sets = {"status": "suspended"}
        elif kind == "TutorProfile.Reinstated":
            sets = {"status": "approved"}
        if sets:
            cols = ", ".join(f"{k} = %s" for k in sets)
            cur.execute(
                f"UPDATE {tutors} SET {cols}, updated_position = %s WHERE profile_id = %s",
                (*sets.values(), e.position, tid),
            )

    @staticmethod
    def _refresh(cur: psycopg.Cursor[Any], tutors: str, names: str, ids: list[Any]) -> None:
        cur.execute(
            f"UPDATE {tutors} t SET search = to_tsvector('simple', t.full_name || ' ' || t.bio || ' '"
            f" || array_to_string(t.languages, ' ') || ' ' || coalesce((SELECT string_agg(n.name || ' '"
            f" || n.category, ' ') FROM {names} n WHERE n.subject_id = ANY(t.subject_ids)), ''))"
            f" WHERE t.profile_id = ANY(%s)",
            (ids,),
        )
        rows = cur.execute(
            f"SELECT tutor_id, bio, experience, subject_ids, hourly_amount, currency, availability, documents"
            f" FROM {tutors} WHERE profile_id = ANY(%s)",
            (ids,),
        ).fetchall()
        for tid, bio, exp, subjects, amount, currency, avail, docs in rows:
            rate = {"amount": amount, "currency": currency} if amount is not None else None
            c = completeness_of({"bio": bio}, exp or {}, subjects or [], rate, avail or {}, docs or [])
            cur.execute(f"UPDATE {tutors} SET completeness = %s WHERE tutor_id = %s", (c, tid))


def _iv(raw: list[dict[str, str]]) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromisoformat(x["start"]), datetime.fromisoformat(x["end"])) for x in raw or []]


def slots_for(
    availability: dict[str, Any],
    min_notice_minutes: int,
    frm: datetime,
    to: datetime,
    duration: timedelta,
    now: datetime,
    taken: Sequence[tuple[datetime, datetime]] = (),
) -> list[tuple[datetime, datetime]]:
    """Bookable slots of a tutor row: weekly rules in its zone + openings - blocks, after the notice period."""
    zone = availability.get("timezone")
    rules = parse_rules(availability.get("weekly") or []) if zone else ()
    earliest = max(frm, now + timedelta(minutes=min_notice_minutes))
    if earliest >= to:
        return []
    free = available(
        rules,
        zone or "UTC",
        _iv(availability.get("openings", [])),
        _iv(availability.get("blocks", [])),
        earliest,
        to + duration,
    )
    return slots(free, duration, earliest, to, taken)


def next_slots(
    availability: dict[str, Any],
    min_notice_minutes: int,
    now: datetime,
    n: int,
    horizon_days: int = 28,
    taken: Sequence[tuple[datetime, datetime]] = (),
) -> list[tuple[datetime, datetime]]:
    """The first n free 60-minute slots within the horizon."""
    out: list[tuple[datetime, datetime]] = []
    start = now
    for _ in range(horizon_days // 7):
        end = start + timedelta(days=7)
        out.extend(slots_for(availability, min_notice_minutes, start, end, timedelta(minutes=60), now, taken))
        if len(out) >= n:
            break
        start = end
    return out[:n]
