"""Messaging through the real app: one thread per pair, masking until a confirmed booking, edits within 15
minutes, soft delete, read receipts, attachment checks, and the WebSocket's token check and frames."""

from __future__ import annotations

import queue
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from domain.messaging import mask
from tests.support.api import bearer, register

API = "/api/v1"


def after(r: Any) -> dict[str, str]:
    return {"X-Min-Position": r.headers["X-Event-Position"]}


def test_mask_hides_contacts_and_keeps_ordinary_numbers() -> None:
    assert mask("write john@example.com") == "write j***@e***.com"
    assert mask("call 555-1234") == "call ***-****"
    assert mask("see https://evil.example.org/x") == "see [external link removed]"
    assert mask("3 lessons at 10:30 in 2027") == "3 lessons at 10:30 in 2027"


def test_threads_messages_edits_deletes_and_receipts(client: TestClient[Any]) -> None:
    a, b, c = register(client, "student"), register(client, "tutor"), register(client, "student")
    r = client.post(f"{API}/threads", json={"participant_id": b["user"]["id"]}, headers=bearer(a))
    assert r.status_code == 201, r.text
    thread = r.json()
    again = client.post(f"{API}/threads", json={"participant_id": a["user"]["id"]}, headers=bearer(b))
    assert again.status_code == 200 and again.json()["id"] == thread["id"]
    assert client.post(f"{API}/threads", json={"participant_id": a["user"]["id"]}, headers=bearer(a)).status_code == 422
    assert client.post(f"{API}/threads", json={"participant_id": b["user"]["id"]}).status_code == 401

    sent = client.post(
        f"{API}/threads/{thread['id']}/messages", json={"body": "mail john@example.com or 555-1234"}, headers=bearer(a)
    )
    assert sent.status_code == 201, sent.text
    msg = sent.json()
    assert msg["body"] == "mail j***@e***.com or ***-****"  # masked before it was recorded
    # a stranger sees nothing of the thread
    assert client.get(f"{API}/threads/{thread['id']}/messages", headers=bearer(c)).status_code == 404
    assert (
        client.post(f"{API}/threads/{thread['id']}/messages", json={"body": "hi"}, headers=bearer(c)).status_code == 404
    )

    listed = client.get(f"{API}/threads", headers={**bearer(b), **after(sent)}).json()["items"]
    assert [t["unread_count"] for t in listed if t["id"] == thread["id"]] == [1]
    read = client.post(f"{API}/threads/{thread['id']}/read", json={"up_to_message_id": msg["id"]}, headers=bearer(b))
    assert read.status_code == 200
    listed = client.get(f"{API}/threads", headers={**bearer(b), **after(read)}).json()["items"]
    assert [t["unread_count"] for t in listed if t["id"] == thread["id"]] == [0]

    edit = client.patch(
        f"{API}/threads/{thread['id']}/messages/{msg['id']}", json={"body": "edited"}, headers=bearer(a)
    )
    assert edit.status_code == 200 and edit.json()["body"] == "edited" and edit.json()["edited_at"]
    assert (
        client.patch(
            f"{API}/threads/{thread['id']}/messages/{msg['id']}", json={"body": "mine?"}, headers=bearer(b)
        ).status_code
        == 403
    )
    gone = client.delete(f"{API}/threads/{thread['id']}/messages/{msg['id']}", headers=bearer(a))
    assert gone.status_code == 200
    history = client.get(f"{API}/threads/{thread['id']}/messages", headers={**bearer(a), **after(gone)}).json()
    assert [(m["id"], m["body"], m["deleted"]) for m in history["items"]] == [(msg["id"], None, True)]


def test_edits_close_after_15_minutes(client: TestClient[Any], prepared: Any) -> None:
    from tests.support.api import staff_login

    admin = staff_login(client, prepared)
    a, b = register(client, "student"), register(client, "tutor")
    thread = client.post(f"{API}/threads", json={"participant_id": b["user"]["id"]}, headers=bearer(a)).json()
    now = datetime.now(UTC)
    assert (
        client.put(f"{API}/admin/test-clock", json={"now": now.isoformat()}, headers=bearer(admin)).status_code == 200
    )
    try:
        msg = client.post(f"{API}/threads/{thread['id']}/messages", json={"body": "hello"}, headers=bearer(a)).json()
        client.put(
            f"{API}/admin/test-clock", json={"now": (now + timedelta(minutes=16)).isoformat()}, headers=bearer(admin)
        )
        late = client.patch(
            f"{API}/threads/{thread['id']}/messages/{msg['id']}", json={"body": "too late"}, headers=bearer(a)
        )
        assert late.status_code == 409, late.text
        assert late.json()["type"].endswith("edit-window-closed")
    finally:
        client.delete(f"{API}/admin/test-clock", headers=bearer(admin))


@pytest.mark.parametrize(
    ("content_type", "size", "problem"),
    [
        ("application/x-msdownload", 10, "unsupported-file"),
        ("image/png", 26 * 1_048_576, "file-too-large"),
    ],
)
def test_attachments_are_checked_before_upload(
    client: TestClient[Any], content_type: str, size: int, problem: str
) -> None:
    a = register(client, "student")
    r = client.post(
        f"{API}/attachments", json={"filename": "f", "content_type": content_type, "size": size}, headers=bearer(a)
    )
    assert r.status_code == 422 and r.json()["type"].endswith(problem)


def test_websocket_refuses_a_bad_token(client: TestClient[Any]) -> None:
    from litestar.exceptions import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as caught, client.websocket_connect(f"{API}/ws?token=not-a-token") as ws:
        ws.receive_text()
    assert caught.value.code == 4401


def test_websocket_delivers_message_frames_to_the_participants_only(client: TestClient[Any]) -> None:
    a, b, c = register(client, "student"), register(client, "tutor"), register(client, "student")
    thread = client.post(f"{API}/threads", json={"participant_id": b["user"]["id"]}, headers=bearer(a)).json()
    with (
        client.websocket_connect(f"{API}/ws?token={b['access_token']}") as to_b,
        client.websocket_connect(f"{API}/ws?token={c['access_token']}") as to_c,
    ):
        # The hub follows the log from the moment it starts; until its first frame arrives, post again.
        posted: dict[str, str] = {}
        frame: dict[str, Any] | None = None
        for i in range(10):
            r = client.post(
                f"{API}/threads/{thread['id']}/messages", json={"body": f"hello {i}, mail me at x{i}@example.com"},
                headers=bearer(a),
            )  # fmt: skip
            assert r.status_code == 201, r.text
            posted[r.json()["id"]] = r.json()["body"]
            try:
                frame = msgspec_json(to_b.receive_text(timeout=2.0))
                break
            except queue.Empty:  # no frame within the timeout
                continue
        assert frame is not None, "no frame reached the other participant"
        assert frame["type"] == "message.created"
        data = frame["data"]
        assert data["thread_id"] == thread["id"]
        assert data["body"] == posted[data["message_id"]] and "@example.com" not in data["body"]  # masked
        read = client.post(
            f"{API}/threads/{thread['id']}/read", json={"up_to_message_id": data["message_id"]}, headers=bearer(b)
        )
        assert read.status_code == 200
        # b's own receipt comes back to b (every participant hears of it); c, a stranger, hears nothing at all
        kinds = set()
        for _ in range(20):
            f = msgspec_json(to_b.receive_text(timeout=5.0))
            kinds.add(f["type"])
            if f["type"] == "message.read":
                assert f["data"]["thread_id"] == thread["id"]
                break
        assert "message.read" in kinds
        with pytest.raises(queue.Empty):
            to_c.receive_text(timeout=1.0)


def msgspec_json(text: str) -> dict[str, Any]:
    import json

    value = json.loads(text)
    assert isinstance(value, dict)
    return value
