"""The API process as clients meet it: open connections it holds at once (workers/processes.py run_api)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

CONNECTIONS = 200  # above the 64 per worker granian was once capped at, which idle keep-alives used up


def test_idle_keep_alive_connections_do_not_keep_the_next_clients_out(live_server: str) -> None:
    """Each of 200 clients opens a keep-alive connection, asks once and keeps it open: every one is answered
    while all the others stay open (a cap of open connections per worker left the rest unaccepted)."""
    url = urlsplit(live_server)
    host, port = url.hostname or "127.0.0.1", url.port or 80

    async def clients() -> list[bytes]:
        writers: list[asyncio.StreamWriter] = []
        try:
            readers = []
            for _ in range(CONNECTIONS):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: tutorconnect\r\n\r\n")
                readers.append(reader)
                writers.append(writer)
            return list(await asyncio.wait_for(asyncio.gather(*(r.readline() for r in readers)), 10))
        finally:
            for w in writers:
                w.close()

    status_lines = asyncio.run(clients())
    assert len(status_lines) == CONNECTIONS
    assert all(line.startswith(b"HTTP/1.1 200") for line in status_lines), {line[:20] for line in status_lines}
