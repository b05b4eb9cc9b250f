"""tutors: the approval queue, each tutor's documents, and public search over listed tutors (approved, with an open
account)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from domain.booking import Booking
from domain.subject import Subject
from domain.tutor import TutorProfile, completeness_of
from domain.user import User
from projections.runner import Envelope, FoldedProjection, by_type, load_rows, replace_rows, topic_of
from projections.schedule import cover_literal

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


Row = dict[str, Any]
SUBJECT_CHANGES = ("Subject.Renamed", "Subject.Recategorised", "Subject.Retired", "Subject.Restored")


class TutorBatch:
    """The rows one batch touches, read with one SELECT per table (runner.load_rows); the handlers (HANDLERS) apply
    the events to them in memory, one event each, in order, and `write` puts them back."""

    def __init__(self, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        self.cur, self.t = cur, t
        new_people = {e.aggregate_id for e in events if e.type == "User.Registered"}
        named = {e.aggregate_id for e in events if e.type == "User.ProfileUpdated" and "full_name" in e.data["changes"]}
        created = {e.aggregate_id for e in events if e.type == "TutorProfile.Created"}
        creators = {UUID(str(e.data["tutor_id"])) for e in events if e.type == "TutorProfile.Created"}
        profiles = {e.aggregate_id for e in events if e.type.startswith("TutorProfile.")} - created
        reviewed = {UUID(str(e.data["tutor_id"])) for e in events if e.type == "Booking.Reviewed"}
        new_names = {e.aggregate_id for e in events if e.type == "Subject.Created"}
        changed_names = {e.aggregate_id for e in events if e.type in SUBJECT_CHANGES}

        self.people = load_rows(cur, t["tutors_people"], PEOPLE_COLUMNS, (named | creators) - new_people)
        self.stored_people = set(self.people)
        self.names = load_rows(cur, t["tutors_subject_names"], NAME_COLUMNS, changed_names - new_names)
        self.stored_names = set(self.names)
        self.by_profile = load_rows(cur, t["tutors"], TUTOR_COLUMNS, profiles, key="profile_id")
        self.by_tutor = {r["tutor_id"]: r for r in self.by_profile.values()}
        for r in load_rows(cur, t["tutors"], TUTOR_COLUMNS, (named | reviewed) - set(self.by_tutor)).values():
            self.by_profile[r["profile_id"]] = self.by_tutor[r["tutor_id"]] = r
        self.stored_tutors = set(self.by_profile)
        self.touched: set[UUID] = set()  # profiles whose completeness is to be recomputed
        self.renamed: set[UUID] = set()

    def reviewed(self, e: Envelope) -> None:
        if (row := self.by_tutor.get(UUID(str(e.data["tutor_id"])))) is not None:
            row["rating_sum"] += e.data["rating"]
            row["rating_count"] += 1
            row["rating_avg"] = row["rating_sum"] / row["rating_count"]

    def registered(self, e: Envelope) -> None:
        d = e.data
        self.people[e.aggregate_id] = {"user_id": e.aggregate_id, "full_name": d["full_name"], "email": d["email"]}

    def profile_updated(self, e: Envelope) -> None:
        changes = e.data["changes"]
        if "full_name" not in changes:
            return
        if (person := self.people.get(e.aggregate_id)) is not None:
            person["full_name"] = changes["full_name"]
        if (row := self.by_tutor.get(e.aggregate_id)) is not None:
            row["full_name"] = changes["full_name"]
            self.touched.add(row["profile_id"])

    def subject_created(self, e: Envelope) -> None:
        d = e.data
        self.names[e.aggregate_id] = {
            "subject_id": e.aggregate_id,
            "name": d["name"],
            "category": d["category"],
            "active": True,
        }

    def subject_renamed(self, e: Envelope) -> None:
        if (subject := self.names.get(e.aggregate_id)) is not None:
            subject["name"] = e.data["name"]
        self.renamed.add(e.aggregate_id)

    def subject_recategorised(self, e: Envelope) -> None:
        if (subject := self.names.get(e.aggregate_id)) is not None:
            subject["category"] = e.data["category"]
        self.renamed.add(e.aggregate_id)  # the category is in the search vector and the public subjects too

    def subject_retired(self, e: Envelope) -> None:
        if (subject := self.names.get(e.aggregate_id)) is not None:
            subject["active"] = False

    def subject_restored(self, e: Envelope) -> None:
        if (subject := self.names.get(e.aggregate_id)) is not None:
            subject["active"] = True

    def tutor_created(self, e: Envelope) -> None:
        tutor_id = UUID(str(e.data["tutor_id"]))
        person = self.people.get(tutor_id) or {}
        row = _new_tutor(tutor_id, e.aggregate_id, person.get("full_name", ""), person.get("email", ""), e.position)
        self.by_profile[e.aggregate_id] = self.by_tutor[tutor_id] = row
        self.touched.add(e.aggregate_id)

    def write(self) -> None:
        """Completeness of the touched tutors, every row back (one DELETE and one COPY per table), then the columns
        made from the subject names and the term index."""
        for pid in self.touched:
            r = self.by_profile[pid]
            rate = {"amount": r["hourly_amount"], "currency": r["currency"]} if r["hourly_amount"] is not None else None
            r["completeness"] = completeness_of(
                {"bio": r["bio"]},
                r["experience"] or {},
                r["subject_ids"] or [],
                rate,
                r["availability"] or {},
                (d.get("status") for d in r["documents"] or ()),
            )
        if self.people:
            replace_rows(self.cur, self.t["tutors_people"], PEOPLE_COLUMNS, self.people.values(), self.stored_people)
        if self.names:
            replace_rows(self.cur, self.t["tutors_subject_names"], NAME_COLUMNS, self.names.values(), self.stored_names)
        if self.by_profile:
            out = (
                {
                    **r,
                    **{c: Jsonb(r[c]) for c in JSON_COLUMNS},
                    "hour_starts_utc": cover_literal(r["availability"]),
                    "availability_text": _encode_json(r["availability"] or {}).decode(),
                    "has_openings": bool((r["availability"] or {}).get("openings")),
                }
                for r in self.by_profile.values()
            )
            replace_rows(self.cur, self.t["tutors"], TUTOR_COLUMNS, out, self.stored_tutors, key="profile_id")
        if (self.by_profile or self.renamed) and (changed := self._search_columns()):
            self._terms(changed)

    def _search_columns(self) -> list[UUID]:
        """The columns made from the subject names: the search vector and the public subjects (JSON text that
        search splices into its response as is, in the tutor's order), for every row written back (COPY wrote them
        as their defaults) and every tutor teaching a renamed subject. The same statement keeps the narrow
        `tutors_search` (listed tutors' vectors) in step with the rows it updates: a row that is not listed leaves
        it, a listed one is upserted where its vector changed (so a review, which rewrites its tutor's row, does
        not rewrite this one). Returns the tutors whose entry changed."""
        tutors_t, names_t, search_t = self.t["tutors"], self.t["tutors_subject_names"], self.t["tutors_search"]
        changed = self.cur.execute(
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
            (list(self.by_profile), list(self.renamed)),
        ).fetchall()
        return [r[0] for r in changed]

    def _terms(self, ids: list[UUID]) -> None:
        """The term index of these tutors (`tutors_terms`): each plain word of the vector with the rank a search for
        that word alone gives it, so that such a search reads its page from an index in rank order instead of
        ranking every match. The rank is computed by the same ts_rank on the same vector and query as search's, so
        both agree to the bit."""
        terms_t, search_t = self.t["tutors_terms"], self.t["tutors_search"]
        self.cur.execute(f"DELETE FROM {terms_t} WHERE tutor_id = ANY(%s)", (ids,))
        self.cur.execute(
            f"INSERT INTO {terms_t} (lexeme, tutor_id, rank) SELECT w.lexeme, s.tutor_id,"
            " ts_rank(s.search, to_tsquery('simple', w.lexeme))"
            f" FROM {search_t} s, unnest(s.search) w WHERE s.tutor_id = ANY(%s) AND w.lexeme ~ '{TERM_RE}'",
            (ids,),
        )


def _new_tutor(tutor_id: UUID, profile_id: UUID, full_name: str, email: str, position: int) -> Row:
    """A tutor's row as TutorProfile.Created leaves it: a draft with nothing filled in."""
    return {
        "tutor_id": tutor_id,
        "profile_id": profile_id,
        "full_name": full_name,
        "email": email,
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
        "updated_position": position,
    }


def _profile(change: Callable[[Row, dict[str, Any]], None]) -> Callable[[TutorBatch, Envelope], None]:
    """The handler of a TutorProfile event (other than Created): `change` its row, if the batch has it."""

    def handle(batch: TutorBatch, e: Envelope) -> None:
        if (row := batch.by_profile.get(e.aggregate_id)) is not None:
            change(row, e.data)
            row["updated_position"] = e.position
            batch.touched.add(e.aggregate_id)

    return handle


def _personal_set(row: Row, d: dict[str, Any]) -> None:
    p = d["personal"]
    row.update(bio=p["bio"], location=p["location"], languages=p["languages"])


def _teaching_set(row: Row, d: dict[str, Any]) -> None:
    rate = d["hourly_rate"] or {}
    row.update(
        subject_ids=[UUID(str(s)) for s in d["subjects"]],
        hourly_amount=rate.get("amount"),
        currency=rate.get("currency"),
    )


def _document_requested(row: Row, d: dict[str, Any]) -> None:
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


def _document_uploaded(row: Row, d: dict[str, Any]) -> None:
    patch = {"status": "uploaded", "size": d["size"], "uploaded_at": d["uploaded_at"]}
    if d.get("key"):  # the checked copy (events before checked copies carry none: the upload key stays)
        patch["key"] = d["key"]
    row["documents"] = [{**x, **patch} if x.get("id") == d["document_id"] else x for x in row["documents"]]


def _document_verified(row: Row, d: dict[str, Any]) -> None:
    patch = {"verified_at": d["verified_at"], "verified_by": d["verified_by"]}
    row["documents"] = [{**x, **patch} if x.get("id") == d["document_id"] else x for x in row["documents"]]


# What each event the projection reads does to the batch's rows; `topics` is these classes.
ON_EVENT: dict[type, Callable[[TutorBatch, Envelope], None]] = {
    Booking.Reviewed: TutorBatch.reviewed,
    User.Registered: TutorBatch.registered,
    User.ProfileUpdated: TutorBatch.profile_updated,
    Subject.Created: TutorBatch.subject_created,
    Subject.Renamed: TutorBatch.subject_renamed,
    Subject.Recategorised: TutorBatch.subject_recategorised,
    Subject.Retired: TutorBatch.subject_retired,
    Subject.Restored: TutorBatch.subject_restored,
    TutorProfile.Created: TutorBatch.tutor_created,
    TutorProfile.PersonalSet: _profile(_personal_set),
    TutorProfile.ExperienceSet: _profile(lambda row, d: row.update(experience=d["experience"])),
    TutorProfile.TeachingSet: _profile(_teaching_set),
    TutorProfile.AvailabilitySet: _profile(lambda row, d: row.update(availability=d["availability"])),
    TutorProfile.PreferencesSet: _profile(
        lambda row, d: row.update(auto_confirm=d["auto_confirm"], min_notice_minutes=d["min_notice_minutes"])
    ),
    TutorProfile.DocumentRequested: _profile(_document_requested),
    TutorProfile.DocumentUploaded: _profile(_document_uploaded),
    TutorProfile.DocumentVerified: _profile(_document_verified),
    TutorProfile.Submitted: _profile(
        lambda row, d: row.update(status="pending_approval", submitted_at=d["submitted_at"])
    ),
    TutorProfile.Approved: _profile(lambda row, d: row.update(status="approved", feedback=None)),
    TutorProfile.Rejected: _profile(lambda row, d: row.update(status="rejected", feedback=d["feedback"])),
    TutorProfile.Suspended: _profile(lambda row, d: row.update(status="suspended")),
    TutorProfile.Reinstated: _profile(lambda row, d: row.update(status="approved")),
    TutorProfile.AccountClosed: _profile(lambda row, d: row.update(account_open=False)),
    TutorProfile.AccountReopened: _profile(lambda row, d: row.update(account_open=True)),
}
HANDLERS = by_type(ON_EVENT)


class Tutors(FoldedProjection):
    """One row per tutor, folded per batch in memory (TutorBatch, runner.load_rows / replace_rows): the rows a batch
    touches are read with one SELECT per table, the events applied in order by the handler of their type
    (ON_EVENT), and written back with one DELETE and one COPY; completeness is computed in Python, the search
    vector and public subjects by one UPDATE of the rows written, which also keeps `tutors_search` (the listed
    tutors' vectors) in step; `tutors_terms` is rewritten for the tutors whose vector changed."""

    name = "tutors"
    version = 9
    tables = ("tutors", "tutors_people", "tutors_subject_names", "tutors_search", "tutors_terms")
    topics = tuple(topic_of(c) for c in ON_EVENT)
    fold = TutorBatch
    handlers = HANDLERS


def term_of(q: str) -> str | None:
    """The lexeme that a full-text query of one plain word (ASCII letters, TERM_RE once lowercased) is made of, as
    `websearch_to_tsquery('simple', q)` makes it; None for anything else (several words, operators, digits,
    other scripts), which search ranks from the vectors instead."""
    word = q.strip()
    return word.lower() if _PLAIN_WORD.fullmatch(word) else None
