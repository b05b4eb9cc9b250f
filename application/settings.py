"""Settings: one frozen Struct built from the environment; only entrypoints call `Settings.from_env()`."""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

import msgspec

DEFAULT_MEETING_URL_TEMPLATE = "https://meet.jit.si/tutorconnect-{booking_id}-{secret}"
DEFAULT_RATE_LIMITS = "register=5/minute,login=10/minute,default=20/minute"
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class RateLimit(msgspec.Struct, frozen=True):
    """`count` requests per `seconds`."""

    count: int
    seconds: int


def parse_rate_limits(text: str) -> dict[str, RateLimit]:
    """Parse `register=5/minute,login=10/minute,default=20/minute` (a missing rule keeps its default)."""
    rules = dict(_parse(DEFAULT_RATE_LIMITS).items())
    rules.update(_parse(text))
    return rules


def _parse(text: str) -> dict[str, RateLimit]:
    out: dict[str, RateLimit] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\w+)\s*=\s*(\d+)\s*/\s*(\d*)\s*(second|minute|hour|day)s?", part)
        if not m:
            raise ValueError(f"RATE_LIMITS: cannot read {part!r} (want name=N/minute)")
        name, count, mult, period = m.groups()
        out[name] = RateLimit(int(count), int(mult or 1) * _PERIODS[period])
    return out


def _meeting_url_template(template: str) -> str:
    """MEETING_URL_TEMPLATE must name `{secret}`: without it a lesson's link could be guessed from its id."""
    if "{secret}" not in template:
        raise SystemExit("MEETING_URL_TEMPLATE must contain {secret} (and may contain {booking_id})")
    return template


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything configurable about one process."""

    database_url: str
    redis_url: str
    s3_endpoint_url: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = "tutorconnect"
    stripe_api_key: str = ""
    stripe_api_base: str = ""
    stripe_webhook_secret: str = ""
    jwt_secret: str
    rate_limits: dict[str, RateLimit] = msgspec.field(default_factory=lambda: parse_rate_limits(""))
    test_clock: bool = False
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    access_token_seconds: int = 1800
    refresh_token_days: int = 30
    pool_size: int = 4
    lock_timeout_s: int = 5
    projector_threads: int = 2
    projector_gather_ms: float = 30.0
    projector_background_ms: float = 100.0
    pre_ping: bool = False
    aggregate_cache: int = 10000
    console_insecure_cookies: bool = False
    meeting_url_template: str = DEFAULT_MEETING_URL_TEMPLATE
    presence_ttl_s: float = 30.0
    smtp_url: str = ""  # smtp://[user:password@]host:port (smtps:// for TLS from the start); empty: no e-mail
    smtp_from: str = "TutorConnect <no-reply@tutorconnect.invalid>"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the process environment (DATABASE_URL, REDIS_URL, S3_*, STRIPE_*, JWT_SECRET, RATE_LIMITS...)."""
        e = dict(os.environ if env is None else env)
        missing = [k for k in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET") if not e.get(k)]
        if missing:
            raise SystemExit(f"missing settings: {', '.join(missing)} (or use `tutorconnect serve`)")
        return cls(
            database_url=e["DATABASE_URL"],
            redis_url=e["REDIS_URL"],
            s3_endpoint_url=e.get("S3_ENDPOINT_URL", ""),
            s3_access_key=e.get("S3_ACCESS_KEY", ""),
            s3_secret_key=e.get("S3_SECRET_KEY", ""),
            s3_bucket=e.get("S3_BUCKET", "tutorconnect"),
            stripe_api_key=e.get("STRIPE_API_KEY", ""),
            stripe_api_base=e.get("STRIPE_API_BASE", ""),
            stripe_webhook_secret=e.get("STRIPE_WEBHOOK_SECRET", ""),
            jwt_secret=e["JWT_SECRET"],
            rate_limits=parse_rate_limits(e.get("RATE_LIMITS", "")),
            test_clock=e.get("TUTORCONNECT_TEST_CLOCK", "") in ("1", "true", "yes"),
            argon2_time_cost=int(e.get("ARGON2_TIME_COST", 3)),
            argon2_memory_kib=int(e.get("ARGON2_MEMORY_KIB", 65536)),
            argon2_parallelism=int(e.get("ARGON2_PARALLELISM", 4)),
            pool_size=int(e.get("DB_POOL_SIZE", 4)),
            lock_timeout_s=int(e.get("POSTGRES_LOCK_TIMEOUT", 5)),
            projector_threads=int(e.get("PROJECTOR_THREADS", 2)),
            projector_gather_ms=float(e.get("PROJECTOR_GATHER_MS", 30.0)),
            projector_background_ms=float(e.get("PROJECTOR_BACKGROUND_MS", 100.0)),
            pre_ping=e.get("DB_PRE_PING", "") in ("1", "true", "yes"),
            aggregate_cache=int(e.get("AGGREGATE_CACHE_SIZE", 10000)),
            console_insecure_cookies=e.get("CONSOLE_INSECURE_COOKIES", "") in ("1", "true", "yes"),
            meeting_url_template=_meeting_url_template(e.get("MEETING_URL_TEMPLATE") or DEFAULT_MEETING_URL_TEMPLATE),
            presence_ttl_s=float(e.get("PRESENCE_TTL_S", 30.0)),
            smtp_url=e.get("SMTP_URL", ""),
            smtp_from=e.get("SMTP_FROM") or "TutorConnect <no-reply@tutorconnect.invalid>",
        )

    def eventsourcing_env(self) -> dict[str, str]:
        """The eventsourcing library's POSTGRES_* settings for our DATABASE_URL."""
        u = urlsplit(self.database_url)
        query = dict(p.split("=", 1) for p in u.query.split("&") if "=" in p)
        host = unquote(query.get("host", u.hostname or "127.0.0.1"))
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "APPLICATION_RECORDER_TOPIC": "application.recorder:Recorder",
            "POSTGRES_DBNAME": unquote(u.path.lstrip("/")) or "postgres",
            "POSTGRES_HOST": host,
            "POSTGRES_PORT": str(u.port or query.get("port", 5432)),
            "POSTGRES_USER": unquote(u.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(u.password or ""),
            "POSTGRES_LOCK_TIMEOUT": str(self.lock_timeout_s),
            "POSTGRES_POOL_SIZE": str(self.pool_size),
            "POSTGRES_MAX_OVERFLOW": str(self.pool_size * 3),
            # Off: a ping is one more round trip on every checkout (a fifth of a booking request's time measured
            # under load), and eventsourcing's recorder methods already retry an OperationalError on a fresh
            # connection, which is what a stale pooled connection raises after a database restart.
            "POSTGRES_PRE_PING": "y" if self.pre_ping else "n",
            # Left off deliberately: with DB functions on, events were skipped under load (see ADR 0002).
            "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
            "CREATE_TABLE": "y",
            # Aggregates stay in memory per process (LRU) and are fast-forwarded with the events stored since,
            # one indexed SELECT as before but no replay of the whole stream: a student's credit account or a
            # tutor's profile is read on every booking. Commands get a deep copy, so a failed command leaves
            # nothing behind in the cache.
            "AGGREGATE_CACHE_MAXSIZE": str(self.aggregate_cache),
            "AGGREGATE_CACHE_FASTFORWARD": "y",
        }
