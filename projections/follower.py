"""The live follower: threads that keep the active generations of projections up to date, woken by NOTIFY."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec

import psycopg
from psycopg import sql

from projections.failures import INFRASTRUCTURE, FailurePolicy
from projections.generations import active_generation, ensure, lock_key, rebuild
from projections.runner import (
    CHANNEL,
    EVENTS_TABLE,
    Envelope,
    Projection,
    Retired,
    Runner,
    Superseded,
    apply_events,
    connect_for_batches,
    read_batch,
)

log = logging.getLogger("tutorconnect.projections")
P = ParamSpec("P")

# (name, generation, position before, position after, events applied) of one projection in a shared round
_Move = tuple[str, int, int, int, int]


class Follower:
    """Keeps projections' active generations up to date in one thread: catch-up, then wake on NOTIFY.

    One thread and two connections serve a group of projections (a LISTEN connection, which also holds
    the session advisory locks, and a work connection for the batch transactions). Only one process runs a
    projection at a time (its advisory lock); others stand by and take over when the holder dies. Batches are
    interleaved across projections so one long catch-up does not starve the others. The 1-second wait timeout
    is a safety net for a lost notification, not the main path."""

    ROUND_BATCHES = 10
    QUIET_AFTER = 3  # rounds in a row that found new events before the follower stops listening (see _next_round)

    def __init__(
        self,
        dsn: str,
        projections: Projection | Sequence[Projection],
        stop: threading.Event,
        batch_size: int = 5000,
        gather_s: float = 0.0,
    ) -> None:
        self.dsn = dsn
        self.projections = [projections] if isinstance(projections, Projection) else list(projections)
        self.stop = stop
        self.batch_size = batch_size
        self.gather_s = gather_s
        self.round_started = 0.0  # time.monotonic() when the current round began (see _pace)
        self.busy_rounds = 0  # rounds in a row that found new events
        self.listening = False  # whether the LISTEN connection is subscribed to the commit notifications
        self.policy = FailurePolicy()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self._run_once()
            except Exception:
                log.exception("projection follower failed; restarting in 1 s")
                self.stop.wait(1.0)

    def _claim(self, listen: psycopg.Connection[Any], work: psycopg.Connection[Any], p: Projection) -> Runner | None:
        got = listen.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(p.name),)).fetchone()
        if not got or not got[0]:
            return None  # another process runs this projection; stand by and try again next round
        gen = active_generation(listen, p.name)
        if gen is None:
            ensure(self.dsn, [p])
            gen = active_generation(listen, p.name)
            assert gen is not None
        if gen[1] != p.version:
            log.info("projection %s: code version %s != stored %s; rebuilding", p.name, p.version, gen[1])
            rebuild(self.dsn, p, batch_size=self.batch_size)
            gen = active_generation(listen, p.name)
            assert gen is not None
        return Runner(self.dsn, p, gen[0], batch_size=self.batch_size, conn=work, policy=self.policy)

    def _run_once(self) -> None:
        with (
            psycopg.connect(self.dsn, autocommit=True) as listen,
            connect_for_batches(self.dsn) as work,
        ):
            self.listening = False
            self.busy_rounds = 0
            self._listen(listen, True)
            runners: dict[str, Runner] = {}

            def release(name: str) -> None:
                # a rebuild switched generations: pick up the active one next round
                runners.pop(name, None)
                listen.execute("SELECT pg_advisory_unlock(%s)", (lock_key(name),))

            while not self.stop.is_set():
                self.round_started = time.monotonic()
                behind = False
                for p in self.projections:
                    if p.name not in runners:
                        runner = self._claim(listen, work, p)
                        if runner is not None:
                            runners[p.name] = runner
                try:
                    far, stale, moved = self._round(work, list(runners.values()))
                except Superseded:
                    for name in list(runners):
                        release(name)
                    continue
                for name in stale:
                    release(name)
                    behind = True
                for runner in far:  # far behind (a new projection, a long outage): batches of its own
                    if self.policy.waiting(runner.projection.name, runner.generation):
                        continue
                    try:
                        for _ in range(self.ROUND_BATCHES):
                            n, stepped = runner.step()
                            moved = moved or stepped
                            if not stepped or n < runner.batch_size:
                                break  # a short batch reached the head it read; later commits send a NOTIFY
                        else:
                            behind = True
                    except (Retired, Superseded):
                        release(runner.projection.name)
                        behind = True
                if not behind:
                    self._next_round(listen, moved)

    def _next_round(self, listen: psycopg.Connection[Any], moved: bool) -> None:
        """Wait for the next round. Idle, the follower listens: a commit's NOTIFY starts a round (then paced).
        Busy -- `QUIET_AFTER` rounds in a row found new events -- it stops listening and starts rounds on the
        clock alone: PostgreSQL wakes every listening backend on every commit, and at 300 bookings/s those
        wake-ups of two threads that would run their next round anyway cost more PostgreSQL CPU per booking than
        any read model's statements (docs/PERFORMANCE.md, issue 16). The first round that finds nothing
        subscribes again and returns for one more look at once: a commit between that round and the LISTEN
        notified nobody."""
        self.busy_rounds = self.busy_rounds + 1 if moved else 0
        if self.busy_rounds >= self.QUIET_AFTER:
            self._listen(listen, False)
            self._pace()
        elif not self.listening:
            self._listen(listen, True)
        else:
            for _ in listen.notifies(timeout=1.0, stop_after=1):
                pass
            self._pace()

    def _listen(self, listen: psycopg.Connection[Any], on: bool) -> None:
        if on != self.listening:
            listen.execute(sql.SQL("LISTEN {}" if on else "UNLISTEN {}").format(sql.Identifier(CHANNEL)))
            self.listening = on

    def _pace(self) -> None:
        """Rounds start at most every `gather_s`. Under load the commits that arrive meanwhile join the next round,
        which applies them in one transaction (fewer statements, commits and position updates per event: the
        projectors' and PostgreSQL's CPU per booking, bench/booking.py), for at most `gather_s` more lag; the first
        notification after a quiet spell is answered at once. A stop cuts the wait short."""
        rest = self.round_started + self.gather_s - time.monotonic()
        if rest > 0:
            self.stop.wait(rest)

    def _round(self, conn: psycopg.Connection[Any], runners: Sequence[Runner]) -> tuple[list[Runner], list[str], bool]:
        """`_step_together`; if a projection fails on an event, the round is rolled back and run again carefully,
        so that only that projection stays behind (projections/failures.py)."""
        try:
            return self._step_together(conn, runners)
        except (*INFRASTRUCTURE, Superseded):
            raise
        except Exception:  # the code or SQL of some projection failed on some event of this round
            return self._step_together(conn, runners, careful=True)

    def _step_together(
        self, conn: psycopg.Connection[Any], runners: Sequence[Runner], careful: bool = False
    ) -> tuple[list[Runner], list[str], bool]:
        """One transaction for every runner within a batch of the head: read the new events once, let each
        projection apply its share, move all their positions with one compare-and-set. Returns the runners too
        far behind for that (they step alone), the names whose generation was retired, and whether any position
        moved.

        Following live, a commit wakes every projection of the thread; one shared transaction instead of one
        per projection cuts the round trips and commits per wake-up about tenfold."""
        if not runners:
            return [], [], False
        with conn.transaction():
            near, far, stale, head = self._triage(conn, runners)
            if not near:
                return far, stale, False
            everything = any(not r.projection.topics for r, _ in near)
            topics = () if everything else tuple({t for r, _ in near for t in r.projection.topics})
            events, end = read_batch(conn, min(start for _, start in near), head, topics, self.batch_size)
            moves = [m for r, start in near if (m := self._apply_share(conn, r, start, events, end, careful))]
            if moves:
                _advance_all(conn, moves)
        return far, stale, bool(moves)

    def _triage(
        self, conn: psycopg.Connection[Any], runners: Sequence[Runner]
    ) -> tuple[list[tuple[Runner, int]], list[Runner], list[str], int]:
        """Every runner's tracking row and the head, in one statement: the runners within a batch of the head
        (with their positions), those too far behind, the names whose generation was retired; and the head."""
        rows = conn.execute(
            "SELECT name, generation, position, state, stopped,"
            f" (SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}) AS head"
            " FROM projection_tracking WHERE name = ANY(%s)",
            ([r.projection.name for r in runners],),
        ).fetchall()
        tracked = {(r["name"], r["generation"]): r for r in rows}
        head = int(rows[0]["head"]) if rows else 0
        near: list[tuple[Runner, int]] = []
        far: list[Runner] = []
        stale: list[str] = []
        for runner in runners:
            t = tracked.get((runner.projection.name, runner.generation))
            if t is None or t["state"] == "retired":
                stale.append(runner.projection.name)
            elif t["stopped"] or self.policy.waiting(runner.projection.name, runner.generation):
                continue  # stopped at an event it could not apply, or waiting to try it again
            elif head - int(t["position"]) > self.batch_size:
                far.append(runner)
            elif int(t["position"]) < head:
                near.append((runner, int(t["position"])))
        return near, far, stale, head

    def _apply_share(
        self,
        conn: psycopg.Connection[Any],
        runner: Runner,
        start: int,
        events: Sequence[Envelope],
        end: int,
        careful: bool,
    ) -> _Move | None:
        """Apply the runner's share of the round's events (carefully: failures.apply_prefix, and the policy decides
        where a failing projection's position goes); the move of its position, or None if it stays."""
        p, reached = runner.projection, end
        wanted = set(p.topics)
        mine = [e for e in events if start < e.position <= end and (not wanted or e.topic in wanted)]
        n, bad, error = apply_events(conn, p, mine, runner.names, careful)
        if bad is not None and error is not None:
            reached = self.policy.failed(conn, p.name, runner.generation, p.skippable, bad, error)
            mine = mine[:n]
        if reached <= start:
            return None
        self.policy.passed(p.name, runner.generation, reached)
        return (p.name, runner.generation, start, reached, len(mine))


def _advance_all(conn: psycopg.Connection[Any], moves: Sequence[_Move]) -> None:
    """Move the positions of a shared round with one compare-and-set; Superseded if another runner moved one."""
    names, generations, starts, ends, counts = (list(x) for x in zip(*moves, strict=True))
    updated = conn.execute(
        "UPDATE projection_tracking t SET position = u.position, events_processed = t.events_processed + u.n,"
        " updated_at = now() FROM unnest(%s::text[], %s::int[], %s::int8[], %s::int8[], %s::int8[])"
        " AS u(name, generation, start, position, n)"
        " WHERE t.name = u.name AND t.generation = u.generation AND t.position = u.start",
        (names, generations, starts, ends, counts),
    ).rowcount
    if updated != len(moves):
        raise Superseded(f"another runner advanced one of {', '.join(names)}")


def plan_threads(projections: Sequence[Projection], threads: int) -> list[tuple[list[Projection], bool]]:
    """How `follow_all` shares projections out: (group, background) per thread.

    Most of a batch's work is PostgreSQL's (COPY, index upkeep), so several threads keep several backends busy and
    the set catches up about as fast as its slowest member instead of the sum of all; following live, each thread
    pays its own round's statements, so fewer threads cost less. With two or more threads the background
    projections (`Projection.background`: the back-office read models) follow on their own slower clock: one that
    reads every event (audit_log) in a thread of its own, the rest in one more; the foreground ones are dealt over
    `threads - 1` threads, those that read every event first, each to a thread of its own. With one thread, one
    group has them all, on the foreground's clock."""
    back = [p for p in projections if p.background] if threads > 1 else []
    front = [p for p in projections if p not in back]
    groups = _deal(front, max(1, min(threads - (1 if back else 0), len(front))))
    backs = _deal(back, len([p for p in back if not p.topics]) + 1) if back else []
    return [(g, False) for g in groups if g] + [(g, True) for g in backs if g]


def _deal(projections: Sequence[Projection], n: int) -> list[list[Projection]]:
    """`projections` over `n` groups: each that reads every event (no `topics`) first, to a group of its own while
    there are empty ones, then the rest round-robin over the groups still empty (or over all)."""
    groups: list[list[Projection]] = [[] for _ in range(n)]
    heavy = [p for p in projections if not p.topics]
    light = [p for p in projections if p.topics]
    for i, p in enumerate(heavy):
        groups[i % n].append(p)
    rest = [g for g in groups if not g] or groups
    for i, p in enumerate(light):
        rest[i % len(rest)].append(p)
    return groups


def followers(
    dsn: str,
    projections: Sequence[Projection],
    stop: threading.Event,
    threads: int = 2,
    gather_ms: float = 0.0,
    batch_size: int = 5000,
    background_ms: float = 0.0,
) -> list[Follower]:
    """One Follower per group of `plan_threads`: rounds at most every `gather_ms`, the background groups' at most
    every `background_ms` (Follower._pace). Creates the projections' tables first where missing."""
    ensure(dsn, projections)
    return [
        Follower(dsn, group, stop, batch_size=batch_size, gather_s=(background_ms if background else gather_ms) / 1000)
        for group, background in plan_threads(projections, threads)
    ]


def _started(make: Callable[P, list[Follower]]) -> Callable[P, list[threading.Thread]]:
    def start(*args: P.args, **kwargs: P.kwargs) -> list[threading.Thread]:
        started = []
        for i, f in enumerate(make(*args, **kwargs)):
            t = threading.Thread(target=f.run, name=f"projections-{i}", daemon=True)
            t.start()
            started.append(t)
        return started

    start.__doc__ = "Start the `followers` of these projections (the same arguments), one thread each."
    return start


follow_all = _started(followers)
