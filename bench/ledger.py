"""Ledger replay rate, as-of balance latency and reconciliation time over ~1,000,000 postings.

Setup: a fresh database; a year of money events seeded by COPY of stored events that our own MetaMapper made
from real aggregates (CreditAccount per student, TutorPayouts per tutor), interleaved over many students as a
live system records them:
  - a student buys a package (CreditGranted: 5, 10 or 20 lessons with one tutor, valid 180 days),
  - books lessons one at a time (CreditHeld), each settled (HoldResolved): 75 % captured (the tutor's net accrues
    on TutorPayouts, EarningAccrued), 15 % released, 10 % a late cancellation capturing half,
  - 30 % of the packages are left part-used and expire (LotExpired); tutors are paid out (PayoutRecorded) every
    15 captured lessons; 60 % of the students buy again.
Generation stops once the events imply --postings postings (counted with `domain.ledger.postings_for`).

Measured:
  1. replay: `projections.generations.rebuild(dsn, Ledger())` builds a new generation of the ledger from the whole
     log and switches to it: entries, postings, seconds, postings/s (target >= 50,000/s), and the share of the
     time spent in `Ledger.apply` (writing rows) vs reading and decoding events;
  2. as-of balances: `api.finance.balance(conn, account, as_of)` on one connection for --queries random
     (account, instant) pairs (40 % student_credit, 30 % tutor_payable, 15 % booking_hold, 15 % the three
     platform accounts), right after the rebuild and again after VACUUM ANALYZE: p50/p99 (target p99 < 10 ms);
  3. reconciliation: `projections.reconcile.reconcile(dsn)` (replays the log in memory and compares it with the
     live ledger): seconds, and that it passes.

Run: .venv/bin/python bench/ledger.py [--quick] [--postings 1000000] [--queries 2000]
"""

from __future__ import annotations

import random
import time
from datetime import datetime
from typing import Any

from _common import emit, machine, make_settings, parser, percentile, rnd, say, seed_money, temp_database

TARGET_POSTINGS_PER_S = 50_000
TARGET_BALANCE_P99_MS = 10.0


def timed_ledger() -> tuple[Any, dict[str, float]]:
    """The Ledger projection, counting the time spent in its apply (writing rows)."""
    from projections.ledger import Ledger

    box = {"apply_s": 0.0, "batches": 0}

    class TimedLedger(Ledger):
        def apply(self, cur: Any, events: Any, t: Any) -> None:
            t0 = time.perf_counter()
            super().apply(cur, events, t)
            box["apply_s"] += time.perf_counter() - t0
            box["batches"] += 1

    return TimedLedger(), box


def balances(dsn: str, samples: list[tuple[str, datetime]]) -> list[float]:
    """Seconds per `api.finance.balance` call (one connection, as the API's read pool hands out)."""
    import psycopg
    from psycopg.rows import dict_row

    from api.finance import balance

    out = []
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        for account, as_of in samples[:50]:  # warm the connection and the cache a little
            balance(conn, account, as_of)
        for account, as_of in samples:
            t0 = time.perf_counter()
            balance(conn, account, as_of)
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--postings", type=int, default=None, help="postings to seed (default 1000000; quick 100000)")
    p.add_argument("--queries", type=int, default=None, help="as-of balance queries (default 2000; quick 500)")
    p.add_argument("--tutors", type=int, default=None, help="tutors (default 2000; quick 300)")
    a = p.parse_args()
    target = a.postings or (100_000 if a.quick else 1_000_000)
    n_queries = a.queries or (500 if a.quick else 2_000)
    n_tutors = a.tutors or (300 if a.quick else 2_000)
    figures: dict[str, Any] = {
        "bench": "ledger",
        **machine(),
        "target_postings_per_s": TARGET_POSTINGS_PER_S,
        "target_balance_p99_ms": TARGET_BALANCE_P99_MS,
    }

    import psycopg

    from projections.generations import rebuild
    from projections.reconcile import reconcile
    from workers.processes import prepare

    rng = random.Random(20260602)
    with temp_database(a.keep_db) as dsn:
        settings = make_settings(dsn)
        prepare(settings)

        economy = seed_money(dsn, rng, target, n_tutors)
        first, last = economy.first, economy.last
        figures.update(
            events=economy.events,
            money_events=economy.money_events,
            postings_seeded=economy.postings,
            students=economy.students,
            tutors=n_tutors,
        )

        say("replay: rebuild(dsn, Ledger()) — a new generation from the whole log, then the switch")
        projection, box = timed_ledger()
        t_last = [time.perf_counter()]

        def progress(pos: int, head: int) -> None:
            if time.perf_counter() - t_last[0] > 10:
                t_last[0] = time.perf_counter()
                say(f"  at position {pos:,} of {head:,}")

        t0 = time.perf_counter()
        generation = rebuild(dsn, projection, progress)
        dt = time.perf_counter() - t0
        with psycopg.connect(dsn) as conn:
            entries = conn.execute("SELECT count(*) FROM ledger_entries").fetchone()[0]  # type: ignore[index]
            postings = conn.execute("SELECT count(*) FROM ledger_postings").fetchone()[0]  # type: ignore[index]
        assert postings == economy.postings, (postings, economy.postings)
        figures.update(
            replay_generation=generation,
            replay_seconds=rnd(dt, 2),
            replay_entries=entries,
            replay_postings=postings,
            replay_postings_per_s=rnd(postings / dt, 0),
            replay_money_events_per_s=rnd(entries / dt, 0),
            replay_apply_share=round(box["apply_s"] / dt, 2),
            replay_batches=box["batches"],
        )
        say(
            f"  generation {generation}: {entries:,} entries, {postings:,} postings in {dt:.1f}s ="
            f" {postings / dt:,.0f} postings/s ({entries / dt:,.0f} money events/s);"
            f" {100 * box['apply_s'] / dt:.0f}% of the time in Ledger.apply over {box['batches']} batches"
        )

        # As-of balances for random accounts and instants.
        kinds = {k: sorted(v) for k, v in economy.accounts.items()}
        platform = ["payment_clearing", "platform_commission", "breakage"]
        samples: list[tuple[str, datetime]] = []
        for _ in range(n_queries):
            r = rng.random()
            if r < 0.40:
                account = rng.choice(kinds["student_credit"])
            elif r < 0.70:
                account = rng.choice(kinds["tutor_payable"])
            elif r < 0.85:
                account = rng.choice(kinds["booking_hold"])
            else:
                account = rng.choice(platform)
            samples.append((account, first + (last - first) * rng.random()))
        for label in ("fresh", "analyzed"):
            if label == "analyzed":
                from projections.runner import physical

                with psycopg.connect(dsn, autocommit=True) as conn:
                    for t in projection.tables:
                        conn.execute(f"VACUUM ANALYZE {physical(t, generation)}")
            lat = balances(dsn, samples)
            by_kind: dict[str, list[float]] = {}
            for (account, _), x in zip(samples, lat, strict=True):
                by_kind.setdefault(account.split(":", 1)[0], []).append(x)
            figures[f"balance_{label}_p50_ms"] = rnd(1000 * percentile(lat, 50), 2)
            figures[f"balance_{label}_p90_ms"] = rnd(1000 * percentile(lat, 90), 2)
            figures[f"balance_{label}_p99_ms"] = rnd(1000 * percentile(lat, 99), 2)
            figures[f"balance_{label}_max_ms"] = rnd(1000 * max(lat), 2)
            worst_kind = max(by_kind, key=lambda k: percentile(by_kind[k], 99))
            figures[f"balance_{label}_worst_kind"] = worst_kind
            figures[f"balance_{label}_worst_kind_p99_ms"] = rnd(1000 * percentile(by_kind[worst_kind], 99), 2)
            say(
                f"as-of balance ({label}{', after VACUUM ANALYZE' if label == 'analyzed' else ', right after the rebuild'}):"
                f" {len(lat):,} queries p50 {1000 * percentile(lat, 50):.2f} ms, p90 {1000 * percentile(lat, 90):.2f} ms,"
                f" p99 {1000 * percentile(lat, 99):.2f} ms, max {1000 * max(lat):.2f} ms"
            )
            say(
                "  p99 by account kind: "
                + ", ".join(f"{k} {1000 * percentile(v, 99):.2f} ms" for k, v in sorted(by_kind.items()))
            )

        say("reconciliation: reconcile(dsn)")
        t0 = time.perf_counter()
        result = reconcile(dsn)
        dt = time.perf_counter() - t0
        figures.update(
            reconcile_seconds=rnd(dt, 2),
            reconcile_ok=result["ok"],
            reconcile_checked_events=result["checked_events"],
            reconcile_events_per_s=rnd(result["checked_events"] / dt, 0),
        )
        say(f"  {'ok' if result['ok'] else 'FAILED'}: {result['checked_events']:,} events checked in {dt:.1f}s")
        if not result["ok"]:
            say("  " + "; ".join(f"{c['name']}: {c['detail']}" for c in result["checks"] if not c["ok"]))

    below = []
    if figures["replay_postings_per_s"] < TARGET_POSTINGS_PER_S:
        below.append("replay_postings_per_s")
    if figures["balance_analyzed_p99_ms"] >= TARGET_BALANCE_P99_MS:
        below.append("balance_analyzed_p99_ms")
    if figures["balance_fresh_p99_ms"] >= TARGET_BALANCE_P99_MS:
        below.append("balance_fresh_p99_ms")
    if not figures["reconcile_ok"]:
        below.append("reconcile_ok")
    figures["below_target"] = below
    figures["meets_target"] = not below
    say(
        f"targets (replay >= {TARGET_POSTINGS_PER_S:,} postings/s, balance p99 < {TARGET_BALANCE_P99_MS:.0f} ms): "
        + ("met" if not below else f"NOT met: {', '.join(below)}")
    )
    emit(figures)


if __name__ == "__main__":
    main()
