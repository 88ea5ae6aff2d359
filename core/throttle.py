"""Counting failed attempts (wrong password, wrong code) per account and per client address.

Counters live in plugin state (namespace ``portal.throttle``), so every portal instance sharing the
store counts together. Keys are keyed hashes (HMAC with a random key the portal keeps in its state),
so the store does not list which addresses were tried. A counter is a fixed window: it starts with
the first failure and is forgotten ``per`` later.

Client addresses are counted per IPv4 address and per IPv6 /64 network (one host usually owns a
whole /64). Not per IPv4 /24: a provider's /24 holds hundreds of unrelated households, and an
office behind NAT is one address already; a wider IPv4 bucket would let one guesser lock out the
neighbours without slowing a guesser who has a /24 more than one who has a /32. Behind a
reverse proxy, list it in ``trusted_proxies`` or every visitor shares the proxy's address.

Limits hold under parallel requests: :meth:`Throttle.attempt` counts an attempt *before* it is
checked, in one atomic store operation per counter that refuses to count past the limit
(:meth:`siegel.store.MessageStore.state_update`), so a hundred requests arriving at once cannot
all pass a check that none of them has counted yet. A success gives its count back
(:meth:`Throttle.succeeded`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import attrs

from siegel.plugin import Clock
from siegel.state import PluginState
from siegel.store import StateConflict, StateRecord, StateWrite

NAMESPACE = "portal.throttle"
KEYS_NAMESPACE = "portal.keys"
_KEY_NAME = "throttle-hmac"


async def shared_secret(state: PluginState, name: str = _KEY_NAME) -> bytes:
    """A random 32-byte key kept (encrypted) in plugin state, the same for every instance."""
    for _attempt in range(3):
        record = await state.get(name)
        if record is not None and len(record.value) == 32:
            return record.value
        try:
            await state.put(name, secrets.token_bytes(32), expect_version=0)
        except StateConflict:
            continue  # another instance created it first: read theirs
    raise RuntimeError(f"cannot read or create the portal key {name!r}")


def client_bucket(address: str) -> str:
    """What a client address is counted as: the address (IPv4) or its /64 network (IPv6)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@attrs.frozen(kw_only=True)
class ThrottleStatus:
    """The state of both counters after :meth:`Throttle.check` or :meth:`Throttle.record_failure`."""

    allowed: bool
    #: Failures counted for the account (or the client, whichever is closer to its limit).
    failures: int
    #: When the blocking counter is forgotten; ``None`` while allowed.
    retry_after: timedelta | None = None

    @property
    def retry_after_minutes(self) -> int:
        """Whole minutes to wait, rounded up (for messages), at least 1 when blocked."""
        if self.retry_after is None:
            return 0
        return max(1, -(-int(self.retry_after.total_seconds()) // 60))


@attrs.frozen
class _Counter:
    key: str
    limit: int
    what: str


class Throttle:
    """Failures of one kind (``"password-login"``) for one account and one client.

    Typical use in a form handler (the attempt is counted before the code is checked, so
    parallel requests cannot pass the limit)::

        throttle = portal.throttle("code", recipient_address, limit=5, per=timedelta(minutes=15))
        status = await throttle.attempt()
        if not status.allowed:
            return portal.too_many_attempts(status)
        if code_is_right:
            await throttle.succeeded()
        ...
    """

    def __init__(self, state: PluginState, clock: Clock, secret: Callable[[], Awaitable[bytes]], *,
                 kind: str, scope: str, account: str | None, client: str | None, limit: int,
                 per: timedelta, client_limit: int | None = None) -> None:
        if limit <= 0 or (client_limit is not None and client_limit <= 0):
            raise ValueError("throttle limits must be greater than 0")
        if per <= timedelta(0):
            raise ValueError("the throttle window must be longer than 0")
        self._state = state
        self._clock = clock
        self._secret = secret
        self.kind = kind
        self.per = per
        self._wanted = [(what, value, wanted_limit) for what, value, wanted_limit in (
            ("account", account, limit),
            ("client", None if client is None else client_bucket(client), client_limit or limit),
        ) if value is not None]
        self._scope = scope
        self._resolved: list[_Counter] | None = None

    async def _counters(self) -> list[_Counter]:
        if self._resolved is None:
            secret = await self._secret()
            self._resolved = [
                _Counter(self._key(secret, what, value), wanted_limit, what)
                for what, value, wanted_limit in self._wanted]
        return self._resolved

    def _key(self, secret: bytes, what: str, value: str) -> str:
        message = f"{self._scope}\0{self.kind}\0{what}\0{value}".encode()
        digest = hmac.new(secret, message, hashlib.sha256)
        return f"{self.kind}:{what[0]}:{digest.hexdigest()[:40]}"

    async def _read(self, counter: _Counter, now: datetime) -> tuple[int, datetime | None, int]:
        """(failures, end of window, stored version); the version counts even for expired rows."""
        record = await self._state.store.state_get(self._state.namespace, counter.key)
        if record is None:
            return 0, None, 0
        if record.expires_at is None or record.expires_at <= now:
            return 0, None, record.version
        try:
            failures = int(json.loads(record.value)["n"])
        except (ValueError, KeyError, TypeError):
            return 0, None, record.version
        return failures, record.expires_at, record.version

    def _status(self, readings: Sequence[tuple[_Counter, int, datetime | None]],
                now: datetime) -> ThrottleStatus:
        worst = max(readings, key=lambda r: r[1] / r[0].limit, default=None)
        if worst is None:
            return ThrottleStatus(allowed=True, failures=0)
        blocked = [(c, n, end) for c, n, end in readings if n >= c.limit]
        if not blocked:
            return ThrottleStatus(allowed=True, failures=worst[1])
        until = max(end for _c, _n, end in blocked if end is not None)
        return ThrottleStatus(allowed=False, failures=max(n for _c, n, _e in blocked),
                              retry_after=until - now)

    async def check(self) -> ThrottleStatus:
        """Whether another attempt is allowed now (a reading only: parallel requests may all
        pass it; :meth:`attempt` may not)."""
        now = self._clock.now()
        readings = []
        for counter in await self._counters():
            failures, end, _version = await self._read(counter, now)
            readings.append((counter, failures, end))
        return self._status(readings, now)

    def _counted(self, record: StateRecord | None, now: datetime) -> tuple[int, datetime]:
        """(failures, end of window) of a record as read inside an update."""
        if record is None or record.expires_at is None or record.expires_at <= now:
            return 0, now + self.per
        try:
            return int(json.loads(record.value)["n"]), record.expires_at
        except (ValueError, KeyError, TypeError):
            return 0, now + self.per

    async def _add(self, counter: _Counter, now: datetime, step: int, *,
                   up_to_limit: bool) -> tuple[bool, int, datetime]:
        """Add ``step`` to a counter atomically; with ``up_to_limit`` only while it is below its
        limit. Returns (counted, failures after, end of window)."""

        def update(record: StateRecord | None) -> tuple[StateWrite | None,
                                                         tuple[bool, int, datetime]]:
            failures, end = self._counted(record, now)
            if up_to_limit and failures >= counter.limit:
                return None, (False, failures, end)
            failures = max(0, failures + step)
            return (StateWrite(value=json.dumps({"n": failures}).encode(), expires_at=end),
                    (True, failures, end))

        return await self._state.update(counter.key, update)

    async def attempt(self) -> ThrottleStatus:
        """Count an attempt before it is checked; allowed only while every counter is below its
        limit (then it counts on all of them, else on none). Call :meth:`succeeded` when the
        attempt turns out right."""
        now = self._clock.now()
        counted: list[_Counter] = []
        readings = []
        for counter in await self._counters():
            done, failures, end = await self._add(counter, now, 1, up_to_limit=True)
            if not done:
                for earlier in counted:  # give back what this refused attempt counted
                    await self._add(earlier, now, -1, up_to_limit=False)
                return ThrottleStatus(allowed=False, failures=failures, retry_after=end - now)
            counted.append(counter)
            readings.append((counter, failures, end))
        worst = max((n for _c, n, _e in readings), default=0)
        return ThrottleStatus(allowed=True, failures=worst)

    async def succeeded(self) -> None:
        """The attempt was right: give back what :meth:`attempt` counted (a success is not a
        failure). The failures before it stay; :meth:`reset` forgets the account's."""
        now = self._clock.now()
        for counter in await self._counters():
            await self._add(counter, now, -1, up_to_limit=False)

    async def record_failure(self) -> ThrottleStatus:
        """Count one failure on both counters (atomically each); returns the status after
        counting. Prefer :meth:`attempt`, which also holds under parallel requests."""
        now = self._clock.now()
        readings = []
        for counter in await self._counters():
            _done, failures, end = await self._add(counter, now, 1, up_to_limit=False)
            readings.append((counter, failures, end))
        return self._status(readings, now)

    async def reset(self) -> None:
        """Forget the account's failures (after a success). The client's count stays, so that an
        attacker with one valid account cannot reset their budget for guessing others."""
        for counter in await self._counters():
            if counter.what == "account":
                await self._state.delete(counter.key)
