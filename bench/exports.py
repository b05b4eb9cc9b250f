"""Journal export: rows/s and the API process's peak RSS while it streams ~1,000,000 postings as CSV (issue 17).

Setup: a fresh database; the money seed of bench/ledger.py (`_common.seed_money`: a year of credit purchases,
holds, settlements, expiries and payouts as stored events, COPYed into the log) implying --rows postings, one
journal row each; `python -m workers.cli projectors` runs until every read model (the ledger among them) has
reached the log head; then `python -m workers.cli api` (granian, 1 worker) is started and an admin logs in.

Measured, one client at a time (this process, httpx, reading the body in chunks as it arrives):
  1. idle RSS of the API (the `workers.cli api` process and its children: granian's worker), after one small
     warm-up export of each format (a day of the journal), as the median of ~2 s of samples;
  2. GET /api/v1/finance/journal?format=csv: rows, seconds, rows/s, time to the first byte; the client checks
     the header, counts the rows and that every entry's debits equal its credits (per currency); a sampler
     thread reads the API's RSS (psutil, every 50 ms, children included) -> peak RSS and growth over idle
     (target: growth <= 50 MB, 10^6 bytes, i.e. the export streams in constant memory); CPU of the API,
     of PostgreSQL (every backend of the benchmark database) and of the client;
  3. the same for format=json (a JournalPage written an entry at a time): the client counts entries and
     postings (`"entry_id":` and `"account":` keys) and checks the document's first and last bytes. Idle RSS
     is sampled again before it (what the CSV export left behind shows as `rss_after_csv_mb`).

Run: .venv/bin/python bench/exports.py [--quick] [--rows 1000000] [--no-json]
"""

from __future__ import annotations

import csv
import random
import resource
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from _common import (
    ADMIN_URL,
    emit,
    free_port,
    group_cpu_seconds,
    machine,
    make_settings,
    parser,
    proc_cpu_seconds,
    rnd,
    say,
    seed_money,
    server_env,
    spawn,
    stop_process,
    temp_database,
    wait_http,
)

TARGET_RSS_GROWTH_MB = 50
MB = 1_000_000
PASSWORD = "Passw0rd-bench"
JOURNAL = "/api/v1/finance/journal"
HEADER = ["entry_id", "position", "recorded_at", "description", "account", "side", "amount", "currency"]


class RssSampler:
    """RSS of a process and all its children, summed, every `every` seconds in a thread: peak and a series."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        """Bytes resident now in the process and its children (a child that just ended counts 0)."""
        import psutil

        total = 0
        for p in (self.root, *self.root.children(recursive=True)):
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def _run(self) -> None:
        t0 = time.perf_counter()
        while True:
            self.samples.append((time.perf_counter() - t0, self.rss()))
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(v for _, v in self.samples)

    def series_mb(self, points: int = 24) -> list[float]:
        """The samples thinned to about `points` values (MB), to show the RSS is flat (or where it climbs)."""
        step = max(1, -(-len(self.samples) // points))
        return [rnd(v / MB) for _, v in self.samples[::step]]


class BackendsCpu:
    """CPU seconds of the PostgreSQL backends of one database, those that connect and leave meanwhile included
    (the export opens its own connection and closes it at the end): each backend's last reading, every 0.2 s."""

    def __init__(self, dbname: str, every: float = 0.2) -> None:
        self.dbname = dbname
        self.every = every
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.readable = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self, conn: Any, baseline: bool) -> None:
        for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.dbname,)):
            cpu = proc_cpu_seconds(pid)
            if cpu is None:
                self.readable = False
                continue
            if baseline:
                self.first[pid] = cpu
            self.last[pid] = cpu

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            self._read(conn, baseline=True)
            self._started.set()
            while not self._stop.wait(self.every):
                self._read(conn, baseline=False)
            self._read(conn, baseline=False)

    def __enter__(self) -> BackendsCpu:
        self._started = threading.Event()
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float | None:
        """CPU seconds used meanwhile (a backend's last < 0.2 s before it left are missed); None if unreadable."""
        if not self.readable:
            return None
        return sum(v - self.first.get(pid, 0.0) for pid, v in self.last.items())


def idle_rss(pid: int, seconds: float = 2.0) -> int:
    """The median RSS over `seconds` of an API with nothing to do."""
    with RssSampler(pid) as s:
        time.sleep(seconds)  # sampling an idle process: there is nothing to wait for but time
    return int(statistics.median(v for _, v in s.samples))


class Download:
    """One streamed GET: its chunks as they arrive, with the bytes, the time to the first byte and the total time."""

    def __init__(self, client: Any, url: str, token: str) -> None:
        self.client, self.url, self.token = client, url, token
        self.size = 0
        self.ttfb = float("nan")
        self.seconds = 0.0

    def chunks(self) -> Iterator[bytes]:
        t0 = time.perf_counter()
        with self.client.stream("GET", self.url, headers={"Authorization": f"Bearer {self.token}"}) as r:
            if r.status_code != 200:
                raise SystemExit(f"GET {self.url}: {r.status_code} {r.read()[:500]!r}")
            for chunk in r.iter_raw():
                if self.size == 0:
                    self.ttfb = time.perf_counter() - t0
                self.size += len(chunk)
                yield chunk
        self.seconds = time.perf_counter() - t0

    def figures(self) -> dict[str, Any]:
        return {"bytes": self.size, "seconds": self.seconds, "ttfb_s": self.ttfb}


def read_csv(client: Any, url: str, token: str) -> dict[str, Any]:
    """Stream the CSV journal: count rows and entries, check the header and each entry's debits = credits."""
    rows = entries = unbalanced = malformed = 0
    header: list[str] | None = None
    position = ""
    sums: dict[str, int] = {}  # debits - credits of the current entry, per currency
    carry = b""
    download = Download(client, url, token)
    for chunk in download.chunks():
        lines = (carry + chunk).split(b"\r\n")
        carry = lines.pop()
        for rec in csv.reader(line.decode() for line in lines):
            if header is None:
                header = rec
                continue
            if len(rec) != len(HEADER):
                malformed += 1
                continue
            rows += 1
            if rec[1] != position:
                if any(sums.values()):
                    unbalanced += 1
                sums = {}
                position = rec[1]
                entries += 1
            amount = int(rec[6])
            sums[rec[7]] = sums.get(rec[7], 0) + (amount if rec[5] == "debit" else -amount)
    if any(sums.values()):
        unbalanced += 1
    if carry:
        malformed += 1  # the body should end with a line break
    return {
        "rows": rows,
        "entries": entries,
        **download.figures(),
        "header_ok": header == HEADER,
        "unbalanced_entries": unbalanced,
        "malformed_rows": malformed,
    }


def read_json(client: Any, url: str, token: str) -> dict[str, Any]:
    """Stream the JSON journal: count entries and postings by their keys, check the page's first and last bytes."""
    keys = {b'"entry_id":': 0, b'"account":': 0}
    # a key split over two chunks is found in its carried tail + the next chunk; the tail is one byte shorter than
    # the key, so a key wholly inside it (counted already) is not counted twice
    tails = dict.fromkeys(keys, b"")
    head = last = b""
    download = Download(client, url, token)
    for chunk in download.chunks():
        if len(head) < 16:
            head += chunk[:16]
        for k in keys:
            window = tails[k] + chunk
            keys[k] += window.count(k)
            tails[k] = window[-(len(k) - 1) :]
        last = (last + chunk)[-32:]
    return {
        "rows": keys[b'"account":'],
        "entries": keys[b'"entry_id":'],
        **download.figures(),
        "shape_ok": head.startswith(b'{"items":[') and last.endswith(b'],"next_cursor":null}'),
    }


def measure(
    name: str, reader: Any, client: Any, url: str, token: str, api_pid: int, dbname: str, idle: int
) -> dict[str, Any]:
    """One export under the RSS sampler, with the CPU it cost the API, PostgreSQL and this client."""
    cpu0 = group_cpu_seconds(api_pid)
    me0 = resource.getrusage(resource.RUSAGE_SELF)
    with RssSampler(api_pid) as sampler, BackendsCpu(dbname) as backends:
        res = reader(client, url, token)
    me1 = resource.getrusage(resource.RUSAGE_SELF)
    api_cpu, db_cpu = group_cpu_seconds(api_pid) - cpu0, backends.seconds
    client_cpu = me1.ru_utime + me1.ru_stime - me0.ru_utime - me0.ru_stime
    rows = max(res["rows"], 1)
    growth = sampler.peak - idle
    out = {
        **res,
        "rows_per_s": res["rows"] / res["seconds"],
        "mb_per_s": res["bytes"] / MB / res["seconds"],
        "idle_rss_mb": idle / MB,
        "peak_rss_mb": sampler.peak / MB,
        "rss_growth_mb": growth / MB,
        "rss_samples": len(sampler.samples),
        "rss_series_mb": sampler.series_mb(),
        "api_cpu_us_per_row": 1e6 * api_cpu / rows,
        "postgres_cpu_us_per_row": 1e6 * db_cpu / rows if db_cpu is not None else None,
        "client_cpu_us_per_row": 1e6 * client_cpu / rows,
        "meets_target": growth / MB <= TARGET_RSS_GROWTH_MB,
    }
    say(
        f"  {name}: {res['rows']:,} rows ({res['entries']:,} entries, {res['bytes'] / MB:,.1f} MB) in"
        f" {res['seconds']:.1f}s = {out['rows_per_s']:,.0f} rows/s, first byte after {1000 * res['ttfb_s']:.0f} ms"
    )
    say(
        f"  API RSS idle {idle / MB:.1f} MB, peak {sampler.peak / MB:.1f} MB: growth {growth / MB:+.1f} MB"
        f" (target <= {TARGET_RSS_GROWTH_MB} MB: {'met' if out['meets_target'] else 'NOT met'});"
        f" series {out['rss_series_mb']}"
    )
    db_text = f"{out['postgres_cpu_us_per_row']:.1f}" if db_cpu is not None else "?"
    say(
        f"  CPU per row: API {out['api_cpu_us_per_row']:.1f} us, PostgreSQL {db_text} us,"
        f" client {out['client_cpu_us_per_row']:.1f} us with its samplers (all on the same cores)"
    )
    return out


def wait_caught_up(dsn: str, timeout: float) -> float:
    """Seconds until every active read model has reached the log head (SystemExit after `timeout`)."""
    from projections import generations

    t0 = time.monotonic()
    last_say = t0
    while True:
        behind = {s.name: s.lag for s in generations.status(dsn) if s.state == "active" and s.lag}
        if not behind:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"projections did not catch up in {timeout:.0f} s: {behind}")
        if time.monotonic() - last_say > 10:
            last_say = time.monotonic()
            say(f"  behind: {behind}")
        time.sleep(0.2)  # projectors run in their own process: ask until nothing lags


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--rows", type=int, default=None, help="journal rows (postings) to seed (default 1000000; quick 100000)"
    )
    p.add_argument("--tutors", type=int, default=None, help="tutors (default 2000; quick 300)")
    p.add_argument("--no-json", action="store_true", help="measure the CSV export only")
    a = p.parse_args()
    target = a.rows or (100_000 if a.quick else 1_000_000)
    n_tutors = a.tutors or (300 if a.quick else 2_000)
    figures: dict[str, Any] = {
        "bench": "exports",
        **machine(),
        "api_workers": 1,
        "target_rss_growth_mb": TARGET_RSS_GROWTH_MB,
    }

    import httpx
    import psycopg
    import redis

    from application import context
    from application.identity import Identity
    from workers.processes import prepare

    rng = random.Random(20260602)
    with temp_database(a.keep_db) as dsn, tempfile.TemporaryDirectory() as tmp:
        dbname = dsn.rsplit("/", 1)[1].split("?", 1)[0]
        settings = make_settings(dsn)
        redis.Redis.from_url(settings.redis_url).flushdb()
        prepare(settings)
        economy = seed_money(dsn, rng, target, n_tutors)
        figures.update(events=economy.events, postings_seeded=economy.postings, students=economy.students)

        email = f"admin-{secrets.token_hex(4)}@example.test"
        with context.acting(actor_role="system"):
            Identity(settings).register(email, PASSWORD, "Bench Admin", "admin", staff=True)

        env = server_env(settings)
        port = free_port()
        root = f"http://127.0.0.1:{port}"
        api_log, proj_log = Path(tmp) / "api.log", Path(tmp) / "projectors.log"
        say("projectors: `workers.cli projectors` until every read model reaches the log head")
        projectors = spawn(["projectors"], env, proj_log)
        api = None
        try:
            dt = wait_caught_up(dsn, timeout=max(300.0, economy.events / 1000))
            figures["catchup_seconds"] = rnd(dt)
            with psycopg.connect(dsn) as conn:
                postings = conn.execute("SELECT count(*) FROM ledger_postings").fetchone()[0]  # type: ignore[index]
            say(f"  caught up in {dt:.1f}s: ledger_postings holds {postings:,} rows")
            assert postings == economy.postings, (postings, economy.postings)

            api = spawn(["api", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], env, api_log)
            wait_http(root, api, api_log, timeout=60)
            say(f"api (granian, 1 worker) on {root}")
            timeout = httpx.Timeout(30.0, read=300.0)
            with httpx.Client(base_url=root, timeout=timeout) as c:
                r = c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
                if r.status_code != 200:
                    raise SystemExit(f"login failed: {r.status_code} {r.text}")
                token = r.json()["access_token"]
                wait_caught_up(dsn, timeout=60)  # the login's event, which the admin's reads wait for

                day = (economy.first + timedelta(days=1)).isoformat().replace("+00:00", "Z")
                cold = RssSampler(api.pid).rss()
                for fmt, reader in (("csv", read_csv), ("json", read_json)):
                    warm = reader(c, f"{JOURNAL}?format={fmt}&to={day}", token)
                    say(f"  warm-up: {fmt}, the first day: {warm['rows']:,} rows")
                idle = idle_rss(api.pid)
                figures.update(cold_rss_mb=rnd(cold / MB), journal_rows_in_db=postings)
                say(f"API RSS: {cold / MB:.1f} MB before any request, {idle / MB:.1f} MB idle after the warm-ups")

                say(f"csv: GET {JOURNAL}?format=csv, the whole journal")
                res = measure("csv", read_csv, c, f"{JOURNAL}?format=csv", token, api.pid, dbname, idle)
                if (
                    not res["header_ok"]
                    or res["rows"] != postings
                    or res["unbalanced_entries"]
                    or res["malformed_rows"]
                ):
                    say(f"  CHECK FAILED: {res}")
                figures.update(
                    rows=res["rows"],
                    entries=res["entries"],
                    seconds=rnd(res["seconds"], 2),
                    rows_per_s=rnd(res["rows_per_s"], 0),
                    mb_per_s=rnd(res["mb_per_s"]),
                    ttfb_ms=rnd(1000 * res["ttfb_s"]),
                    header_ok=res["header_ok"],
                    rows_match_db=res["rows"] == postings,
                    unbalanced_entries=res["unbalanced_entries"],
                    malformed_rows=res["malformed_rows"],
                    idle_rss_mb=rnd(res["idle_rss_mb"]),
                    peak_rss_mb=rnd(res["peak_rss_mb"]),
                    rss_growth_mb=rnd(res["rss_growth_mb"]),
                    rss_samples=res["rss_samples"],
                    rss_series_mb=res["rss_series_mb"],
                    api_cpu_us_per_row=rnd(res["api_cpu_us_per_row"], 2),
                    postgres_cpu_us_per_row=None
                    if res["postgres_cpu_us_per_row"] is None
                    else rnd(res["postgres_cpu_us_per_row"], 2),
                    client_cpu_us_per_row=rnd(res["client_cpu_us_per_row"], 2),
                )
                checks_ok = (
                    res["header_ok"]
                    and res["rows"] == postings
                    and not res["unbalanced_entries"]
                    and not res["malformed_rows"]
                )
                figures["meets_target"] = bool(res["meets_target"] and checks_ok)

                if not a.no_json:
                    # the CSV stream just ended: give granian and the allocator a moment to hand back its last
                    # buffers, or the next idle reading would count them as the idle process
                    time.sleep(1.0)
                    idle2 = idle_rss(api.pid)
                    figures["rss_after_csv_mb"] = rnd(idle2 / MB)
                    say(f"json: GET {JOURNAL}?format=json; API RSS now {idle2 / MB:.1f} MB idle")
                    res = measure("json", read_json, c, f"{JOURNAL}?format=json", token, api.pid, dbname, idle2)
                    figures.update(
                        json_rows=res["rows"],
                        json_entries=res["entries"],
                        json_seconds=rnd(res["seconds"], 2),
                        json_rows_per_s=rnd(res["rows_per_s"], 0),
                        json_mb_per_s=rnd(res["mb_per_s"]),
                        json_ttfb_ms=rnd(1000 * res["ttfb_s"]),
                        json_shape_ok=res["shape_ok"],
                        json_rows_match_db=res["rows"] == postings,
                        json_idle_rss_mb=rnd(res["idle_rss_mb"]),
                        json_peak_rss_mb=rnd(res["peak_rss_mb"]),
                        json_rss_growth_mb=rnd(res["rss_growth_mb"]),
                        json_rss_series_mb=res["rss_series_mb"],
                        json_api_cpu_us_per_row=rnd(res["api_cpu_us_per_row"], 2),
                        json_client_cpu_us_per_row=rnd(res["client_cpu_us_per_row"], 2),
                        json_meets_target=bool(res["meets_target"] and res["shape_ok"] and res["rows"] == postings),
                    )
        finally:
            if api is not None:
                stop_process(api)
            stop_process(projectors)

    say(
        f"target (CSV export: API RSS growth <= {TARGET_RSS_GROWTH_MB} MB over idle, checks pass): "
        + ("met" if figures["meets_target"] else "NOT met")
    )
    emit(figures)


if __name__ == "__main__":
    main()
