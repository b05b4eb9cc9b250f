"""A message may carry an attachment only once its object is on S3, of the declared type and at most the declared
size (422 `upload-missing`, `unsupported-file`, `file-too-large`); a refused post records nothing."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.api import bearer, register

API = "/api/v1"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 72


def _announce(c: Any, who: dict[str, Any], size: int = 100, content_type: str = "image/png") -> dict[str, Any]:
    r = c.post(f"{API}/attachments", json={"filename": "pic.png", "content_type": content_type, "size": size},
               headers=bearer(who))  # fmt: skip
    assert r.status_code == 201, r.text
    return dict(r.json())


def _put(url: str, data: bytes, content_type: str) -> None:
    r = httpx.put(url, content=data, headers={"Content-Type": content_type}, timeout=30)
    assert r.status_code == 200, r.text


def _problem(r: httpx.Response, slug: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/" + slug), r.text


def test_an_attachment_is_checked_on_s3_before_a_message_carries_it(s3_client: Any) -> None:
    a, b = register(s3_client, "student"), register(s3_client, "tutor")
    thread = s3_client.post(f"{API}/threads", json={"participant_id": b["user"]["id"]}, headers=bearer(a)).json()
    url = f"{API}/threads/{thread['id']}/messages"

    def send(att: dict[str, Any], who: dict[str, Any] = a) -> httpx.Response:
        r: httpx.Response = s3_client.post(
            url, json={"body": "see", "attachment_ids": [att["id"]]}, headers=bearer(who)
        )
        return r

    never = _announce(s3_client, a)
    _problem(send(never), "upload-missing")

    mislabelled = _announce(s3_client, a)
    _put(mislabelled["upload_url"], b"<html><script>alert(1)</script></html>", "text/html")
    _problem(send(mislabelled), "unsupported-file")

    oversized = _announce(s3_client, a, size=10)
    _put(oversized["upload_url"], PNG, "image/png")
    _problem(send(oversized), "file-too-large")

    good = _announce(s3_client, a)
    _put(good["upload_url"], PNG, "image/png")
    # someone else's upload is not yours to attach, uploaded or not
    r = s3_client.post(url, json={"body": "x", "attachment_ids": [good["id"]]}, headers=bearer(b))
    assert r.status_code == 422 and r.json()["type"].endswith("/validation-failed"), r.text
    sent = send(good)
    assert sent.status_code == 201, sent.text
    assert [x["id"] for x in sent.json()["attachments"]] == [good["id"]]

    history = s3_client.get(url, headers={**bearer(b), "X-Min-Position": sent.headers["X-Event-Position"]}).json()[
        "items"
    ]
    assert len(history) == 1, history  # the refused posts recorded nothing
    (att,) = history[0]["attachments"]
    got = httpx.get(att["url"], timeout=30)
    assert got.status_code == 200 and got.content == PNG
