"""Files cannot lie: before a message carries an attachment (or a tutor's document is completed) the server copies
the upload to a key the uploader cannot write and checks that copy's type, size and first bytes; recipients download
exactly that copy, as an attachment of the checked type, whatever the uploader PUTs afterwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.support.api import bearer, register

API = "/api/v1"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 72
PDF = b"%PDF-1.7\n" + b"0" * 60
PAGE = b"<!doctype html><html><script>document.title='pwned'</script></html>"


def _put(url: str, data: bytes, content_type: str) -> None:
    r = httpx.put(url, content=data, headers={"Content-Type": content_type}, timeout=30)
    assert r.status_code == 200, r.text


def _refused(r: httpx.Response, slug: str) -> None:
    assert r.status_code == 422, r.text
    assert r.json()["type"].endswith("/" + slug), r.text


def _announce(c: Any, who: dict[str, Any], content_type: str = "image/png", size: int = 100) -> dict[str, Any]:
    r = c.post(f"{API}/attachments", json={"filename": "pic ü.png", "content_type": content_type, "size": size},
               headers=bearer(who))  # fmt: skip
    assert r.status_code == 201, r.text
    expires = datetime.fromisoformat(r.json()["expires_at"].replace("Z", "+00:00"))
    assert expires <= datetime.now(UTC) + timedelta(minutes=16), "an upload URL lives minutes, not an hour"
    return dict(r.json())


def test_a_page_uploaded_as_a_png_is_refused_even_when_stored_as_a_png(s3_client: Any) -> None:
    a, b = register(s3_client, "student"), register(s3_client, "tutor")
    thread = s3_client.post(f"{API}/threads", json={"participant_id": b["user"]["id"]}, headers=bearer(a)).json()
    url = f"{API}/threads/{thread['id']}/messages"
    att = _announce(s3_client, a)
    _put(att["upload_url"], PAGE, "image/png")  # the stored type agrees; the bytes do not
    _refused(
        s3_client.post(url, json={"body": "x", "attachment_ids": [att["id"]]}, headers=bearer(a)), "unsupported-file"
    )
    # fixing the upload within its URL's life makes it acceptable
    _put(att["upload_url"], PNG, "image/png")
    assert s3_client.post(url, json={"body": "x", "attachment_ids": [att["id"]]}, headers=bearer(a)).status_code == 201


def test_recipients_download_the_checked_copy_as_an_attachment_after_the_sender_replaces_the_upload(
    s3_client: Any,
) -> None:
    a, b = register(s3_client, "student"), register(s3_client, "tutor")
    thread = s3_client.post(f"{API}/threads", json={"participant_id": b["user"]["id"]}, headers=bearer(a)).json()
    url = f"{API}/threads/{thread['id']}/messages"
    att = _announce(s3_client, a)
    _put(att["upload_url"], PNG, "image/png")
    sent = s3_client.post(url, json={"body": "see", "attachment_ids": [att["id"]]}, headers=bearer(a))
    assert sent.status_code == 201, sent.text
    _put(att["upload_url"], PAGE, "text/html")  # the upload URL still works: the sender swaps the bytes
    items = s3_client.get(url, headers={**bearer(b), "X-Min-Position": sent.headers["X-Event-Position"]}).json()[
        "items"
    ]
    (got_att,) = items[0]["attachments"]
    got = httpx.get(got_att["url"], timeout=30)
    assert got.status_code == 200
    assert got.content == PNG
    assert got.headers["content-type"] == "image/png"
    assert got.headers["content-disposition"].startswith("attachment;"), got.headers
    # a second message with the same attachment carries the same checked copy
    again = s3_client.post(url, json={"body": "again", "attachment_ids": [att["id"]]}, headers=bearer(a))
    assert again.status_code == 201, again.text
    assert httpx.get(got_att["url"], timeout=30).content == PNG


def test_a_tutor_document_is_checked_and_frozen_at_completion(s3_client: Any) -> None:
    t = register(s3_client, "tutor")

    def announce(content_type: str = "application/pdf") -> dict[str, Any]:
        r = s3_client.post(f"{API}/tutor/documents", json={"filename": "diploma.pdf", "content_type": content_type,
                           "size": 1000}, headers=bearer(t))  # fmt: skip
        assert r.status_code == 201, r.text
        return dict(r.json())

    liar = announce()
    _put(liar["upload_url"], PAGE, "application/pdf")
    _refused(s3_client.post(f"{API}/tutor/documents/{liar['id']}/complete", headers=bearer(t)), "unsupported-file")
    never = announce()
    _refused(s3_client.post(f"{API}/tutor/documents/{never['id']}/complete", headers=bearer(t)), "upload-missing")

    doc = announce()
    _put(doc["upload_url"], PDF, "application/pdf")
    done = s3_client.post(f"{API}/tutor/documents/{doc['id']}/complete", headers=bearer(t))
    assert done.status_code == 200, done.text
    _put(doc["upload_url"], PAGE, "text/html")  # replaced after completion
    listed = s3_client.get(
        f"{API}/tutor/documents", headers={**bearer(t), "X-Min-Position": done.headers["X-Event-Position"]}
    ).json()["items"]
    (mine,) = [d for d in listed if d["id"] == doc["id"]]
    got = httpx.get(mine["download_url"], timeout=30)
    assert got.content == PDF
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-disposition"].startswith("attachment;")


def test_storage_out_of_reach_is_a_503_that_says_when_to_retry(prepared: Any, projectors: Any) -> None:
    from litestar.testing import TestClient

    from api.app import create_app
    from tests.support.http import problem
    from tests.support.system import make_settings

    unreachable = make_settings(
        prepared.database_url, prepared.redis_url, s3_endpoint_url="http://127.0.0.1:9", s3_access_key="k",
        s3_secret_key="s" * 16, s3_bucket="nowhere",
    )  # fmt: skip
    with TestClient(create_app(unreachable), base_url="http://testserver.local") as c:
        a = register(c, "student")
        r = c.post(f"{API}/attachments", json={"filename": "a.png", "content_type": "image/png", "size": 10},
                   headers=bearer(a))  # fmt: skip
        problem(r, 503, "storage-unavailable")
        assert r.headers["Retry-After"] == "5"
