"""tutors: the approval queue, each tutor's documents, and public search over listed tutors (approved, with an open
account)."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from domain.availability import WeeklyRule, by_weekday, day_available, parse_rules, slots, start_cover
from domain.booking import Booking
from domain.subject import Subject
from domain.tutor import TutorProfile, completeness_of
from domain.user import User
from projections.runner import Envelope, Projection, load_rows, replace_rows, topic_of

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
    TutorProfile.AccountClosed,
    TutorProfile.AccountReopened,
)


TUTOR_COLUMNS = (
    "tutor_id",
    "profile_id",
    "full_name",
    "email",
    "status",
    "feedback",
    "bio",
    "location",
    "languages",
    "experience",
    "subject_ids",
    "hourly_amount",
    "currency",
    "availability",
    "auto_confirm",
    "min_notice_minutes",
    "account_open",
    "documents",
    "completeness",
    "submitted_at",
    "rating_sum",
    "rating_count",
    "rating_avg",
    "hour_starts_utc",
    "has_openings",
    "availability_text",
    "updated_position",
)
JSON_COLUMNS = ("experience", "availability", "documents")
_encode_json = msgspec.json.Encoder().encode
# The words `tutors_terms` indexes, and that search looks up there: plain ASCII letters, which the 'simple' text
# search configuration keeps as one lowercase lexeme each (`term_of`).
TERM_RE = "^[a-z]{1,100}$"
_PLAIN_WORD = re.compile("[A-Za-z]{1,100}")  # a query `term_of` reads as one TERM_RE lexeme
PEOPLE_COLUMNS = ("user_id", "full_name", "email")
NAME_COLUMNS = ("subject_id", "name", "category", "active")


class Tutors(Projection):
    """One row per tutor, folded per batch in memory (runner.load_rows / replace_rows): the rows a batch touches
    are read with one SELECT per table, the events applied in order, and written back with one DELETE and one
    COPY; completeness is computed in Python, the search vector and public subjects by one UPDATE of the rows
    written, which also keeps `tutors_search` (the listed tutors' vectors) in step; `tutors_terms` is rewritten for
    the tutors whose vector changed."""

    name = "tutors"
    version = 9
    tables = ("tutors", "tutors_people", "tutors_subject_names", "tutors_search", "tutors_terms")
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
        tutors_t, people_t, names_t, search_t, terms_t = (
            t["tutors"],
            t["tutors_people"],
            t["tutors_subject_names"],
            t["tutors_search"],
            t["tutors_terms"],
        )
        # 1. What the batch touches, so that each table is read once.
        new_people = {e.aggregate_id for e in events if e.type == "User.Registered"}
        named = {e.aggregate_id for e in events if e.type == "User.ProfileUpdated" and "full_name" in e.data["changes"]}
        created = {e.aggregate_id for e in events if e.type == "TutorProfile.Created"}
        creators = {UUID(str(e.data["tutor_id"])) for e in events if e.type == "TutorProfile.Created"}
        profiles = {e.aggregate_id for e in events if e.type.startswith("TutorProfile.")} - created
        reviewed = {UUID(str(e.data["tutor_id"])) for e in events if e.type == "Booking.Reviewed"}
        new_names = {e.aggregate_id for e in events if e.type == "Subject.Created"}
        changed_names = {e.aggregate_id for e in events if e.type in ("Subject.Renamed", "Subject.Retired")}

        people = load_rows(cur, people_t, PEOPLE_COLUMNS, (named | creators) - new_people)
        stored_people = set(people)
        names = load_rows(cur, names_t, NAME_COLUMNS, changed_names - new_names)
        stored_names = set(names)
        by_profile = load_rows(cur, tutors_t, TUTOR_COLUMNS, profiles, key="profile_id")
        by_tutor = {r["tutor_id"]: r for r in by_profile.values()}
        missing = (named | reviewed) - set(by_tutor)
        for r in load_rows(cur, tutors_t, TUTOR_COLUMNS, missing).values():
            by_profile[r["profile_id"]] = r
            by_tutor[r["tutor_id"]] = r
        stored_tutors = set(by_profile)
        touched: set[UUID] = set()  # profiles whose completeness is to be recomputed
        renamed: set[UUID] = set()

        # 2. The events, in order, on the rows in memory.
        for e in events:
            d, aid, kind = e.data, e.aggregate_id, e.type
            if kind == "Booking.Reviewed":
                row = by_tutor.get(UUID(str(d["tutor_id"])))
                if row is not None:
                    row["rating_sum"] += d["rating"]
                    row["rating_count"] += 1
                    row["rating_avg"] = row["rating_sum"] / row["rating_count"]
            elif kind == "User.Registered":
                people[aid] = {"user_id": aid, "full_name": d["full_name"], "email": d["email"]}
            elif kind == "User.ProfileUpdated":
                if "full_name" not in d["changes"]:
                    continue
                if aid in people:
                    people[aid]["full_name"] = d["changes"]["full_name"]
                row = by_tutor.get(aid)
                if row is not None:
                    row["full_name"] = d["changes"]["full_name"]
                    touched.add(row["profile_id"])
            elif kind == "Subject.Created":
                names[aid] = {"subject_id": aid, "name": d["name"], "category": d["category"], "active": True}
            elif kind == "Subject.Renamed":
                if aid in names:
                    names[aid]["name"] = d["name"]
                renamed.add(aid)
            elif kind == "Subject.Retired":
                if aid in names:
                    names[aid]["active"] = False
            elif kind == "TutorProfile.Created":
                tutor_id = UUID(str(d["tutor_id"]))
                person = people.get(tutor_id) or {}
                row = {
                    "tutor_id": tutor_id,
                    "profile_id": aid,
                    "full_name": person.get("full_name", ""),
                    "email": person.get("email", ""),
                    "status": "draft",
                    "feedback": None,
                    "bio": "",
                    "location": "",
                    "languages": [],
                    "experience": {},
                    "subject_ids": [],
                    "hourly_amount": None,
                    "currency": None,
                    "availability": {"timezone": None, "weekly": [], "blocks": [], "openings": []},
                    "auto_confirm": False,
                    "min_notice_minutes": 0,
                    "account_open": True,
                    "documents": [],
                    "completeness": 0,
                    "submitted_at": None,
                    "rating_sum": 0,
                    "rating_count": 0,
                    "rating_avg": None,
                    "updated_position": e.position,
                }
                by_profile[aid] = by_tutor[tutor_id] = row
                touched.add(aid)
            else:
                row = by_profile.get(aid)
                if row is not None:
                    _profile_event(row, e)
                    touched.add(aid)

        # 3. Completeness of the touched tutors, then everything back.
        for pid in touched:
            r = by_profile[pid]
            rate = {"amount": r["hourly_amount"], "currency": r["currency"]} if r["hourly_amount"] is not None else None
            r["completeness"] = completeness_of(
                {"bio": r["bio"]},
                r["experience"] or {},
                r["subject_ids"] or [],
                rate,
                r["availability"] or {},
                r["documents"] or [],
            )
        if people:
            replace_rows(cur, people_t, PEOPLE_COLUMNS, people.values(), stored_people)
        if names:
            replace_rows(cur, names_t, NAME_COLUMNS, names.values(), stored_names)
        if by_profile:
            out = (
                {
                    **r,
                    **{c: Jsonb(r[c]) for c in JSON_COLUMNS},
                    "hour_starts_utc": cover_literal(r["availability"]),
                    "availability_text": _encode_json(r["availability"] or {}).decode(),
                    "has_openings": bool((r["availability"] or {}).get("openings")),
                }
                for r in by_profile.values()
            )
            replace_rows(cur, tutors_t, TUTOR_COLUMNS, out, stored_tutors, key="profile_id")
        # 4. The columns made from the subject names: the search vector and the public subjects (JSON text that
        # search splices into its response as is, in the tutor's order), for every row written back above (COPY
        # wrote them as their defaults) and every tutor teaching a renamed subject. The same statement keeps the
        # narrow `tutors_search` (listed tutors' vectors) in step with the rows it updates: a row that is not
        # listed leaves it, a listed one is upserted where its vector changed (so a review, which rewrites
        # its tutor's row above, does not rewrite this one). It returns the tutors whose entry changed.
        if by_profile or renamed:
            changed = cur.execute(
                f"WITH u AS (UPDATE {tutors_t} t SET search = to_tsvector('simple', t.full_name || ' ' || t.bio"
                f" || ' ' || array_to_string(t.languages, ' ') || ' ' || coalesce((SELECT string_agg(n.name || ' '"
                f" || n.category, ' ') FROM {names_t} n WHERE n.subject_id = ANY(t.subject_ids)), '')),"
                " subjects_json = (SELECT coalesce(jsonb_agg(jsonb_build_object('id', n.subject_id, 'name', n.name,"
                " 'category', n.category) ORDER BY array_position(t.subject_ids, n.subject_id)), '[]')::text"
                f" FROM {names_t} n WHERE n.subject_id = ANY(t.subject_ids))"
                " WHERE t.profile_id = ANY(%s) OR t.subject_ids && %s::uuid[] RETURNING t.tutor_id, t.listed, t.search),"
                f" gone AS (DELETE FROM {search_t} s USING u WHERE s.tutor_id = u.tutor_id AND NOT u.listed"
                " RETURNING s.tutor_id),"
                f" kept AS (INSERT INTO {search_t} (tutor_id, search) SELECT tutor_id, search FROM u"
                f" WHERE listed ON CONFLICT (tutor_id) DO UPDATE SET search = excluded.search"
                f" WHERE {search_t}.search <> excluded.search RETURNING {search_t}.tutor_id)"
                " SELECT tutor_id FROM gone UNION ALL SELECT tutor_id FROM kept",
                (list(by_profile), list(renamed)),
            ).fetchall()
            # 5. The term index of those tutors (`tutors_terms`): each plain word of the vector with the rank a
            # search for that word alone gives it, so that such a search reads its page from an index in rank
            # order instead of ranking every match. The rank is computed by the same ts_rank on the same vector
            # and query as search's, so both agree to the bit.
            if changed:
                ids = [r[0] for r in changed]
                cur.execute(f"DELETE FROM {terms_t} WHERE tutor_id = ANY(%s)", (ids,))
                cur.execute(
                    f"INSERT INTO {terms_t} (lexeme, tutor_id, rank) SELECT w.lexeme, s.tutor_id,"
                    " ts_rank(s.search, to_tsquery('simple', w.lexeme))"
                    f" FROM {search_t} s, unnest(s.search) w WHERE s.tutor_id = ANY(%s) AND w.lexeme ~ '{TERM_RE}'",
                    (ids,),
                )


def term_of(q: str) -> str | None:
    """The lexeme that a full-text query of one plain word (ASCII letters, TERM_RE once lowercased) is made of, as
    `websearch_to_tsquery('simple', q)` makes it; None for anything else (several words, operators, digits,
    other scripts), which search ranks from the vectors instead."""
    word = q.strip()
    return word.lower() if _PLAIN_WORD.fullmatch(word) else None


def _profile_event(row: dict[str, Any], e: Envelope) -> None:
    """Apply one TutorProfile event (other than Created) to its row in memory."""
    d, kind = e.data, e.type
    if kind == "TutorProfile.PersonalSet":
        p = d["personal"]
        row.update(bio=p["bio"], location=p["location"], languages=p["languages"])
    elif kind == "TutorProfile.ExperienceSet":
        row["experience"] = d["experience"]
    elif kind == "TutorProfile.TeachingSet":
        rate = d["hourly_rate"] or {}
        row.update(
            subject_ids=[UUID(str(s)) for s in d["subjects"]],
            hourly_amount=rate.get("amount"),
            currency=rate.get("currency"),
        )
    elif kind == "TutorProfile.AvailabilitySet":
        row["availability"] = d["availability"]
    elif kind == "TutorProfile.PreferencesSet":
        row.update(auto_confirm=d["auto_confirm"], min_notice_minutes=d["min_notice_minutes"])
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
        row["documents"] = [*row["documents"], doc]
    elif kind == "TutorProfile.DocumentUploaded":
        patch = {"status": "uploaded", "size": d["size"], "uploaded_at": d["uploaded_at"]}
        if d.get("key"):  # the checked copy (events before checked copies carry none: the upload key stays)
            patch["key"] = d["key"]
        row["documents"] = [{**x, **patch} if x.get("id") == d["document_id"] else x for x in row["documents"]]
    elif kind == "TutorProfile.Submitted":
        row.update(status="pending_approval", submitted_at=d["submitted_at"])
    elif kind == "TutorProfile.Approved":
        row.update(status="approved", feedback=None)
    elif kind == "TutorProfile.Rejected":
        row.update(status="rejected", feedback=d["feedback"])
    elif kind == "TutorProfile.Suspended":
        row["status"] = "suspended"
    elif kind == "TutorProfile.Reinstated":
        row["status"] = "approved"
    elif kind == "TutorProfile.AccountClosed":
        row["account_open"] = False
    elif kind == "TutorProfile.AccountReopened":
        row["account_open"] = True
    else:
        return
    row["updated_position"] = e.position


def cover_literal(availability: dict[str, Any]) -> str:
    """The int4multirange of UTC minutes-of-week at which the weekly rules can start a one-hour lesson (a superset:
    domain start_cover)."""
    zone = availability.get("timezone")
    if not zone:
        return "{}"
    return "{" + ",".join(f"[{a},{b})" for a, b in start_cover(_weekly(availability), zone, 60)) + "}"


def _weekly(availability: dict[str, Any]) -> tuple[WeeklyRule, ...]:
    return _rules(tuple((r["weekday"], r["start"], r["end"]) for r in availability.get("weekly") or ()))


@functools.lru_cache(maxsize=16384)
def _rules(weekly: tuple[tuple[int, str, str], ...]) -> tuple[WeeklyRule, ...]:
    """Parsed weekly rules, cached: search parses the rules of hundreds of tutors per page, and they rarely change."""
    return parse_rules([{"weekday": w, "start": a, "end": b} for w, a, b in weekly])


def _iv(raw: list[dict[str, str]]) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromisoformat(x["start"]), datetime.fromisoformat(x["end"])) for x in raw or []]


DAYS_KEPT = 120


@dataclass(frozen=True, slots=True)
class Schedule:
    """A tutor's stored availability, parsed once (search keeps one per tutor row version: api.tutors.schedule_of),
    with the UTC intervals of the local days it has been asked about (`days`, see domain day_rule_intervals)."""

    zone: ZoneInfo
    by_day: tuple[tuple[tuple[int, int], ...], ...]
    openings: tuple[tuple[datetime, datetime], ...]
    blocks: tuple[tuple[datetime, datetime], ...]
    days: dict[date, tuple[tuple[datetime, datetime], ...]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, availability: dict[str, Any]) -> Schedule:
        zone = availability.get("timezone")
        return cls(
            ZoneInfo(zone or "UTC"),
            by_weekday(_weekly(availability) if zone else ()),
            tuple(_iv(availability.get("openings", []))),
            tuple(_iv(availability.get("blocks", []))),
        )

    def free(self, frm: datetime, to: datetime) -> list[tuple[datetime, datetime]]:
        """domain `available` of this schedule."""
        if len(self.days) > DAYS_KEPT:  # bounded: a long-lived schedule is asked about new dates as time passes
            self.days.clear()
        return day_available(self.by_day, self.zone, self.openings, self.blocks, frm, to, self.days)


def slots_for(
    availability: dict[str, Any] | Schedule,
    min_notice_minutes: int,
    frm: datetime,
    to: datetime,
    duration: timedelta,
    now: datetime,
    taken: Sequence[tuple[datetime, datetime]] = (),
    limit: int | None = None,
) -> list[tuple[datetime, datetime]]:
    """Bookable slots of a tutor row: weekly rules in its zone + openings - blocks, after the notice period (the
    first `limit` of them when given)."""
    earliest = max(frm, now + timedelta(minutes=min_notice_minutes))
    if earliest >= to:
        return []
    schedule = availability if isinstance(availability, Schedule) else Schedule.of(availability)
    return slots(schedule.free(earliest, to + duration), duration, earliest, to, taken, limit)


def next_slots(
    availability: dict[str, Any] | Schedule,
    min_notice_minutes: int,
    now: datetime,
    n: int,
    horizon_days: int = 28,
    taken: Sequence[tuple[datetime, datetime]] = (),
) -> list[tuple[datetime, datetime]]:
    """The first n free 60-minute slots within the horizon."""
    out: list[tuple[datetime, datetime]] = []
    start = now
    if not isinstance(availability, Schedule):
        availability = Schedule.of(availability)
    for _ in range(horizon_days // 7):
        end = start + timedelta(days=7)
        out.extend(
            slots_for(availability, min_notice_minutes, start, end, timedelta(minutes=60), now, taken, n - len(out))
        )
        if len(out) >= n:
            break
        start = end
    return out[:n]
