"""The notifications projection announces each submitted tutor profile to the admins of that moment (the user events
it folds: registrations, role changes, deactivation, reactivation, deletion, renames): who hears of it and the
tutor's name, and the same rows whether the events come in one batch, in chunks or one at a time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.settings import Settings
from projections.notifications import Notifications
from projections.runner import Envelope
from tests.platform.projections.support import snapshot

pytestmark = pytest.mark.small_pool

T0 = datetime(2031, 1, 1, tzinfo=UTC)
META = {"recorded_at": T0.isoformat()}
PEOPLE = tuple(uuid.uuid4() for _ in range(4))
TUTOR, PROFILE = uuid.uuid4(), uuid.uuid4()


class Log:
    """Envelopes numbered as the log numbers them."""

    def __init__(self) -> None:
        self.events: list[Envelope] = []

    def add(self, aggregate_id: UUID, kind: str, data: dict[str, Any]) -> Log:
        position = len(self.events) + 1
        self.events.append(Envelope(position, aggregate_id, 1, f"domain.x:{kind}", kind, data, META))
        return self


def registered(log: Log, user: UUID, role: str, name: str = "Some One") -> Log:
    return log.add(user, "User.Registered", {"email": f"{user}@x.test", "full_name": name, "role": role})


def _tables(projection: Notifications, tag: str) -> dict[str, str]:
    return {t: f"sn_{tag}_{t}" for t in projection.tables}


def _apply(dsn: str, chunks: list[list[Envelope]]) -> dict[str, str]:
    projection = Notifications()
    names = _tables(projection, uuid.uuid4().hex[:8])
    with psycopg.connect(dsn) as conn:
        conn.execute(projection.ddl(names))
        with conn.cursor() as cur:
            for chunk in chunks:
                projection.apply(cur, chunk, names)
        conn.commit()
    return names


def _notices(dsn: str, names: dict[str, str]) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f"SELECT position, user_id, type, data FROM {names['notifications']} ORDER BY position, user_id"
        ).fetchall()


def test_the_admins_of_the_moment_hear_of_a_submission_with_the_tutors_name(prepared: Settings) -> None:
    a, b, c, d = PEOPLE
    log = Log()
    registered(log, a, "admin")
    registered(log, b, "admin")
    registered(log, c, "student")
    registered(log, d, "admin")
    registered(log, TUTOR, "tutor", "Ada Byron")
    log.add(TUTOR, "User.ProfileUpdated", {"changes": {"full_name": "Ada Lovelace"}})
    log.add(c, "User.RoleChanged", {"role": "admin", "previous": "student"})
    log.add(b, "User.Deactivated", {})
    log.add(d, "User.Deleted", {})
    log.add(PROFILE, "TutorProfile.Created", {"tutor_id": str(TUTOR)})
    first = len(log.events) + 1
    log.add(PROFILE, "TutorProfile.Submitted", {"submitted_at": T0.isoformat(), "completeness": 80})
    # later changes do not touch the first notice; the second submission goes to the admins of its moment
    log.add(b, "User.Reactivated", {})
    log.add(a, "User.RoleChanged", {"role": "finance", "previous": "admin"})
    second = len(log.events) + 1
    log.add(PROFILE, "TutorProfile.Submitted", {"submitted_at": T0.isoformat(), "completeness": 100})

    names = _apply(prepared.database_url, [log.events])
    data = {"tutor_id": str(TUTOR), "name": "Ada Lovelace"}
    assert _notices(prepared.database_url, names) == sorted(
        [
            (first, a, "tutor.submitted", data),
            (first, c, "tutor.submitted", data),
            (second, b, "tutor.submitted", data),
            (second, c, "tutor.submitted", data),
        ]
    )


USER_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("User.RoleChanged"), st.sampled_from(PEOPLE), st.sampled_from(("admin", "student"))),
        st.tuples(st.sampled_from(("User.Deactivated", "User.Reactivated")), st.sampled_from(PEOPLE), st.just("")),
        st.tuples(st.just("User.ProfileUpdated"), st.sampled_from((*PEOPLE, TUTOR)), st.sampled_from(("X", "Y"))),
        st.tuples(st.just("TutorProfile.Submitted"), st.just(PROFILE), st.just("")),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=USER_STEPS, cut=st.integers(1, 5), born=st.integers(0, 4))
def test_one_batch_chunks_and_one_event_at_a_time_leave_the_same_rows(
    prepared: Settings, steps: list[tuple[str, UUID, str]], cut: int, born: int
) -> None:
    log = Log()
    for i, person in enumerate(PEOPLE):
        registered(log, person, "admin" if i % 2 else "student")
    registered(log, TUTOR, "tutor", "Tu Tor")
    log.add(PROFILE, "TutorProfile.Created", {"tutor_id": str(TUTOR)})
    for kind, who, value in steps:
        if kind == "User.RoleChanged":
            log.add(who, kind, {"role": value, "previous": ""})
        elif kind == "User.ProfileUpdated":
            log.add(who, kind, {"changes": {"full_name": value}})
        elif kind == "TutorProfile.Submitted":
            log.add(who, kind, {"submitted_at": T0.isoformat(), "completeness": 80})
        else:
            log.add(who, kind, {})
    events = log.events
    dsn = prepared.database_url
    # the users and the profile are born in the first batch or in earlier ones
    alone = _apply(dsn, [[e] for e in events])
    together = _apply(dsn, [events[:born], events[born:]] if born else [events])
    chunked = _apply(dsn, [events[k : k + cut] for k in range(0, len(events), cut)])
    for table in alone:
        expected = snapshot(dsn, alone[table])
        assert snapshot(dsn, together[table]) == expected, table
        assert snapshot(dsn, chunked[table]) == expected, table
