"""Faults under a steady mixed load (each run bounded to well under a minute): kill -9 of the API, a projector
process and the worker (`serve` restarts them); a PostgreSQL restart; Redis stopped for a while; S3 frozen for a
while. Each ends with: every acknowledged command in the log exactly once, no 500 and no hang (503 while a
dependency is down), every read model at the head, the ledger reconciled, and every kind of command working
again without anyone's help."""

from __future__ import annotations

import time

from tests.platform.faults.load import Load, World, check_answers, check_exactly_once, check_recovered, summary
from tests.platform.faults.stack import Stack

BEFORE_S = 3.0  # load before the fault
AFTER_S = 6.0  # load after recovery


def _run(stack: Stack, world: World, fault: object, connection_errors: bool = False, expect: str | None = None) -> None:
    """Load, fault, recovery, checks; `expect`: a problem type that must have answered while the fault lasted (the
    dependency's outage was met by the API, not only by the client)."""
    with Load(stack, world) as load:
        time.sleep(BEFORE_S)  # the load runs on its own threads meanwhile
        fault()  # type: ignore[operator]
        stack.wait_ready()
        recovered = time.monotonic()
        time.sleep(AFTER_S)
    outcomes = load.outcomes
    print(f"\n{fault.__name__ if hasattr(fault, '__name__') else fault}: {summary(outcomes)}")  # shown with -s
    check_answers(outcomes, connection_errors)
    if expect is not None:
        assert any(o.data.get("type", "").endswith("/" + expect) for o in outcomes), f"no {expect}: {summary(outcomes)}"
    check_recovered(stack, world, outcomes, recovered)
    check_exactly_once(stack, outcomes)


def test_kill_9_of_the_api(stack: Stack, world: World) -> None:
    def fault() -> None:
        old = stack.kill_child("api")
        stack.wait_restarted("api", old)

    _run(stack, world, fault, connection_errors=True)


def test_kill_9_of_the_projectors(stack: Stack, world: World) -> None:
    def fault() -> None:
        old = stack.kill_child("projectors")
        stack.wait_restarted("projectors", old)

    _run(stack, world, fault)


def test_kill_9_of_the_worker(stack: Stack, world: World) -> None:
    def fault() -> None:
        old = stack.kill_child("worker")
        stack.wait_restarted("worker", old)

    _run(stack, world, fault)


def test_postgres_restart(stack: Stack, world: World) -> None:
    _run(stack, world, lambda: stack.restart_postgres(down_s=3.0), expect="service-unavailable")


def test_redis_stopped_for_a_while(stack: Stack, world: World) -> None:
    def fault() -> None:
        stack.stop_redis()
        time.sleep(4.0)  # the outage
        stack.start_redis()

    _run(stack, world, fault)


def test_s3_frozen_for_a_while(stack: Stack, world: World) -> None:
    def fault() -> None:
        stack.s3.pause()
        time.sleep(10.0)  # the outage: longer than a client PUT timeout plus the API's S3 read timeout
        stack.s3.resume()

    _run(stack, world, fault, expect="storage-unavailable")
