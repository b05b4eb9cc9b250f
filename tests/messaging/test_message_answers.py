"""Every answer that holds a message gives it in the one shape the history gives (the contract's message with
`attachments: [{id, filename, content_type, size, url}]`): send and edit answer each attachment with a working
download URL, and a deleted message carries no attachments, in its delete answer as in the history."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.api import bearer, register

API = "/api/v1"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 72
FIELDS = {"id", "thread_id", "sender_id", "body", "created_at", "edited_at", "deleted", "attachments"}


def _attached(c: Any, who: dict[str, Any]) -> dict[str, Any]:
    """An attachment announced and uploaded (checked when a message first carries it)."""
    r = c.post(f"{API}/attachments", json={"filename": "pic.png", "content_type": "image/png", "size": len(PNG)},
               headers=bearer(who))  # fmt: skip
    assert r.status_code == 201, r.text
    put = httpx.put(r.json()["upload_url"], content=PNG, headers={"Content-Type": "image/png"}, timeout=30)
    assert put.status_code == 200, put.text
    return dict(r.json())


def _downloads_the_png(attachment: dict[str, Any]) -> None:
    assert isinstance(attachment["url"], str), attachment
    got = httpx.get(attachment["url"], timeout=30)
    assert got.status_code == 200 and got.content == PNG, got.status_code


def _without_urls(message: dict[str, Any]) -> dict[str, Any]:
    return {**message, "attachments": [{k: v for k, v in a.items() if k != "url"} for a in message["attachments"]]}


def test_send_edit_and_delete_answer_the_message_as_the_history_does(s3_client: Any) -> None:
    a, b = register(s3_client, "student"), register(s3_client, "tutor")
    thread = s3_client.post(f"{API}/threads", json={"participant_id": b["user"]["id"]}, headers=bearer(a)).json()
    url = f"{API}/threads/{thread['id']}/messages"
    att = _attached(s3_client, a)

    r = s3_client.post(url, json={"body": "see the picture", "attachment_ids": [att["id"]]}, headers=bearer(a))
    assert r.status_code == 201, r.text
    sent = r.json()
    assert set(sent) == FIELDS
    (carried,) = sent["attachments"]
    assert (carried["id"], carried["filename"], carried["content_type"], carried["size"]) == (
        att["id"], "pic.png", "image/png", len(PNG),
    )  # fmt: skip
    _downloads_the_png(carried)

    r = s3_client.patch(f"{url}/{sent['id']}", json={"body": "see this picture"}, headers=bearer(a))
    assert r.status_code == 200, r.text
    edited = r.json()
    assert (edited["body"], edited["edited_at"] is not None) == ("see this picture", True)
    assert _without_urls(edited)["attachments"] == _without_urls(sent)["attachments"]
    _downloads_the_png(edited["attachments"][0])

    # the history (the read model) answers the same message in the same shape
    seen = {"X-Min-Position": r.headers["X-Event-Position"]}
    (listed,) = s3_client.get(url, headers={**bearer(b), **seen}).json()["items"]
    assert _without_urls(listed) == _without_urls(edited)
    _downloads_the_png(listed["attachments"][0])

    plain = s3_client.post(url, json={"body": "no files"}, headers=bearer(a))
    assert plain.status_code == 201 and plain.json()["attachments"] == [], plain.text

    r = s3_client.delete(f"{url}/{sent['id']}", headers=bearer(a))
    assert r.status_code == 200, r.text
    deleted = r.json()
    assert (deleted["deleted"], deleted["body"], deleted["attachments"]) == (True, None, [])
    seen = {"X-Min-Position": r.headers["X-Event-Position"]}
    history = s3_client.get(url, headers={**bearer(b), **seen}).json()["items"]
    assert [m for m in history if m["id"] == sent["id"]] == [deleted]
