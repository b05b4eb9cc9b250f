"""A read model stopped at an event it cannot apply, as clients and operators see it: its queries answer 503
`projection-lagging` naming it, every other read model stays current, /readyz and `tutorconnect projections
status` show the failure, and `tutorconnect projections retry` resumes it after a fix."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

from application.settings import Settings
from projections import failures
from projections.runner import Envelope
from projections.users_directory import UsersDirectory
from tests.support.api import API, Actor, event_position, ok, problem, reg_body
from tests.support.system import ROOT, server_env, wait_until

pytestmark = pytest.mark.cloned_database

POISON = "Mallory Poison"


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **server_env(settings), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_a_stopped_read_model_is_named_in_503s_readyz_and_status_and_resumes(
    client: Any, admin: Actor, prepared: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(failures, "ATTEMPTS", 2)
    monkeypatch.setattr(failures, "BACKOFF_S", (0.05,))
    original = UsersDirectory.apply

    def fragile(self: UsersDirectory, cur: psycopg.Cursor[Any], events: Sequence[Envelope], t: dict[str, str]) -> None:
        if any(e.data.get("full_name") == POISON for e in events):
            raise RuntimeError("a bug in users_directory")
        original(self, cur, events, t)

    monkeypatch.setattr(UsersDirectory, "apply", fragile)
    r = client.post(f"{API}/auth/register", json=reg_body(full_name=POISON))
    ok(r, 201)
    at = {"X-Min-Position": str(event_position(r))}

    def readyz() -> dict[str, Any]:
        return ok(client.get("/readyz"))  # type: ignore[no-any-return]

    # reported while it is tried again, then as stopped
    wait_until(lambda: [f["state"] for f in readyz()["projection_failures"]] == ["stopped"], 20, "a stopped read model")
    ready = readyz()
    assert ready["status"] == "degraded" and ready["checks"]["store"] == "ok"
    (f,) = ready["projection_failures"]
    assert (f["projection"], f["event_type"], f["state"], f["attempts"]) == (
        "users_directory",
        "User.Registered",
        "stopped",
        2,
    )
    assert "RuntimeError" in f["error"] and f["position"] <= event_position(r)
    assert {"event_id", "first_seen", "last_seen", "generation"} <= set(f)

    body = problem(client.get(f"{API}/admin/users", headers=admin.auth), 503, "projection-lagging")
    assert body["projections"] == ["users_directory"] and "users_directory" in body["detail"]
    # every other read model is current, the audit log included
    events = ok(client.get(f"{API}/admin/events", params={"type": "User.Registered"}, headers={**admin.auth, **at}))
    assert POISON in {e["data"]["full_name"] for e in events["items"]}
    ok(client.get(f"{API}/subjects", headers=at))

    status = cli(prepared, "projections", "status")
    assert status.returncode == 0, status.stderr
    assert "STOPPED" in status.stdout and "RuntimeError" in status.stdout, status.stdout

    monkeypatch.setattr(UsersDirectory, "apply", original)  # the fix
    done = cli(prepared, "projections", "retry", "users_directory")
    assert done.returncode == 0, done.stderr
    users = ok(client.get(f"{API}/admin/users", params={"q": "mallory"}, headers={**admin.auth, **at}))["items"]
    assert [u["full_name"] for u in users] == [POISON]
    assert readyz()["status"] == "ready" and readyz()["projection_failures"] == []
    assert cli(prepared, "projections", "retry", "users_directory").returncode == 1  # nothing stopped now
