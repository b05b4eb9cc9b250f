"""Exports through the real app: every dataset (users, bookings, tutors, payments) as CSV and as JSON, cells a
spreadsheet would run (`=`, `+`, `-`, `@`) made literal, each export (and the journal as CSV) recorded as an
Export.Started event in GET /admin/events before it streams, 403 for other roles, 404 for an unknown dataset."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from application.money import Money
from application.settings import Settings
from tests.support.api import API, Actor, ok, problem, signup, staff
from tests.support.world import approve_tutor, grant

pytestmark = pytest.mark.cloned_database

RISKY = ("=HYPERLINK(1)", "+1 555 0100", "-2 minus", "@SUM(A1)")
DATASETS = {
    "users": {"id", "email", "full_name", "role", "is_active", "deleted", "timezone", "language", "currency",
              "registered_at"},
    "tutors": {"id", "full_name", "email", "status", "hourly_amount", "currency", "rating_avg", "rating_count",
               "completeness", "submitted_at"},
    "bookings": {"id", "student_id", "tutor_id", "subject_id", "start_at", "end_at", "duration_minutes", "status",
                 "created_at", "cancelled_by", "refunded_minutes", "forfeited_minutes"},
    "payments": {"entry_id", "position", "recorded_at", "event_type", "description", "amount", "currency"},
}  # fmt: skip


def _head(client: Any) -> str:
    return str(client.app.state["services"].exports.head())


def _export_events(client: Any, admin: Actor) -> list[dict[str, Any]]:
    headers = {**admin.auth, "X-Min-Position": _head(client)}
    r = client.get(f"{API}/admin/events", params={"type": "Export.Started", "limit": 100}, headers=headers)
    items: list[dict[str, Any]] = ok(r)["items"]
    return items


@pytest.fixture
def world(client: Any, prepared: Settings, admin: Actor) -> dict[str, Any]:
    """People with names a spreadsheet would run, an approved tutor, credit bought, one booking."""
    people = [signup(client, "student", full_name=name)[0] for name in RISKY]
    tutor, _ = signup(client, "tutor", full_name="=tutor()")
    subject_id, _ = approve_tutor(prepared, uuid.UUID(tutor.id))
    student = people[0]
    grant(Money(prepared), uuid.UUID(student.id), uuid.UUID(tutor.id), 600, 36000)
    start = (datetime.now(UTC) + timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
    body = {"tutor_id": tutor.id, "subject_id": subject_id, "start": start.isoformat(), "duration_minutes": 60}
    booking = ok(client.post(f"{API}/bookings", json=body, headers=student.auth), 201)
    return {"people": people, "tutor": tutor, "booking": booking}


def test_every_dataset_in_both_formats_is_recorded_before_it_streams(
    client: Any, admin: Actor, world: dict[str, Any]
) -> None:
    head = {"X-Min-Position": _head(client)}
    expected_ids = {
        "users": {p.id for p in world["people"]} | {world["tutor"].id, admin.id},
        "tutors": {world["tutor"].id},
        "bookings": {world["booking"]["id"]},
    }
    for dataset, fields in DATASETS.items():
        r = client.get(f"{API}/admin/exports/{dataset}", params={"format": "csv"}, headers={**admin.auth, **head})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/csv")
        assert f'filename="{dataset}.csv"' in r.headers["content-disposition"]
        assert r.headers["X-Event-Position"].isdigit() and r.headers["X-Projection-Position"].isdigit()
        table = list(csv.DictReader(io.StringIO(r.text, newline="")))
        assert table and set(table[0]) == fields, (dataset, r.text[:300])
        if dataset in expected_ids:
            assert {row["id"] for row in table} == expected_ids[dataset]
        else:
            assert all(int(row["amount"]) > 0 and row["currency"] == "USD" for row in table), table

        r = client.get(f"{API}/admin/exports/{dataset}", params={"format": "json"}, headers={**admin.auth, **head})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), r.text
        rows = json.loads(r.content)
        assert isinstance(rows, list) and rows and all(set(row) == fields for row in rows), rows[:2]
        assert len(rows) == len(table)
        if dataset in expected_ids:
            assert {row["id"] for row in rows} == expected_ids[dataset]

    # each export is an event of its own: who, what, how, when
    events = _export_events(client, admin)
    assert [(e["data"]["dataset"], e["data"]["format"]) for e in events] == [
        (d, f) for d in DATASETS for f in ("csv", "json")
    ]
    for e in events:
        assert (e["actor_id"], e["actor_role"], e["data"]["by"]) == (admin.id, "admin", admin.id)
        assert e["data"]["filters"] == {} and e["data"]["started_at"] and e["recorded_at"]
    assert len({e["aggregate_id"] for e in events}) == len(events)


def test_csv_cells_that_a_spreadsheet_would_run_are_literal(client: Any, admin: Actor, world: dict[str, Any]) -> None:
    r = client.get(f"{API}/admin/exports/users", headers={**admin.auth, "X-Min-Position": _head(client)})
    table = list(csv.reader(io.StringIO(r.text, newline="")))
    names = {row[2] for row in table[1:]}
    for name in RISKY:
        assert "'" + name in names and name not in names, names
    assert "'=tutor()" in names
    for row in table:
        assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in row), row
    tutors = client.get(f"{API}/admin/exports/tutors", headers={**admin.auth, "X-Min-Position": _head(client)})
    assert "'=tutor()" in tutors.text and ",=tutor()" not in tutors.text
    # JSON keeps the text as it is
    rows = json.loads(client.get(f"{API}/admin/exports/users?format=json", headers=admin.auth).content)
    assert set(RISKY) <= {row["full_name"] for row in rows}


def test_the_journal_as_csv_is_recorded_with_its_filters(
    client: Any, prepared: Settings, admin: Actor, world: dict[str, Any]
) -> None:
    finance = staff(client, prepared, "finance")
    window = {"from": "2020-01-01T00:00:00Z", "to": "2040-01-01T00:00:00Z"}
    r = client.get(f"{API}/finance/journal", params={"format": "csv", **window}, headers=finance.auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
    assert r.headers["X-Event-Position"].isdigit()
    assert len(list(csv.reader(io.StringIO(r.text)))) > 1
    ok(client.get(f"{API}/finance/journal", params={"format": "json"}, headers=finance.auth))  # a query, not recorded
    events = _export_events(client, admin)
    assert [(e["data"]["dataset"], e["data"]["format"], e["data"]["filters"]) for e in events] == [
        ("journal", "csv", window)
    ]
    assert (events[0]["actor_id"], events[0]["actor_role"]) == (finance.id, "finance")


def test_who_may_export(client: Any, prepared: Settings, admin: Actor, student: Actor, tutor: Actor) -> None:
    finance = staff(client, prepared, "finance")
    for actor in (student, tutor, finance):
        problem(client.get(f"{API}/admin/exports/users", headers=actor.auth), 403, "forbidden")
    for actor in (student, tutor):
        problem(client.get(f"{API}/finance/journal", params={"format": "csv"}, headers=actor.auth), 403, "forbidden")
    problem(client.get(f"{API}/admin/exports/users"), 401)
    problem(client.get(f"{API}/admin/exports/grades", headers=admin.auth), 404, "not-found")
    problem(client.get(f"{API}/admin/exports/users", params={"format": "xml"}, headers=admin.auth), (400, 422))
    # refused exports are not recorded
    assert _export_events(client, admin) == []
