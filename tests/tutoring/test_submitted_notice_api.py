"""Through the real app: a tutor submitting their profile notifies every active admin (`tutor.submitted` with the
tutor's id and name) in GET /notifications and over the WebSocket; other users, and admins deactivated before it,
hear nothing."""

from __future__ import annotations

import json
import queue
import time
from typing import Any

from application.settings import Settings
from tests.support.api import Actor as StaffActor
from tests.support.api import staff
from tests.tutoring.support import API, after, create_subject, fill_profile, ok, signup


def _notices(client: Any, auth: dict[str, str], headers: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = ok(client.get(f"{API}/notifications", headers={**headers, **auth}))["items"]
    return [n for n in items if n["type"] == "tutor.submitted"]


def _frames(ws: Any, seconds: float, kind: str) -> list[dict[str, Any]]:
    """The frames the socket receives within `seconds`, or until one of type `kind` arrives."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and not any(f["data"].get("type") == kind for f in out):
        try:
            out.append(json.loads(ws.receive_text(timeout=left)))
        except queue.Empty:
            break
    return out


def test_every_active_admin_hears_of_a_submission(client: Any, prepared: Settings, admin: StaffActor) -> None:
    away = staff(client, prepared, "admin")
    gone = client.patch(f"{API}/admin/users/{away.id}", json={"is_active": False}, headers=admin.auth)
    ok(gone)
    finance = staff(client, prepared, "finance")
    subject = create_subject(client, admin, "Calculus")  # type: ignore[arg-type]
    tutor = signup(client, "tutor", "Ada Lovelace")
    fill_profile(client, tutor, [subject["id"]])

    with client.websocket_connect(f"{API}/ws?token={admin.access}") as ws:  # accepted: live from here
        r = client.post(f"{API}/tutor/profile/submit", headers=tutor.auth)
        assert ok(r)["status"] == "pending_approval"
        frames = _frames(ws, 10.0, "tutor.submitted")
    heard = [
        f["data"] for f in frames if f["type"] == "notification.created" and f["data"]["type"] == "tutor.submitted"
    ]
    assert len(heard) == 1, frames
    assert heard[0]["data"] == {"tutor_id": tutor.id, "name": "Ada Lovelace"}

    notes = _notices(client, admin.auth, after(r, gone))
    assert [(n["data"], n["read"]) for n in notes] == [({"tutor_id": tutor.id, "name": "Ada Lovelace"}, False)]
    assert notes[0]["id"] == heard[0]["id"] and notes[0]["created_at"]
    # nobody else: not the tutor, not finance, not a later admin (the admins are those of the submission)
    assert _notices(client, tutor.auth, after(r)) == []
    assert _notices(client, {"Authorization": f"Bearer {finance.access}"}, after(r)) == []
    later = staff(client, prepared, "admin")
    assert _notices(client, later.auth, after(r)) == []
    # the deactivated admin, once back, finds nothing either
    back = client.patch(f"{API}/admin/users/{away.id}", json={"is_active": True}, headers=admin.auth)
    ok(back)
    relog = client.post(f"{API}/auth/login", json={"email": away.email, "password": away.password})
    token = ok(relog)["access_token"]
    assert _notices(client, {"Authorization": f"Bearer {token}"}, after(r, back)) == []
