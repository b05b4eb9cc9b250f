"""dramatiq actors (Redis broker) and the sweeper that schedules them.

Scheduled work is swept from state (tables, read models), never kept as one delayed message per item that a
lost message could drop: each sweep finds everything due and enqueues idempotent jobs."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import dramatiq
import psycopg
import redis
from dramatiq.brokers.redis import RedisBroker

log = logging.getLogger("tutorconnect.workers")

broker = RedisBroker(url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), namespace="tutorconnect")
dramatiq.set_broker(broker)

IDEMPOTENCY_KEEP_HOURS = 48  # the contract promises at least 24 h


@dramatiq.actor(queue_name="maintenance", max_retries=3)
def purge_idempotency_keys() -> None:
    """Forget Idempotency-Key replays older than the retention period (safe to run twice)."""
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        n = conn.execute(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => %s)",
            (IDEMPOTENCY_KEEP_HOURS,),
        ).rowcount
    log.info("purged %d idempotency keys", n)


SCHEDULE: list[tuple[Any, int]] = [(purge_idempotency_keys, 600)]


def sweeper(stop: threading.Event, redis_url: str, tick_s: float = 5.0) -> None:
    """Enqueue each scheduled actor when due; one sweeper across all worker processes (a Redis lease)."""
    r = redis.Redis.from_url(redis_url)
    while not stop.is_set():
        for actor, every_s in SCHEDULE:
            if r.set(f"tutorconnect:sweep:{actor.actor_name}", "1", nx=True, ex=every_s):
                actor.send()
        stop.wait(tick_s)
