"""Time, injectable: every deadline (holds, retries, token expiry) reads a :class:`Clock`."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock for tests that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


def new_message_id() -> str:
    """A 26-character, time-ordered, unguessable id (48 bits of milliseconds, 80 random bits)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
