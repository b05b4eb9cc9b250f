"""One running system for the fault tests of a module (starting it takes ~20 s): services this run owns, `tutorconnect
serve` over them, approved tutors and students with credit and a thread each."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from tests.platform.faults.load import API, World
from tests.platform.faults.stack import Stack, running_stack
from tests.support.api import PASSWORD

WEEK = [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, localstripe: str) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("faults")
    with running_stack(root, localstripe) as s:
        yield s


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    """Three approved tutors and eight students, each with credit for every tutor and a thread with the first."""
    from application.money import Money
    from application.settings import Settings
    from application.store import close_all
    from tests.support.world import approve_tutor, grant, make_subject

    settings = Settings.from_env(stack.env)
    subject = make_subject(settings)
    students: list[dict[str, Any]] = []
    with httpx.Client(base_url=stack.base, timeout=30) as http:

        def signup(role: str) -> dict[str, Any]:
            r = http.post(f"{API}/auth/register", json={"email": f"{role}-{secrets.token_hex(5)}@example.test",
                          "password": PASSWORD, "full_name": f"Fault {role}", "role": role})  # fmt: skip
            assert r.status_code == 201, r.text
            return {"id": r.json()["user"]["id"], "token": r.json()["access_token"]}

        tutors = [signup("tutor") for _ in range(3)]
        for t in tutors:
            approve_tutor(settings, UUID(t["id"]), subject_id=subject, weekly=WEEK, amount=3000)
        money = Money(settings)
        for _ in range(8):
            s = signup("student")
            for t in tutors:
                grant(money, UUID(s["id"]), UUID(t["id"]), 100_000, 100_000 * 50)
            r = http.post(f"{API}/threads", json={"participant_id": tutors[0]["id"]},
                          headers={"Authorization": f"Bearer {s['token']}"})  # fmt: skip
            assert r.status_code == 201, r.text
            s["thread"] = r.json()["id"]
            students.append(s)
        from application import context
        from application.identity import Identity

        admin_email = f"admin-{secrets.token_hex(5)}@example.test"
        with context.acting(actor_role="system"):
            Identity(settings).register(admin_email, PASSWORD, "Fault Admin", "admin", staff=True)
        r = http.post(f"{API}/auth/login", json={"email": admin_email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        admin = r.json()["access_token"]
    close_all()  # this process's pools: the faults break their connections
    return World([t["id"] for t in tutors], students, subject, admin)
