"""Fixtures for the tutoring tests: the real app backed by a real S3 (seaweedfs) for uploads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from application.settings import Settings


@pytest.fixture
def s3_client(s3_settings: Settings) -> Iterator[Any]:
    """The real Litestar app with S3 configured, its projection followers running in this process."""
    from litestar.testing import TestClient

    from api.app import create_app
    from projections import all_projections, runtime
    from workers.processes import prepare

    prepare(s3_settings)
    stop = threading.Event()
    threads = runtime.follow_all(s3_settings.database_url, all_projections(), stop)
    try:
        with TestClient(create_app(s3_settings), base_url="http://testserver.local", timeout=30) as c:
            yield c
    finally:
        stop.set()
        for t in threads:
            t.join(5)
