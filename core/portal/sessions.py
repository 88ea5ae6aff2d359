"""Server-side sessions in plugin state, so that several portal instances sharing a store agree.

The cookie holds only a random 256-bit id; the record (keyed by a hash of the id, so a look at the
store does not yield live cookies) holds the times, the CSRF token and the data, encrypted at rest
like all plugin state. A session ends after ``session_idle_minutes`` without a request and
``session_absolute_hours`` after it began. Data is kept per tenant: a page of one authority never
sees what a page of another stored, even in the same browser.

Sessions are created lazily: a GET that renders no form and stores nothing leaves no record.
On GET and HEAD a session is read-only (:class:`StateChangeOnGet`); rotating the id, ending the
session and storing data happen in form posts.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import attrs

from siegel.plugin import Clock
from siegel.state import PluginState
from siegel.store import StateConflict

NAMESPACE = "portal.sessions"
COOKIE = "siegel_session"
SECURE_COOKIE = "__Host-siegel_session"
#: Expired records stay this long, so that the portal can say *why* a session ended.
EXPLAIN_GRACE = timedelta(hours=1)

_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
_DELETED = object()


class StateChangeOnGet(RuntimeError):
    """A GET (or HEAD) request tried to change state. Links are followed by mail scanners and
    browsers' prefetchers, so only form posts may change anything."""


class SessionLost(RuntimeError):
    """The session was ended elsewhere (another tab logged out) while this request ran."""


class SessionProblem(enum.Enum):
    """Why the session a browser presented was not used."""

    #: No request for longer than the idle timeout.
    IDLE = "idle"
    #: Older than the absolute timeout.
    ABSOLUTE = "absolute"
    #: Unknown id (ended, rotated, from another installation) or a malformed cookie.
    INVALID = "invalid"


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def _record_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def _iso(value: datetime) -> str:
    return value.isoformat()


@attrs.define(kw_only=True)
class _Record:
    created: datetime
    seen: datetime
    csrf: str
    data: dict[str, dict[str, Any]] = attrs.field(factory=dict)

    def encode(self) -> bytes:
        return json.dumps({"created": _iso(self.created), "seen": _iso(self.seen),
                           "csrf": self.csrf, "data": self.data},
                          separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> _Record:
        value = json.loads(raw.decode("utf-8"))
        return cls(created=datetime.fromisoformat(value["created"]),
                   seen=datetime.fromisoformat(value["seen"]),
                   csrf=str(value["csrf"]), data=dict(value["data"]))


class Session:
    """One browser's session as seen by one tenant's pages: a small mapping of JSON values.

    Reading works on every request; ``session[key] = value``, ``del``, :meth:`pop`,
    :meth:`rotate` and :meth:`end` only in requests that may change state (POST, ...).
    Changes are written when the response is ready, before it is sent.
    """

    def __init__(self, manager: SessionManager, *, tenant: str, writable: bool,
                 session_id: str | None = None, record: _Record | None = None,
                 version: int = 0) -> None:
        self._manager = manager
        self._tenant = tenant
        self._writable = writable
        self._id = session_id
        self._record = record
        self._version = version
        self._changes: dict[str, Any] = {}
        self._needed = False
        self._replaced_id: str | None = None
        self._ended = False

    # -- reading -----------------------------------------------------------------------------

    @property
    def _data(self) -> dict[str, Any]:
        if self._record is None:
            return {}
        return self._record.data.get(self._tenant, {})

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    @property
    def is_new(self) -> bool:
        """True until the browser has presented this session back once."""
        return self._version == 0

    @property
    def created_at(self) -> datetime | None:
        return self._record.created if self._record else None

    @property
    def csrf_token(self) -> str:
        """The synchronizer token forms must carry. Asking for it keeps the session."""
        self._ensure_record()
        self._needed = True
        assert self._record is not None
        return self._record.csrf

    # -- changing ----------------------------------------------------------------------------

    def _check_writable(self, what: str) -> None:
        if not self._writable:
            raise StateChangeOnGet(
                f"session {what} in a GET request: the portal changes state only in form posts "
                "(method=\"post\"), because links are followed by mail scanners and prefetchers")

    def _ensure_record(self) -> None:
        if self._record is None:
            now = self._manager.clock.now()
            self._id = new_session_id()
            self._record = _Record(created=now, seen=now, csrf=new_csrf_token())

    def __setitem__(self, key: str, value: Any) -> None:
        self._check_writable("change")
        json.dumps(value)  # only JSON values are kept; fail here, not when saving
        self._ensure_record()
        assert self._record is not None
        self._record.data.setdefault(self._tenant, {})[key] = value
        self._changes[key] = value
        self._needed = True

    def __delitem__(self, key: str) -> None:
        self._check_writable("change")
        del self._data[key]
        self._changes[key] = _DELETED

    def pop(self, key: str, default: Any = None) -> Any:
        self._check_writable("change")
        if key not in self._data:
            return default
        value = self._data.pop(key)
        self._changes[key] = _DELETED
        return value

    async def rotate(self) -> None:
        """Give the session a new id and a new CSRF token, keeping its data: call it whenever the
        visitor's privileges change (after a login), so that an id planted before cannot be used."""
        self._check_writable("rotation")
        self._ensure_record()
        assert self._record is not None
        if self._version and self._replaced_id is None:
            self._replaced_id = self._id
        self._id = new_session_id()
        self._record.csrf = new_csrf_token()
        self._version = 0
        self._needed = True

    async def end(self) -> None:
        """Log out: delete the session (for every tenant) and its cookie. What the page does
        afterwards (render a form, store something) starts a new session."""
        self._check_writable("end")
        if self._version and self._id is not None:
            await self._manager.state.delete(_record_key(self._id))
        if self._replaced_id is not None:
            await self._manager.state.delete(_record_key(self._replaced_id))
        self._ended = True
        self._id = self._record = self._replaced_id = None
        self._version = 0
        self._changes.clear()
        self._needed = False

    # -- for the portal ----------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        """:meth:`end` was called: the browser's cookie must go unless a new session replaces it."""
        return self._ended

    @property
    def cookie_value(self) -> str | None:
        return self._id

    async def save(self) -> bool:
        """Write what changed; returns True if the browser must be sent the (new) cookie."""
        if self._record is None:
            return False
        manager = self._manager
        now = manager.clock.now()
        assert self._id is not None
        if self._version == 0:
            if not self._needed:
                return False
            self._record.seen = now
            self._version = await manager.state.put(
                _record_key(self._id), self._record.encode(), ttl=manager.ttl(self._record, now),
                expect_version=0)
            if self._replaced_id is not None:
                await manager.state.delete(_record_key(self._replaced_id))
            return True
        if self._changes:
            await self._save_changes(now)
        elif now - self._record.seen >= manager.touch_interval:
            self._record.seen = now
            # On a conflict another request touched or changed the record; its write counts.
            with contextlib.suppress(StateConflict):
                self._version = await manager.state.put(
                    _record_key(self._id), self._record.encode(),
                    ttl=manager.ttl(self._record, now), expect_version=self._version)
        return False

    async def _save_changes(self, now: datetime) -> None:
        manager = self._manager
        assert self._id is not None and self._record is not None
        key = _record_key(self._id)
        for _attempt in range(5):
            self._record.seen = now
            try:
                self._version = await manager.state.put(
                    key, self._record.encode(), ttl=manager.ttl(self._record, now),
                    expect_version=self._version)
                return
            except StateConflict:
                current = await manager.state.get(key)
                if current is None:
                    raise SessionLost("the session was ended while this request ran") from None
                record = _Record.decode(current.value)
                data = record.data.setdefault(self._tenant, {})
                for name, value in self._changes.items():
                    if value is _DELETED:
                        data.pop(name, None)
                    else:
                        data[name] = value
                self._record, self._version = record, current.version
        raise SessionLost("the session kept changing while this request tried to save it")


@attrs.frozen
class LoadedSession:
    session: Session
    #: Set when the browser presented a session that could not be used.
    problem: SessionProblem | None


class SessionManager:
    def __init__(self, state: PluginState, clock: Clock, *, idle: timedelta,
                 absolute: timedelta) -> None:
        self.state = state
        self.clock = clock
        self.idle = idle
        self.absolute = absolute
        #: How often a read-only request refreshes "last seen"; sessions may end up to this much
        #: before the idle timeout, in exchange for not writing on every request.
        self.touch_interval = min(timedelta(minutes=1), idle / 10)

    def ttl(self, record: _Record, now: datetime) -> timedelta:
        deadline = min(record.seen + self.idle, record.created + self.absolute)
        return max(deadline - now, timedelta(0)) + EXPLAIN_GRACE

    def problem_of(self, record: _Record, now: datetime) -> SessionProblem | None:
        if now >= record.created + self.absolute:
            return SessionProblem.ABSOLUTE
        if now >= record.seen + self.idle:
            return SessionProblem.IDLE
        return None

    async def load(self, cookie: str | None, *, tenant: str, writable: bool) -> LoadedSession:
        """The session a cookie names, or a new (not yet stored) one and why the old one failed."""
        if cookie is None:
            return LoadedSession(Session(self, tenant=tenant, writable=writable), None)
        if not _ID.match(cookie):
            return LoadedSession(Session(self, tenant=tenant, writable=writable),
                                 SessionProblem.INVALID)
        key = _record_key(cookie)
        stored = await self.state.get(key)
        record: _Record | None = None
        if stored is not None:
            try:
                record = _Record.decode(stored.value)
            except (ValueError, KeyError, TypeError):
                record = None
        if stored is None or record is None:
            return LoadedSession(Session(self, tenant=tenant, writable=writable),
                                 SessionProblem.INVALID)
        problem = self.problem_of(record, self.clock.now())
        if problem is not None:
            # The record is left to expire (no write here: this may be a GET); the response
            # deletes the cookie, so only this request explains the end.
            return LoadedSession(Session(self, tenant=tenant, writable=writable), problem)
        return LoadedSession(Session(self, tenant=tenant, writable=writable, session_id=cookie,
                                     record=record, version=stored.version), None)
