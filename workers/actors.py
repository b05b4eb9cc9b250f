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


def sweeper(stop: threading.Event, redis_url: str, tick_s: float = 1.0) -> None:
    """Enqueue each scheduled actor when due; one sweeper across all worker processes (a Redis lease)."""
    r = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    while not stop.is_set():
        try:
            for actor, every_s in SCHEDULE:
                if r.set(f"tutorconnect:sweep:{actor.actor_name}", "1", nx=True, ex=every_s):
                    actor.send()
        except redis.RedisError as e:
            # Redis (the lease and the broker) is away: nothing is lost, since sweeps find due work from state;
            # the next tick after it is back enqueues everything due meanwhile.
            log.warning("sweeper: Redis unavailable (%s); trying again", type(e).__name__)
            stop.wait(2.0)
        stop.wait(tick_s)


def _credit_job(name: str, student_id: str, command: Any) -> None:
    """Run one Money command for a student as the system, correlated by the job's name and the student."""
    from uuid import UUID

    from application.context import acting
    from application.money import Money
    from application.settings import Settings

    settings = Settings.from_env()
    with acting(actor_role="system", correlation_id=f"{name}-{student_id}"):
        command(Money(settings, _clock(settings)), UUID(student_id))


@dramatiq.actor(queue_name="money", max_retries=5)
def expire_credits(student_id: str) -> None:
    """Expire a student's lots that are past due (idempotent: a second run finds nothing due)."""
    _credit_job("expire-credits", student_id, lambda money, sid: money.expire_credits(sid))


@dramatiq.actor(queue_name="money", max_retries=3)
def sweep_credit_expiry() -> None:
    """Find students with lots past their expiry in the student_credits read model and enqueue their expiry."""
    from application.settings import Settings

    settings = Settings.from_env()
    now = _clock(settings).now()
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT DISTINCT student_id FROM student_credit_lots WHERE state = 'open' AND minutes_remaining > 0"
            " AND expires_at <= %s",  # student_credit_lots_due_idx
            (now,),
        ).fetchall()
    for (student_id,) in rows:
        expire_credits.send(str(student_id))


@dramatiq.actor(queue_name="money", max_retries=5)
def warn_expiring_credits(student_id: str) -> None:
    """Record the student's warning of credit expiring within a week (once per lot: a repeat records nothing)."""
    _credit_job("warn-expiring-credits", student_id, lambda money, sid: money.warn_expiring_credits(sid))


@dramatiq.actor(queue_name="money", max_retries=3)
def sweep_expiring_credit() -> None:
    """Find students with unused credit expiring within a week that they were not warned of (student_credits)."""
    from application.settings import Settings
    from domain.credits import EXPIRY_WARNING

    settings = Settings.from_env()
    now = _clock(settings).now()
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT DISTINCT student_id FROM student_credit_lots WHERE state = 'open' AND minutes_remaining > 0"
            " AND NOT expiry_warned AND expires_at > %s AND expires_at <= %s LIMIT 1000",  # student_credit_lots_warn_idx
            (now, now + EXPIRY_WARNING),
        ).fetchall()
    for (student_id,) in rows:
        warn_expiring_credits.send(str(student_id))


def _clock(settings: Any) -> Any:
    from application.clock import Clock

    return Clock(settings.redis_url, settings.test_clock)


SCHEDULE.append((sweep_credit_expiry, 5))
SCHEDULE.append((sweep_expiring_credit, 30))


def _scheduling() -> Any:
    from application.scheduling import Scheduling
    from application.settings import Settings

    settings = Settings.from_env()
    return Scheduling(settings, _clock(settings))


@dramatiq.actor(queue_name="bookings", max_retries=5)
def expire_booking(booking_id: str) -> None:
    """Expire an unanswered request and release its hold (a repeat finds it expired and does nothing)."""
    from uuid import UUID

    from application.context import acting

    with acting(actor_role="system", correlation_id=f"expire-booking-{booking_id}", causation_id=booking_id):
        _scheduling().expire(UUID(booking_id))


@dramatiq.actor(queue_name="bookings", max_retries=5)
def complete_booking(booking_id: str) -> None:
    """Complete a confirmed lesson 24 h after its end and capture its hold (idempotent)."""
    from uuid import UUID

    from application.context import acting
    from domain.errors import WrongStatus

    with acting(actor_role="system", correlation_id=f"complete-booking-{booking_id}", causation_id=booking_id):
        try:
            _scheduling().complete(None, UUID(booking_id))
        except WrongStatus:
            pass  # already completed, cancelled or marked no-show meanwhile: nothing to do


@dramatiq.actor(queue_name="bookings", max_retries=3)
def remind_booking(booking_id: str) -> None:
    """Queue the lesson reminder for both participants (once per booking time)."""
    from uuid import UUID

    from application.context import acting

    with acting(actor_role="system", correlation_id=f"remind-booking-{booking_id}", causation_id=booking_id):
        _scheduling().remind(UUID(booking_id))


@dramatiq.actor(queue_name="bookings", max_retries=5)
def withdraw_booking(booking_id: str) -> None:
    """Cancel a lesson whose tutor's account closed before it started, refunding the student in full
    (idempotent: a booking already ended or started is left alone)."""
    from uuid import UUID

    from application.context import acting

    with acting(actor_role="system", correlation_id=f"withdraw-booking-{booking_id}", causation_id=booking_id):
        _scheduling().withdraw(UUID(booking_id), "the tutor's account was closed")


@dramatiq.actor(queue_name="bookings", max_retries=3)
def sweep_bookings() -> None:
    """Find due work in the bookings read model: expiries, auto-completions, reminders, and lessons of tutors whose
    account closed (the tutors read model)."""
    from application.settings import Settings

    settings = Settings.from_env()
    now = _clock(settings).now()
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        due_expiry = conn.execute(
            "SELECT booking_id FROM bookings WHERE status = 'pending' AND expires_at <= %s LIMIT 1000", (now,)
        ).fetchall()
        due_complete = conn.execute(
            "SELECT booking_id FROM bookings WHERE status = 'confirmed' AND auto_complete_at <= %s LIMIT 1000", (now,)
        ).fetchall()
        due_remind = conn.execute(
            "SELECT booking_id FROM bookings WHERE status = 'confirmed' AND NOT reminded"
            " AND start_at > %s AND start_at <= %s + interval '24 hours' LIMIT 1000",
            (now, now),
        ).fetchall()
        due_withdraw = conn.execute(
            "SELECT b.booking_id FROM bookings b JOIN tutors t ON t.tutor_id = b.tutor_id WHERE NOT t.account_open"
            " AND b.status IN ('pending', 'confirmed') AND b.start_at > %s LIMIT 1000",
            (now,),
        ).fetchall()
    for (bid,) in due_withdraw:
        withdraw_booking.send(str(bid))
    for (bid,) in due_expiry:
        expire_booking.send(str(bid))
    for (bid,) in due_complete:
        complete_booking.send(str(bid))
    for (bid,) in due_remind:
        remind_booking.send(str(bid))


SCHEDULE.append((sweep_bookings, 5))
