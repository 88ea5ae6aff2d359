"""The embedded store: SQLite in WAL mode. One connection, used from one dedicated thread; the event
loop never blocks on disk.

Durability: accepting a message commits with ``synchronous=FULL`` (the WAL is fsync'd before
:meth:`SQLiteStore.accept` returns, so the listener's 250 is only ever sent for a message on disk).
Messages accepted while the store thread is busy share the next such commit (group commit: one
fsync for all of them; each call returns after the commit that holds its message).
Every other transaction uses ``synchronous=NORMAL``: it survives a crash of the process, and the
next FULL commit (or checkpoint) hardens it against power loss too, because the WAL is written in
order. A power loss can therefore only undo state changes made after the last accepted message,
which makes the gateway redo them (a copy may be delivered twice); it never loses a message.

Over 600 lines because it is one backend implementing one interface
(:class:`~siegel.store.MessageStore`); its SQL and the transactions that keep the invariants
above belong together."""

from __future__ import annotations

import asyncio
import builtins
import fcntl
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from siegel import store_sql as q
from siegel.addresses import Address
from siegel.crypto import ContentCipher, SealedContent
from siegel.model import AuditEvent, Envelope, Message, Origin, RecipientState
from siegel.store import (
    ContentDestroyed,
    Job,
    LeaseLost,
    MessageNotFound,
    MessageStore,
    RecipientRecord,
    RecipientUpdate,
    StateConflict,
    StateRecord,
    StateUpdate,
    StoreError,
)
from siegel.store_sql import SCHEMA_VERSION, check_schema

_T = TypeVar("_T")
_R = TypeVar("_R")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    origin TEXT NOT NULL,
    channel TEXT,
    mail_from TEXT NOT NULL,
    received_at TEXT NOT NULL,
    size INTEGER NOT NULL,
    key_id TEXT,
    wrapped_key BLOB,
    content BLOB
);
CREATE TABLE IF NOT EXISTS recipients (
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    starts INTEGER NOT NULL DEFAULT 0,
    handoffs INTEGER NOT NULL DEFAULT 0,
    protect_retries INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    hold_until TEXT,
    lease TEXT,
    lease_until TEXT,
    released INTEGER NOT NULL DEFAULT 0,
    level INTEGER,
    method TEXT,
    reasons TEXT NOT NULL DEFAULT '[]',
    detail TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    PRIMARY KEY (message_id, address)
);
CREATE INDEX IF NOT EXISTS recipients_due ON recipients (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS recipients_hold ON recipients (state, hold_until);
CREATE INDEX IF NOT EXISTS recipients_address ON recipients (address);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    tenant TEXT,
    message_id TEXT,
    recipient TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_message ON events (message_id);
CREATE TABLE IF NOT EXISTS plugin_state (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    key_id TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    value BLOB NOT NULL,
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    expires_at TEXT,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS plugin_state_expiry ON plugin_state (expires_at);
-- Covers counting a key range of unexpired records (the postbox's unread marks) without
-- reading a single row: 2 ms instead of 75 ms for 10 000 records.
CREATE INDEX IF NOT EXISTS plugin_state_keys ON plugin_state (namespace, key, expires_at);
"""


# Each step takes a store from the version it is keyed by to the next one.
_MIGRATIONS = {
    # 2: per copy, the processing starts that did not finish (poison messages) and the
    # protection method's "retry later" answers in a row.
    1: ("ALTER TABLE recipients ADD COLUMN starts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE recipients ADD COLUMN protect_retries INTEGER NOT NULL DEFAULT 0"),
    # 3: a recipient's copies (the account view) without reading every copy.
    2: ("CREATE INDEX IF NOT EXISTS recipients_address ON recipients (address)",),
    # 4: per copy, handoffs to the receiving side whose outcome was never recorded.
    3: ("ALTER TABLE recipients ADD COLUMN handoffs INTEGER NOT NULL DEFAULT 0",),
}


def _migrate(db: sqlite3.Connection, version: int) -> None:
    while version < SCHEMA_VERSION:
        for statement in _MIGRATIONS[version]:
            db.execute(statement)
        version += 1
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))


def _version(db: sqlite3.Connection) -> int | None:
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").fetchone():
        return None
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return None if row is None else int(row[0])


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dt(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _dt_required(value: str) -> datetime:
    result = _dt(value)
    assert result is not None
    return result


class _Accepting:
    """A message waiting for the next durable commit, and what its caller awaits."""

    __slots__ = ("done", "events", "message")

    def __init__(self, message: Message, events: tuple[AuditEvent, ...],
                 done: asyncio.Future[None]) -> None:
        self.message = message
        self.events = events
        self.done = done


def _settle(done: asyncio.Future[None], failure: BaseException | None) -> None:
    if done.done():  # the caller gave up waiting (its client went away)
        return
    if failure is None:
        done.set_result(None)
    else:
        done.set_exception(failure)


class SQLiteStore(MessageStore):
    def __init__(self, path: Path, cipher: ContentCipher) -> None:
        self.path = path
        self.cipher = cipher
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._lock: BinaryIO | None = None
        #: Messages waiting for the next durable commit (see :meth:`accept`), and the guard for
        #: handing them from the event loop to the store thread.
        self._accepting: list[_Accepting] | None = None
        self._accepting_guard = threading.Lock()

    async def _run(self, function: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._executor is None or self._db is None:
            raise StoreError("the store is not open")
        db = self._db
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function, db)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    async def open(self) -> None:
        """Open the database, creating the schema in an empty one; refuse an older schema
        (:meth:`migrate` first) or a newer one."""
        await self._open(migrate=False)

    async def migrate(self) -> tuple[int, int]:
        before = await self._open(migrate=True)
        return before, SCHEMA_VERSION

    async def _open(self, *, migrate: bool) -> int:
        if self._db is not None:
            if migrate:
                await self.close()
            else:
                return SCHEMA_VERSION
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="siegel-sqlite")
        found = 0

        def connect() -> sqlite3.Connection:
            nonlocal found
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=30)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA foreign_keys=ON")
                version = _version(db)
                found = version or 0
                if version is not None and (not migrate or version > SCHEMA_VERSION):
                    check_schema(str(self.path), version)
                elif version is not None:
                    self._transaction(db, lambda: _migrate(db, version))
                db.executescript(_SCHEMA)
                if version is None:
                    db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            except BaseException:
                db.close()
                raise
            return db

        loop = asyncio.get_running_loop()
        try:
            self._db = await loop.run_in_executor(self._executor, connect)
        except (sqlite3.Error, StoreError) as exc:
            self._executor.shutdown()
            self._executor = None
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{self.path}: {exc}") from exc
        return found

    async def take_over(self) -> None:
        """Only one process serves an SQLite store: it holds an exclusive lock on
        ``<database>.lock`` while it runs, so the leases of any earlier holder died with it."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        handle = lock_path.open("a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreError(f"{self.path}: another siegel process is serving this store "
                             f"(it holds {lock_path})") from None
        self._lock = handle
        await self._run(lambda db: self._transaction(db, lambda: db.execute(
            "UPDATE recipients SET lease = NULL, lease_until = NULL")))

    async def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if self._db is not None:
            db = self._db
            await self._run(lambda _db: db.close())
            self._db = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @staticmethod
    def _transaction(db: sqlite3.Connection, work: Callable[[], _T]) -> _T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    def _insert_message(self, db: sqlite3.Connection, message: Message) -> None:
        sealed = self.cipher.seal_stream(message.id, message.raw)
        mail_from = str(message.envelope.mail_from) if message.envelope.mail_from else ""
        # The row gets a zero-filled blob of the right size that the sealed content is then
        # written into piece by piece: binding the whole ciphertext would hold it twice more
        # (once as bytes, once as SQLite's own copy of the bound value).
        row = db.execute(
            "INSERT INTO messages (id, tenant, origin, channel, mail_from, received_at, size,"
            " key_id, wrapped_key, content) VALUES (?,?,?,?,?,?,?,?,?,zeroblob(?))",
            (message.id, message.tenant, message.origin.value, message.channel, mail_from,
             _ts(message.received_at), len(message.raw), sealed.key_id, sealed.wrapped_key,
             sealed.size),
        ).lastrowid
        assert row is not None
        with db.blobopen("messages", "content", row) as blob:
            for chunk in sealed.chunks:
                blob.write(chunk)
        db.executemany(q.RECIPIENT_ROWS_SQL, q.recipient_rows(
            message.id, message.envelope.rcpt_to, _ts(message.received_at)))

    async def accept(self, message: Message, events: Sequence[AuditEvent] = ()) -> None:
        """Store ``message`` durably. The call joins the batch waiting for the store thread (or
        starts one); the batch is committed in one transaction with one fsync, each message in a
        savepoint of its own, so that one message failing fails only its own call."""
        if self._executor is None or self._db is None:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        item = _Accepting(message, tuple(events), loop.create_future())
        with self._accepting_guard:
            batch = self._accepting
            if batch is None:
                batch = self._accepting = []
                loop.run_in_executor(self._executor, self._commit_accepted, self._db, loop, batch)
            batch.append(item)
        await item.done

    def _commit_accepted(self, db: sqlite3.Connection, loop: asyncio.AbstractEventLoop,
                         batch: list[_Accepting]) -> None:
        with self._accepting_guard:
            if self._accepting is batch:
                self._accepting = None
            items = list(batch)
        failures: dict[int, BaseException] = {}
        try:
            db.execute("PRAGMA synchronous=FULL")
            try:
                def work() -> None:
                    for number, item in enumerate(items):
                        db.execute("SAVEPOINT accept")
                        try:
                            self._insert_message(db, item.message)
                            self._insert_events(db, item.events)
                        except Exception as exc:
                            db.execute("ROLLBACK TO accept")
                            failures[number] = exc
                        db.execute("RELEASE accept")

                self._transaction(db, work)
            finally:
                db.execute("PRAGMA synchronous=NORMAL")
        except BaseException as exc:
            failures = dict.fromkeys(range(len(items)), exc)
        for number, item in enumerate(items):
            failure = failures.get(number)
            if isinstance(failure, sqlite3.Error):
                failure = StoreError(f"{self.path}: {failure}")
            loop.call_soon_threadsafe(_settle, item.done, failure)

    async def load(self, message_id: str) -> Message:
        def query(db: sqlite3.Connection) -> tuple[Any, bytes | None, list[str]]:
            row = db.execute(
                "SELECT rowid, tenant, origin, channel, mail_from, received_at, key_id,"
                " wrapped_key, content IS NOT NULL FROM messages WHERE id = ?",
                (message_id,)).fetchone()
            raw = None
            if row is not None and row[-1]:
                # Read straight into one bytes object; selecting the column would make SQLite
                # assemble its own copy first.
                with db.blobopen("messages", "content", row[0], readonly=True) as blob:
                    content = blob.read()
                # Opened here, so that the sealed copy is gone before the plain one is returned:
                # a result handed back through the executor stays referenced by its futures
                # until the event loop next runs, which for a large message was through the
                # whole parse.
                raw = self.cipher.open(message_id, SealedContent(row[6], row[7], content))
                del content
            rcpts = [r[0] for r in db.execute(
                "SELECT address FROM recipients WHERE message_id = ? ORDER BY position",
                (message_id,))]
            return row, raw, rcpts

        row, raw, rcpts = await self._run(query)
        if row is None:
            raise MessageNotFound(f"no message {message_id}")
        _rowid, tenant, origin, channel, mail_from, received_at, _key_id, _wrapped, _present = row
        if raw is None:
            raise ContentDestroyed(f"the content of message {message_id} was destroyed")
        return Message(
            id=message_id,
            tenant=tenant,
            envelope=Envelope(
                Address.load(mail_from) if mail_from else None,
                tuple(Address.load(r) for r in rcpts),
            ),
            raw=raw,
            received_at=_dt_required(received_at),
            origin=Origin(origin),
            channel=channel,
        )

    async def claim_due(self, now: datetime, limit: int, lease_seconds: float) -> list[Job]:
        stamp = _ts(now)
        lease_until = _ts(now + timedelta(seconds=lease_seconds))

        def work(db: sqlite3.Connection) -> list[Job]:
            rows = db.execute(
                "SELECT r.message_id, r.address, r.state, r.attempts, r.released, m.received_at,"
                " r.hold_until, r.starts, r.protect_retries, r.handoffs"
                " FROM recipients r JOIN messages m ON m.id = r.message_id"
                " WHERE ((r.state = 'accepted' AND r.next_attempt_at <= ?)"
                "     OR (r.state = 'held' AND r.hold_until IS NOT NULL AND r.hold_until <= ?))"
                "   AND (r.lease_until IS NULL OR r.lease_until <= ?)"
                " ORDER BY r.next_attempt_at LIMIT ?", (stamp, stamp, stamp, limit)).fetchall()
            jobs = []
            for (message_id, address, state, attempts, released, received_at, hold_until,
                 starts, protect_retries, handoffs) in rows:
                lease = secrets.token_hex(8)
                # Counted before processing begins and reset when it ends (finish): what is
                # left counts the starts that a crash or a hang cut off.
                db.execute(
                    "UPDATE recipients SET lease = ?, lease_until = ?, starts = starts + 1"
                    " WHERE message_id = ? AND address = ?",
                    (lease, lease_until, message_id, address))
                jobs.append(Job(
                    message_id=message_id, recipient=Address.load(address),
                    state=RecipientState(state), attempts=attempts, released=bool(released),
                    lease=lease, received_at=_dt_required(received_at), hold_until=_dt(hold_until),
                    starts=starts + 1, protect_retries=protect_retries, handoffs=handoffs,
                ))
            return jobs

        return await self._run(lambda db: self._transaction(db, lambda: work(db)))

    async def record_handoff(self, job: Job) -> bool:
        # synchronous=NORMAL, like every transaction but accepting: survives a crash of siegel.
        params = (job.message_id, str(job.recipient), job.lease)
        return await self._run(lambda db: self._transaction(
            db, lambda: db.execute(q.RECORD_HANDOFF_SQL, params).rowcount == 1))

    async def renew_lease(self, job: Job, until: datetime) -> bool:
        params = (_ts(until), job.message_id, str(job.recipient), job.lease)
        return await self._run(lambda db: self._transaction(
            db, lambda: db.execute(q.RENEW_LEASE_SQL, params).rowcount == 1))

    async def finish(
        self,
        job: Job,
        update: RecipientUpdate,
        *,
        now: datetime,
        new_messages: Sequence[Message] = (),
        events: Sequence[AuditEvent] = (),
    ) -> None:
        def work(db: sqlite3.Connection) -> None:
            cursor = db.execute(q.FINISH_SQL, q.finish_params(update, now, job, _ts))
            if cursor.rowcount != 1:
                raise LeaseLost(f"message {job.message_id} to {job.recipient}: lease lost")
            for message in new_messages:
                self._insert_message(db, message)
            self._insert_events(db, events)
            if (update.state is RecipientState.EXPIRED
                    and db.execute(q.OPEN_COPIES_SQL, (job.message_id,)).fetchone()[0] == 0):
                db.execute("UPDATE messages SET content = NULL, wrapped_key = NULL WHERE id = ?",
                           (job.message_id,))

        await self._run(lambda db: self._transaction(db, lambda: work(db)))

    async def requeue(
        self,
        message_id: str,
        *,
        recipients: Iterable[str] | None,
        states: Iterable[RecipientState],
        release: bool,
        now: datetime,
    ) -> int:
        sql, params = q.requeue_query(message_id, recipients=recipients, states=states,
                                      release=release, now=_ts(now))

        def work(db: sqlite3.Connection) -> int:
            content = db.execute("SELECT content IS NOT NULL FROM messages WHERE id = ?",
                                 (message_id,)).fetchone()
            if content is None:
                raise MessageNotFound(f"no message {message_id}")
            if not content[0]:
                raise ContentDestroyed(f"the content of message {message_id} was destroyed")
            return db.execute(sql, params).rowcount

        return await self._run(lambda db: self._transaction(db, lambda: work(db)))

    async def end_hold(self, message_id: str, recipient: str, now: datetime) -> bool:
        params = (_ts(now), _ts(now), message_id, str(Address.parse(recipient)))
        return await self._run(lambda db: self._transaction(
            db, lambda: db.execute(q.END_HOLD_SQL, params).rowcount == 1))

    async def recipients(self, message_id: str) -> list[RecipientRecord]:
        rows = await self._run(lambda db: db.execute(
            q.RECORD_SQL + " WHERE r.message_id = ? ORDER BY r.position",
            (message_id,)).fetchall())
        return [q.record(row, _dt) for row in rows]

    async def list(
        self,
        *,
        states: Iterable[RecipientState] | None = None,
        tenant: str | None = None,
        limit: int = 100,
        recipient: str | None = None,
    ) -> builtins.list[RecipientRecord]:
        sql, params = q.list_query(states=states, tenant=tenant, limit=limit, recipient=recipient)
        rows = await self._run(lambda db: db.execute(sql, params).fetchall())
        return [q.record(row, _dt) for row in rows]

    async def purge(self, message_id: str) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM recipients WHERE message_id = ?", (message_id,))
            return db.execute("DELETE FROM messages WHERE id = ?", (message_id,)).rowcount > 0

        return await self._run(lambda db: self._transaction(db, lambda: work(db)))

    async def destroy_finished_content(self, older_than: datetime) -> int:
        sql = ("UPDATE messages SET content = NULL, wrapped_key = NULL WHERE "  # noqa: S608
               + q.FINISHED_CONTENT_WHERE)
        return await self._run(lambda db: self._transaction(
            db, lambda: db.execute(sql, (_ts(older_than),)).rowcount))

    @staticmethod
    def _insert_events(db: sqlite3.Connection, events: Sequence[AuditEvent]) -> None:
        db.executemany(q.EVENT_INSERT_SQL, q.event_rows(events, _ts))

    async def record_events(self, events: Sequence[AuditEvent]) -> None:
        await self._run(lambda db: self._transaction(db, lambda: self._insert_events(db, events)))

    async def events(self, message_id: str) -> builtins.list[AuditEvent]:
        rows = await self._run(lambda db: db.execute(q.EVENTS_SQL, (message_id,)).fetchall())
        return [q.event(row, _dt) for row in rows]

    # -- plugin state ----------------------------------------------------------------------

    async def state_get(self, namespace: str, key: str) -> StateRecord | None:
        row = await self._run(lambda db: db.execute(
            q.STATE_BY_KEY_SQL, (namespace, key)).fetchone())
        return None if row is None else q.state_record(self.cipher, row, _dt)

    async def state_put(self, namespace: str, key: str, value: bytes, *,
                        expires_at: datetime | None = None,
                        expect_version: int | None = None) -> int:
        now = _ts(datetime.now(UTC))

        def work(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT version FROM plugin_state WHERE namespace = ? AND key = ?",
                             (namespace, key)).fetchone()
            current = row[0] if row else 0
            if expect_version is not None and expect_version != current:
                raise StateConflict(f"{namespace}/{key}: version {current}, "
                                    f"expected {expect_version}")
            db.execute(q.STATE_UPSERT_SQL, q.state_upsert_params(
                self.cipher, namespace, key, value, current + 1, now, _ts(expires_at)))
            return int(current + 1)

        return await self._run(lambda db: self._transaction(db, lambda: work(db)))

    async def state_update(self, namespace: str, key: str, update: StateUpdate[_R], *,
                           now: datetime | None = None) -> _R:
        """One ``BEGIN IMMEDIATE`` transaction: read, decide, write; no other writer (thread or
        process) comes between."""
        updated_at = _ts(datetime.now(UTC))

        def work(db: sqlite3.Connection) -> _R:
            row = db.execute(q.STATE_BY_KEY_SQL, (namespace, key)).fetchone()
            record = None if row is None else q.state_record(self.cipher, row, _dt)
            version, write, result = q.decide(record, update, now)
            if write is not None:
                db.execute(q.STATE_UPSERT_SQL, q.state_upsert_params(
                    self.cipher, namespace, key, write.value, version + 1, updated_at,
                    _ts(write.expires_at)))
            return result

        return await self._run(lambda db: self._transaction(db, lambda: work(db)))

    async def state_delete(self, namespace: str, key: str) -> bool:
        return await self._run(lambda db: self._transaction(db, lambda: db.execute(
            q.STATE_DELETE_SQL, (namespace, key)).rowcount > 0))

    async def state_scan(self, namespace: str, prefix: str = "", *,
                         now: datetime | None = None) -> builtins.list[StateRecord]:
        sql, params = q.state_page_query(namespace, prefix, _ts(now))
        rows = await self._run(lambda db: db.execute(sql, params).fetchall())
        return [q.state_record(self.cipher, row, _dt) for row in rows]

    async def state_page(self, namespace: str, prefix: str, *, limit: int,
                         after: str | None = None, descending: bool = False,
                         now: datetime | None = None) -> builtins.list[StateRecord]:
        sql, params = q.state_page_query(namespace, prefix, _ts(now), limit=limit, after=after,
                                         descending=descending)
        rows = await self._run(lambda db: db.execute(sql, params).fetchall())
        return [q.state_record(self.cipher, row, _dt) for row in rows]

    async def state_count(self, namespace: str, prefix: str, *,
                          now: datetime | None = None) -> int:
        sql, params = q.state_count_query(namespace, prefix, _ts(now))
        row = await self._run(lambda db: db.execute(sql, params).fetchone())
        return int(row[0])

    async def state_purge_expired(self, now: datetime) -> int:
        return await self._run(lambda db: self._transaction(db, lambda: db.execute(
            q.STATE_PURGE_SQL, (_ts(now),)).rowcount))
