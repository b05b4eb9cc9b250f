"""Concurrency against a real `tutorconnect api` process: one account per email however many race for it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from application import context
from application.identity import Identity
from application.settings import Settings
from tests.support.api import API, PASSWORD, PROBLEMS, media_type, reg_body, unique_email

pytestmark = pytest.mark.cloned_database


def test_twenty_concurrent_registrations_of_one_email_make_exactly_one_account(
    live_server: str, prepared: Settings
) -> None:
    email = unique_email("race")
    variants = [email, email.upper(), f"  {email} ", f"\t{email.title()}", f"{email}   "]
    n = 20
    gate = threading.Barrier(n)

    def attempt(i: int) -> httpx.Response:
        with httpx.Client(base_url=live_server, timeout=60) as c:
            c.get("/healthz")  # connect first, so the barrier releases requests, not handshakes
            gate.wait(timeout=30)
            return c.post(
                f"{API}/auth/register",
                json=reg_body(
                    variants[i % len(variants)], full_name=f"Racer {i}", role="tutor" if i % 2 else "student"
                ),
            )

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(attempt, range(n)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * (n - 1), f"wanted one 201 and {n - 1} 409s, got {codes}: " + "; ".join(
        r.text[:200] for r in results if r.status_code not in (201, 409)
    )
    for r in results:
        if r.status_code == 409:
            assert media_type(r) == "application/problem+json"
            assert r.json()["type"] == PROBLEMS + "email-taken", r.text
    winner = next(r for r in results if r.status_code == 201)
    user = winner.json()["user"]
    assert user["email"] == email

    # exactly one account: the winner's password and identity, one row in the admin list, one claim in the log
    judge_email = unique_email("admin")
    with context.acting(actor_role="system"):
        Identity(prepared).register(judge_email, PASSWORD, "Race Judge", "admin", staff=True)
    with httpx.Client(base_url=live_server, timeout=30) as c:
        tokens = c.post(f"{API}/auth/login", json={"email": f" {email.upper()} ", "password": PASSWORD})
        assert tokens.status_code == 200, tokens.text
        me = c.get(f"{API}/me", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"}).json()
        assert (me["id"], me["email"], me["full_name"]) == (user["id"], email, user["full_name"])
        judge = c.post(f"{API}/auth/login", json={"email": judge_email, "password": PASSWORD})
        assert judge.status_code == 200, judge.text
        seen = {
            "Authorization": f"Bearer {judge.json()['access_token']}",
            "X-Min-Position": winner.headers["X-Event-Position"],
        }
        listed = c.get(f"{API}/admin/users", params={"q": email, "limit": 100}, headers=seen)
        assert listed.status_code == 200, listed.text
        assert [u["id"] for u in listed.json()["items"]] == [user["id"]]
        registered = c.get(f"{API}/admin/events", params={"type": "User.Registered", "limit": 100}, headers=seen)
        assert [e["data"]["email"] for e in registered.json()["items"]].count(email) == 1
