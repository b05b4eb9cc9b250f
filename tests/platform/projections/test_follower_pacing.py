"""How the live followers spend their rounds: the background read models in a slower-paced thread of their own, and
a busy follower that stops listening to the commit notifications and goes back to them when the load ends."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from application.catalog import Catalog
from application.settings import Settings
from application.store import close_all
from projections import all_projections
from projections.audit_log import AuditLog
from projections.follower import Follower, followers, plan_threads
from projections.runner import Projection
from projections.subjects import Subjects
from tests.platform.projections.support import head, scalar, wait_until

pytestmark = pytest.mark.small_pool

BACKGROUND = {"audit_log", "ledger", "purchases", "tutor_payouts", "emails"}


def names(groups: list[tuple[list[Projection], bool]]) -> list[tuple[list[str], bool]]:
    return [([p.name for p in g], background) for g, background in groups]


def test_the_back_office_read_models_follow_in_threads_of_their_own_and_the_rest_in_the_others() -> None:
    every = all_projections()
    front = [p.name for p in every if p.name not in BACKGROUND]
    rest_of_back = [p.name for p in every if p.name in BACKGROUND - {"audit_log"}]
    # audit_log reads every event: a background thread of its own, the other back-office ones share one more
    assert names(plan_threads(every, 2)) == [(front, False), (["audit_log"], True), (rest_of_back, True)]

    three = names(plan_threads(every, 3))
    assert [b for _, b in three] == [False, False, True, True]
    assert sorted(three[0][0] + three[1][0]) == sorted(front)
    assert three[0][0] and three[1][0]

    one = names(plan_threads(every, 1))
    assert [(sorted(g), b) for g, b in one] == [(sorted(p.name for p in every), False)]  # one group, one clock

    # a foreground projection that reads every event still gets a thread of its own first
    class Everything(AuditLog):
        name = "everything"
        background = False

    dealt = names(plan_threads([*every, Everything()], 3))
    assert dealt[0] == (["everything"], False)


def test_the_background_threads_are_paced_on_their_own_clock(prepared: Settings) -> None:
    made = followers(prepared.database_url, all_projections(), threading.Event(), 2, gather_ms=20, background_ms=100)
    paces = {frozenset(p.name for p in f.projections): f.gather_s for f in made}
    assert paces == {
        frozenset(p.name for p in all_projections() if p.name not in BACKGROUND): 0.02,
        frozenset({"audit_log"}): 0.1,
        frozenset(BACKGROUND - {"audit_log"}): 0.1,
    }


class _Listen:
    """A stand-in for the follower's LISTEN connection: records (UN)LISTENs and waits for notifications."""

    def __init__(self) -> None:
        self.said: list[str] = []
        self.waited = 0

    def execute(self, statement: Any) -> None:
        self.said.append(statement.as_string().split()[0])

    def notifies(self, timeout: float, stop_after: int) -> list[Any]:
        self.waited += 1
        return []


class _Clock(threading.Event):
    """A stop event that counts the paced waits without waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.paced = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.paced += 1
        return False


def test_a_busy_follower_stops_listening_and_looks_once_more_when_it_listens_again() -> None:
    clock = _Clock()
    f = Follower("postgresql://unused", [], clock, gather_s=5.0)
    listen = _Listen()
    f._listen(listen, True)  # type: ignore[arg-type]
    assert listen.said == ["LISTEN"]

    def after(moved: bool) -> tuple[list[str], int, int]:
        f.round_started = time.monotonic()
        f._next_round(listen, moved)  # type: ignore[arg-type]
        return listen.said[1:], listen.waited, clock.paced

    # Rounds that find work, fewer than QUIET_AFTER in a row: still woken by notifications.
    for _ in range(Follower.QUIET_AFTER - 1):
        after(True)
    assert after(False) == ([], Follower.QUIET_AFTER, Follower.QUIET_AFTER)
    # QUIET_AFTER busy rounds in a row: UNLISTEN once, then rounds on the clock alone.
    waits = 2 * Follower.QUIET_AFTER - 1  # the busy rounds before the QUIET_AFTER-th waited for notifications
    for _ in range(Follower.QUIET_AFTER + 2):
        said, waited, _ = after(True)
    assert said == ["UNLISTEN"] and waited == waits
    assert f.listening is False
    # The first round that finds nothing subscribes again and returns at once (no wait of any kind): the next
    # round looks for a commit made between the last round and the LISTEN, which notified nobody.
    paced = clock.paced
    assert after(False) == (["UNLISTEN", "LISTEN"], waits, paced)
    assert f.listening is True
    # Idle and listening: wait for a notification.
    assert after(False) == (["UNLISTEN", "LISTEN"], waits + 1, paced + 1)


def test_under_steady_writes_the_follower_goes_quiet_and_misses_nothing(prepared: Settings) -> None:
    """A real follower under ~150 commits/s stops listening; once the writes end it listens again, and a single
    later commit still reaches the read model at once (by its notification, well inside the 1 s safety poll)."""
    dsn = prepared.database_url
    stop = threading.Event()
    follower = Follower(dsn, [Subjects()], stop, gather_s=0.02)
    t = threading.Thread(target=follower.run, daemon=True)
    t.start()
    catalog = Catalog(prepared)
    quiet_seen = threading.Event()
    try:
        wait_until(lambda: follower.listening, 10)

        def watch() -> None:
            while not stop.is_set() and not quiet_seen.is_set():
                if not follower.listening:
                    quiet_seen.set()
                time.sleep(0.002)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        for i in range(300):
            catalog.create_subject(f"Pacing {i}", "Bench")
            time.sleep(1 / 150)
        watcher.join(2)
        assert quiet_seen.is_set(), "the follower kept listening under steady writes"
        wait_until(lambda: follower.listening, 5)

        def seen() -> int:
            return int(scalar(dsn, "SELECT count(*) FROM subjects WHERE name LIKE %s", ("Pacing %",)))

        wait_until(lambda: seen() == 300, 5)
        time.sleep(0.3)  # idle now: the next commit is answered by its notification
        started = time.monotonic()
        catalog.create_subject("Pacing last", "Bench")
        wait_until(lambda: seen() == 301, 5, every=0.01)
        assert time.monotonic() - started < 0.5
        position = scalar(dsn, "SELECT position FROM projection_tracking WHERE name = 'subjects' AND state = 'active'")
        assert position == head(dsn)
    finally:
        stop.set()
        t.join(5)
        close_all()
