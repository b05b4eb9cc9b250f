"""Messages reach people who are not online: a message makes a `message.created` notification for the recipient,
one per thread until they read it (the notification, or the thread), never with a masked body; the WebSocket
sends it as `notification.created`; the batched fold leaves the same rows as one event at a time."""

from __future__ import annotations

import json
import queue
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import uuid5

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from application.settings import Settings
from domain.ids import NAMESPACE
from projections.notifications import Notifications
from projections.runner import Envelope
from tests.platform.projections.support import assert_batches_agree
from tests.support.api import bearer, register

API = "/api/v1"


def _after(r: Any) -> dict[str, str]:
    return {"X-Min-Position": r.headers["X-Event-Position"]}


def _messages(client: TestClient[Any], who: dict[str, Any], r: Any) -> list[dict[str, Any]]:
    """`who`'s message.created notifications, newest first, as of command response `r`."""
    got = client.get(f"{API}/notifications", headers={**bearer(who), **_after(r)})
    assert got.status_code == 200, got.text
    return [n for n in got.json()["items"] if n["type"] == "message.created"]


def _pair(client: TestClient[Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    a = register(client, "student", full_name="Ann Sender")
    b = register(client, "tutor", full_name="Bob Reader")
    r = client.post(f"{API}/threads", json={"participant_id": b["user"]["id"]}, headers=bearer(a))
    assert r.status_code == 201, r.text
    return a, b, r.json()["id"]


def _post(client: TestClient[Any], who: dict[str, Any], thread_id: str, body: str) -> Any:
    r = client.post(f"{API}/threads/{thread_id}/messages", json={"body": body}, headers=bearer(who))
    assert r.status_code == 201, r.text
    return r


def test_one_notification_per_thread_until_it_is_read(client: TestClient[Any]) -> None:
    a, b, thread_id = _pair(client)
    first = _post(client, a, thread_id, "mail me at john@example.com")
    last = _post(client, a, thread_id, "or call 555-1234")
    notes = _messages(client, b, last)
    assert len(notes) == 1, notes
    note = notes[0]
    assert note["read"] is False
    assert note["data"] == {
        "thread_id": thread_id,
        "message_id": first.json()["id"],
        "sender_id": a["user"]["id"],
        "sender_name": "Ann Sender",
    }
    # the masked thread's body is not in it (its pieces, not bare digits: a random id may hold "555")
    assert "john@" not in json.dumps(note) and "555-1234" not in json.dumps(note)
    assert _messages(client, a, last) == []  # the sender hears nothing of their own messages

    read = client.post(f"{API}/notifications/{note['id']}/read", headers=bearer(b))
    assert read.status_code == 200, read.text
    again = _post(client, a, thread_id, "still there?")
    notes = _messages(client, b, again)
    assert [n["data"]["message_id"] for n in notes] == [again.json()["id"], first.json()["id"]]
    assert [n["read"] for n in notes] == [False, True]
    assert len(_messages(client, b, _post(client, a, thread_id, "hello?"))) == 2


def test_reading_the_thread_reads_its_notification_and_the_next_message_makes_a_new_one(
    client: TestClient[Any],
) -> None:
    a, b, thread_id = _pair(client)
    sent = _post(client, a, thread_id, "hi")
    assert [n["read"] for n in _messages(client, b, sent)] == [False]
    read = client.post(
        f"{API}/threads/{thread_id}/read", json={"up_to_message_id": sent.json()["id"]}, headers=bearer(b)
    )
    assert read.status_code == 200, read.text
    assert [n["read"] for n in _messages(client, b, read)] == [True]
    nxt = _post(client, a, thread_id, "a second question")
    assert [n["read"] for n in _messages(client, b, nxt)] == [False, True]
    # the recipient answering counts as having read the thread (as its unread count does)
    answer = _post(client, b, thread_id, "answered")
    assert [n["read"] for n in _messages(client, b, answer)] == [True, True]
    assert [n["data"]["sender_name"] for n in _messages(client, a, answer)] == ["Bob Reader"]


def test_each_thread_has_its_own_notification(client: TestClient[Any]) -> None:
    a, b, thread_id = _pair(client)
    c = register(client, "student", full_name="Cid Other")
    other = client.post(f"{API}/threads", json={"participant_id": b["user"]["id"]}, headers=bearer(c)).json()["id"]
    _post(client, a, thread_id, "one")
    last = _post(client, c, other, "two")
    notes = _messages(client, b, last)
    assert sorted(n["data"]["thread_id"] for n in notes) == sorted([thread_id, other])


def test_the_websocket_sends_the_notification(client: TestClient[Any]) -> None:
    a, b, thread_id = _pair(client)
    with client.websocket_connect(f"{API}/ws?token={b['access_token']}") as ws:
        sent = _post(client, a, thread_id, "are you there?")
        kinds: dict[str, dict[str, Any]] = {}
        for _ in range(10):
            try:
                frame = json.loads(ws.receive_text(timeout=10.0))
            except queue.Empty:
                break
            kinds[frame["type"]] = frame["data"]
            if "notification.created" in kinds:
                break
    note = kinds["notification.created"]
    assert note["type"] == "message.created" and note["data"]["message_id"] == sent.json()["id"]


# ------------------------------------------------------------------ the batched fold

PEOPLE = [str(uuid.uuid4()) for _ in range(3)]
THREADS = [uuid.uuid4() for _ in range(2)]
T0 = datetime(2031, 1, 1, tzinfo=UTC)
thread_steps = st.lists(
    st.one_of(
        st.tuples(st.just("Thread.MessagePosted"), st.sampled_from(range(2)), st.integers(0, 1)),
        st.tuples(st.just("Thread.ReadUpTo"), st.sampled_from(range(2)), st.integers(0, 1)),
        st.tuples(st.just("Inbox.Read"), st.integers(0, 40), st.integers(0, 2)),
    ),
    min_size=1,
    max_size=30,
)


def _thread_envelopes(steps: list[tuple[Any, ...]]) -> list[Envelope]:
    """Two threads (PEOPLE[0] with PEOPLE[1], PEOPLE[2] with PEOPLE[1]) opened at positions 1 and 2, then the steps:
    posts and thread reads by one side, read receipts of notifications written before (maybe message notices)."""
    meta = {"recorded_at": T0.isoformat()}
    pairs = [[PEOPLE[0], PEOPLE[1]], [PEOPLE[2], PEOPLE[1]]]
    out = [
        Envelope(i + 1, THREADS[i], 1, "domain.messaging:Thread.Opened", "Thread.Opened", {"participant_ids": p}, meta)
        for i, p in enumerate(pairs)
    ]
    for pos, (kind, subject, side) in enumerate(steps, start=3):
        if kind == "Inbox.Read":
            who = PEOPLE[side]
            earlier = [uuid5(NAMESPACE, f"notification:{p}:{who}") for p in range(3, pos)]
            data: dict[str, Any] = {"user_id": who, "notification_ids": [str(n) for n in earlier[: subject + 1]]}
            out.append(Envelope(pos, uuid.uuid4(), 1, "domain.inbox:Inbox.Read", kind, data, meta))
            continue
        who = pairs[subject][side]
        data = (
            {"message_id": str(uuid.uuid4()), "sender_id": who, "body": "b", "masked": False, "attachments": []}
            if kind == "Thread.MessagePosted"
            else {"user_id": who, "message_id": str(uuid.uuid4())}
        )
        out.append(Envelope(pos, THREADS[subject], pos, f"domain.messaging:{kind}", kind, data, meta))
    return out


@pytest.mark.small_pool
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=thread_steps, cut=st.integers(1, 5))
def test_message_notices_in_one_batch_equal_one_event_at_a_time(
    prepared: Settings, steps: list[tuple[Any, ...]], cut: int
) -> None:
    assert_batches_agree(prepared.database_url, Notifications(), _thread_envelopes(steps), cut, "mn")
