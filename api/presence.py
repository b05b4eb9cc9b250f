"""Who is online: each API process's WebSocket users in Redis, and `presence` changes relayed to every process.

Presence is ephemeral: it is never recorded in the event log. In Redis (keys under `tutorconnect:presence:`):
- `procs`, a sorted set of API processes scored by when each stops counting (its last heartbeat + `ttl`);
- `conns:{proc}`, the users a process has at least one socket of; `user:{id}`, the processes holding that user;
- `seen`, a hash of when each user's last socket closed (milliseconds, Redis's clock);
- the channel `tutorconnect:presence:{db}` carries `{"user_id", "online"}` whenever a user's first socket on any
  process opens or their last one closes.
A user is online while some process holding them still counts. Each process heartbeats every `ttl / 3`; a
process that died without closing its sockets stops counting `ttl` after its last heartbeat (30 s by default,
PRESENCE_TTL_S), and the next heartbeat of any other process (within `ttl / 3` more) reaps it: its users that are
not online elsewhere are announced offline, last seen at its last heartbeat. Each decision and its announcement
is one Lua script, so two processes changing one user at once announce in the order Redis ran them.

Redis being away never holds up a socket or GET /threads: a socket's arrival and departure only change this
process's counts in memory, which a background task tells Redis (the whole set again after any failure, or
after this process was reaped); answers say offline and never seen while Redis cannot be asked (logged once per
outage, then skipped for 2 s at a time)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec
import redis
import redis.asyncio as aredis

from api.services import Breaker

log = logging.getLogger("tutorconnect.presence")
PREFIX = "tutorconnect:presence:"
_decode = msgspec.json.Decoder().decode

# Shared by the scripts: KEYS none (every key is under ARGV[1]); `now` is Redis's clock in milliseconds.
_LIVE = """
local p = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local procs = p .. 'procs'
local function live(u, except)
  local n = 0
  for _, q in ipairs(redis.call('SMEMBERS', p .. 'user:' .. u)) do
    local s = redis.call('ZSCORE', procs, q)
    if q ~= except and s and tonumber(s) > now then n = n + 1 end
  end
  return n
end
local function announce(channel, u, online)
  redis.call('PUBLISH', channel, '{"user_id":"' .. u .. '","online":' .. online .. '}')
end
"""

# ARGV: prefix, channel, proc, ttl_ms, exact (1: the users after n are this process's whole set), n, users
# added (or the whole set)..., users removed... -> -1 (this process no longer counted: call again with its whole
# set) or 0.
_CHANGE = (
    _LIVE
    + """
local channel, proc, ttl, exact, n = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local mine = p .. 'conns:' .. proc
local score = redis.call('ZSCORE', procs, proc)
local lost = (not score) or tonumber(score) <= now
if lost and not exact then return -1 end
redis.call('ZADD', procs, now + ttl, proc)
local adds, removes = {}, {}
for i = 7, 6 + n do adds[#adds + 1] = ARGV[i] end
if exact then
  local want = {}
  for _, u in ipairs(adds) do want[u] = true end
  for _, u in ipairs(redis.call('SMEMBERS', mine)) do
    if not want[u] then removes[#removes + 1] = u end
  end
else
  for i = 7 + n, #ARGV do removes[#removes + 1] = ARGV[i] end
end
for _, u in ipairs(removes) do
  redis.call('SREM', mine, u)
  redis.call('SREM', p .. 'user:' .. u, proc)
  if live(u, proc) == 0 then
    redis.call('HSET', p .. 'seen', u, now)
    announce(channel, u, 'false')
  end
end
for _, u in ipairs(adds) do
  local had = redis.call('SISMEMBER', mine, u) == 1 and not lost
  redis.call('SADD', mine, u)
  redis.call('SADD', p .. 'user:' .. u, proc)
  if not had and live(u, proc) == 0 then announce(channel, u, 'true') end
end
return 0
"""
)

# ARGV: prefix, channel, proc (to leave out: the caller), ttl_ms -> processes reaped. A dead process's users that
# no live process holds are announced offline, last seen at its last heartbeat.
_REAP = (
    _LIVE
    + """
local channel, me, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])
local dead = redis.call('ZRANGEBYSCORE', procs, '-inf', now)
for _, q in ipairs(dead) do
  if q ~= me then
    local last = tonumber(redis.call('ZSCORE', procs, q)) - ttl
    redis.call('ZREM', procs, q)
    for _, u in ipairs(redis.call('SMEMBERS', p .. 'conns:' .. q)) do
      redis.call('SREM', p .. 'user:' .. u, q)
      if live(u, q) == 0 then
        local seen = tonumber(redis.call('HGET', p .. 'seen', u) or '0')
        redis.call('HSET', p .. 'seen', u, math.max(seen, last))
        announce(channel, u, 'false')
      end
    end
    redis.call('DEL', p .. 'conns:' .. q)
  end
end
return #dead
"""
)

# ARGV: prefix, ttl_ms, users... -> now, then per user: 1/0 online, last seen (ms) or -1.
_STATE = (
    _LIVE
    + """
local ttl = tonumber(ARGV[2])
local out = {now}
for i = 3, #ARGV do
  local u = ARGV[i]
  local online, last = 0, tonumber(redis.call('HGET', p .. 'seen', u) or '-1')
  for _, q in ipairs(redis.call('SMEMBERS', p .. 'user:' .. u)) do
    local s = redis.call('ZSCORE', procs, q)
    if s and tonumber(s) > now then online = 1 elseif s then last = math.max(last, tonumber(s) - ttl) end
  end
  out[#out + 1] = online
  out[#out + 1] = last
end
return out
"""
)


class Seen(msgspec.Struct, frozen=True):
    """A user's presence as GET /threads tells it: online now, else when they were last seen (None: never, as far
    as Redis knows)."""

    online: bool
    last_seen_at: datetime | None


NEVER = Seen(False, None)


def channel_of(redis_url: str) -> str:
    """Pub/sub channels ignore the database number; the channel carries it, so databases sharing a server (tests,
    benchmarks) hear only their own."""
    db = urlsplit(redis_url).path.strip("/") or "0"
    return f"{PREFIX}{db}"


def _instant(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class Presence:
    """This process's WebSocket users as Redis knows them, and the presence changes of every process handed to
    `relay(user_id, online)` (the hub sends them to the other party of each of that user's threads)."""

    def __init__(
        self, redis_url: str, ttl_s: float, relay: Callable[[str, bool], Awaitable[None]] | None = None
    ) -> None:
        self.redis_url = redis_url
        self.ttl_ms = int(ttl_s * 1000)
        self.beat_s = ttl_s / 3
        self.relay = relay
        self.channel = channel_of(redis_url)
        self.proc = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.local: Counter[str] = Counter()
        self.told: set[str] = set()  # the users Redis holds for this process
        self.exact = True  # the next change sends the whole set (at start, after a failure or being reaped)
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False
        self.breaker = Breaker()
        self._sync_redis = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
        self._state = self._sync_redis.register_script(_STATE)
        self._aredis: aredis.Redis | None = None
        self._listener: aredis.Redis | None = None

    # ------------------------------------------------------------------ this process's sockets (event loop)

    def connected(self, user_id: str) -> None:
        """A socket of `user_id` opened here (no I/O: the change reaches Redis in the background)."""
        self.local[user_id] += 1
        if self.local[user_id] == 1:
            self.wake.set()

    def disconnected(self, user_id: str) -> None:
        """A socket of `user_id` closed here."""
        self.local[user_id] -= 1
        if self.local[user_id] <= 0:
            del self.local[user_id]
            self.wake.set()

    async def start(self) -> None:
        """Start telling Redis (and hearing other processes); on the app's startup."""
        self._aredis = aredis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=1)
        # no read timeout for the subscription (it waits for changes); a ping every 10 s notices a dead server
        self._listener = aredis.Redis.from_url(self.redis_url, socket_connect_timeout=1, health_check_interval=10)
        self.tasks = [asyncio.create_task(self._keep_told()), asyncio.create_task(self._listen())]

    async def stop(self) -> None:
        """Leave Redis at once (our users no longer online elsewhere are announced offline); on shutdown."""
        self.stopping = True
        for t in self.tasks:
            t.cancel()
        if self.tasks:  # bounded: a client library may turn the cancellation into an error the loops go on after
            await asyncio.wait(self.tasks, timeout=2)
        if self._aredis is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._leave(), 2)
            await self._aredis.aclose()
        if self._listener is not None:
            await self._listener.aclose()
        self._sync_redis.close()

    async def _leave(self) -> None:
        assert self._aredis is not None
        await self._change([], [], exact=True)
        await self._aredis.zrem(f"{PREFIX}procs", self.proc)

    async def _keep_told(self) -> None:
        """Tell Redis each change as it happens, and heartbeat (and reap dead processes) every `ttl / 3`."""
        due = 0.0
        while not self.stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), max(0.0, due - time.monotonic()))
            self.wake.clear()
            try:
                await self._tell()
                if time.monotonic() >= due:
                    assert self._aredis is not None
                    await self._aredis.eval(_REAP, 0, PREFIX, self.channel, self.proc, self.ttl_ms)
                    due = time.monotonic() + self.beat_s
            except (redis.RedisError, OSError) as e:
                self.exact = True
                self.breaker.failed("Redis (presence)", e)
                due = time.monotonic() + 1.0  # try again in a second

    async def _tell(self) -> None:
        want = set(self.local)
        if self.exact:
            await self._change(sorted(want), [], exact=True)
        elif await self._change(sorted(want - self.told), sorted(self.told - want), exact=False) < 0:
            await self._change(sorted(want), [], exact=True)  # reaped (or Redis lost its data): all over again
        self.told, self.exact = want, False

    async def _change(self, adds: list[str], removes: list[str], exact: bool) -> int:
        assert self._aredis is not None
        args: list[Any] = [PREFIX, self.channel, self.proc, self.ttl_ms, int(exact), len(adds), *adds, *removes]
        return int(await self._aredis.eval(_CHANGE, 0, *args))

    async def _listen(self) -> None:
        """Hand every process's presence changes to `relay`; resubscribe after Redis comes back."""
        while not self.stopping:
            try:
                assert self._listener is not None
                async with self._listener.pubsub() as ps:
                    await ps.subscribe(self.channel)
                    async for msg in ps.listen():
                        if msg.get("type") != "message" or self.relay is None:
                            continue
                        change = _decode(msg["data"])
                        try:
                            await self.relay(change["user_id"], bool(change["online"]))
                        except Exception:
                            log.exception("presence change of %s not relayed", change.get("user_id"))
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as e:
                self.breaker.failed("Redis (presence changes)", e)
                await asyncio.sleep(1.0)

    # ------------------------------------------------------------------ answers (any thread)

    def seen(self, user_ids: Iterable[str]) -> dict[str, Seen]:
        """Each user's presence (online: now as their last seen); never seen while Redis cannot be asked."""
        users = list(dict.fromkeys(user_ids))
        if not users or self.breaker.open:
            return dict.fromkeys(users, NEVER)
        try:
            raw: list[Any] = self._state(args=[PREFIX, self.ttl_ms, *users])
        except redis.RedisError as e:
            self.breaker.failed("Redis (presence)", e)
            return dict.fromkeys(users, NEVER)
        now = int(raw[0])
        out: dict[str, Seen] = {}
        for i, u in enumerate(users):
            online, last = int(raw[1 + 2 * i]), int(raw[2 + 2 * i])
            out[u] = Seen(True, _instant(now)) if online else Seen(False, _instant(last) if last >= 0 else None)
        return out
