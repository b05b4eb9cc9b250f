"""Sessions end everywhere at once: an open WebSocket is closed with 4401 within 5 s of its user's deactivation,
deletion or logout, or of its token's expiry, and gets no frame after the change."""

from __future__ import annotations

import json
import queue
import secrets
import time
from typing import Any

import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient

from application.tokens import issue_access
from tests.support.api import PASSWORD, bearer, register, staff_login

API = "/api/v1"


def _live_sockets(client: TestClient[Any], a: dict[str, Any], thread_id: str, *sockets: Any) -> None:
    """Wait until the hub serves every socket (it follows the log from when it starts): post until each got a frame,
    then drain what the other warm-up posts produced."""
    waiting = list(sockets)
    for i in range(20):
        r = client.post(f"{API}/threads/{thread_id}/messages", json={"body": f"warm {i}"}, headers=bearer(a))
        assert r.status_code == 201, r.text
        for ws in list(waiting):
            try:
                assert json.loads(ws.receive_text(timeout=1.0))["type"] == "message.created"
                waiting.remove(ws)
            except queue.Empty:
                continue
        if not waiting:
            break
    assert not waiting, "a socket never got a frame"
    for ws in sockets:
        while True:
            try:  # the warm-up's message.created notification comes on the hub's next pass (at least every second)
                ws.receive_text(timeout=1.5)
            except queue.Empty:
                break


def _closed_4401_without_frames(ws: Any, within: float = 5.0) -> None:
    """The next thing the socket gets is a close with 4401, within `within` seconds; never a frame."""
    t0 = time.monotonic()
    with pytest.raises(WebSocketDisconnect) as closed:
        while time.monotonic() - t0 < within:
            try:
                text = ws.receive_text(timeout=0.2)
            except queue.Empty:
                continue
            raise AssertionError(f"a frame reached an ended session: {text}")
        raise AssertionError(f"the socket was not closed within {within} s")
    assert closed.value.code == 4401
    assert time.monotonic() - t0 < within


def _pair(client: TestClient[Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    a = register(client, "tutor")
    email = f"b-{secrets.token_hex(6)}@example.test"
    b = register(client, "student", email=email) | {"email": email}
    thread = client.post(f"{API}/threads", json={"participant_id": a["user"]["id"]}, headers=bearer(b)).json()
    return a, b, thread["id"]


@pytest.mark.parametrize("how", ["deactivate", "delete"])
def test_a_socket_is_closed_when_an_admin_ends_its_account(client: TestClient[Any], prepared: Any, how: str) -> None:
    a, b, thread_id = _pair(client)
    admin = staff_login(client, prepared)
    with client.websocket_connect(f"{API}/ws?token={b['access_token']}") as ws:
        _live_sockets(client, a, thread_id, ws)
        if how == "deactivate":
            r = client.patch(f"{API}/admin/users/{b['user']['id']}", json={"is_active": False}, headers=bearer(admin))
        else:
            r = client.delete(f"{API}/admin/users/{b['user']['id']}", headers=bearer(admin))
        assert r.status_code in (200, 204), r.text
        # the tutor posts in the thread at once: the frame must not reach the ended session
        r = client.post(f"{API}/threads/{thread_id}/messages", json={"body": "secret plans"}, headers=bearer(a))
        assert r.status_code == 201, r.text
        _closed_4401_without_frames(ws)


def test_logout_closes_that_sessions_sockets_only(client: TestClient[Any]) -> None:
    a, b, thread_id = _pair(client)
    other = client.post(f"{API}/auth/login", json={"email": b["email"], "password": PASSWORD})  # a second session
    assert other.status_code == 200, other.text
    with (
        client.websocket_connect(f"{API}/ws?token={b['access_token']}") as ws,
        client.websocket_connect(f"{API}/ws?token={other.json()['access_token']}") as ws2,
    ):
        _live_sockets(client, a, thread_id, ws, ws2)
        r = client.post(f"{API}/auth/logout", json={"refresh_token": b["refresh_token"]}, headers=bearer(b))
        assert r.status_code in (200, 204), r.text
        _closed_4401_without_frames(ws)
        r = client.post(f"{API}/threads/{thread_id}/messages", json={"body": "still here?"}, headers=bearer(a))
        assert json.loads(ws2.receive_text(timeout=5.0))["data"]["body"] == "still here?"  # the other session stays


def test_a_socket_is_closed_when_its_token_expires(client: TestClient[Any], prepared: Any) -> None:
    _, b, _ = _pair(client)
    token = issue_access(prepared.jwt_secret, b["user"]["id"], "student", 2)
    with client.websocket_connect(f"{API}/ws?token={token}") as ws:
        _closed_4401_without_frames(ws, within=5.0)
