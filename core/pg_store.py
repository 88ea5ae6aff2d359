"""The shared store: PostgreSQL, for any number of ``siegel serve`` instances on one database.

* Durability: every transaction commits with PostgreSQL's default ``synchronous_commit = on``,
  so :meth:`PostgreSQLStore.accept` returns (and the listener answers 250) only once the
  message is in the server's WAL on disk.
* Content is sealed as in SQLite (:mod:`siegel.crypto`) and kept in chunks of about a megabyte
  (``message_chunks``), written and read one chunk at a time, so a large message is never held
  as one bound parameter or one result next to its plain copy.
* Instances claim jobs with ``FOR UPDATE SKIP LOCKED`` and a lease; a dead instance's jobs are
  claimed by another once their lease has run out. Plugin state writes that race are decided
  by versions (``state_put``) or serialised per key (``state_update``, an advisory transaction
  lock, so that even an absent record is written once). Maintenance runs on one instance at a
  time (:meth:`PostgreSQLStore.exclusive`, a session advisory lock).
* The connection pool checks a connection before handing it out and reconnects, so the
  gateway works again without a restart once the database is back; meanwhile every call raises
  :class:`~siegel.store.StoreError` (the listener answers 451).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import sql as pgsql

from siegel import store_sql as q
from siegel.addresses import Address
from siegel.crypto import SEAL_OVERHEAD, ContentCipher, SealedContent
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

_R = TypeVar("_R")

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    origin TEXT NOT NULL,
    channel TEXT,
    mail_from TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    size BIGINT NOT NULL,
    key_id TEXT,
    wrapped_key BYTEA
);
CREATE INDEX messages_received ON messages (received_at);
CREATE TABLE message_chunks (
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (message_id, seq)
);
CREATE TABLE recipients (
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    starts INTEGER NOT NULL DEFAULT 0,
    protect_retries INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    hold_until TIMESTAMPTZ,
    lease TEXT,
    lease_until TIMESTAMPTZ,
    released BOOLEAN NOT NULL DEFAULT FALSE,
    level INTEGER,
    method TEXT,
    reasons TEXT NOT NULL DEFAULT '[]',
    detail TEXT NOT NULL DEFAULT '',
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (message_id, address)
);
CREATE INDEX recipients_due ON recipients (state, next_attempt_at);
CREATE INDEX recipients_hold ON recipients (state, hold_until);
CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    kind TEXT NOT NULL,
    tenant TEXT,
    message_id TEXT,
    recipient TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX events_message ON events (message_id);
CREATE TABLE plugin_state (
    namespace TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    key_id TEXT NOT NULL,
    wrapped_key BYTEA NOT NULL,
    value BYTEA NOT NULL,
    version BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX plugin_state_expiry ON plugin_state (expires_at);
-- Counting a key range of unexpired records reads the index only.
CREATE INDEX plugin_state_keys ON plugin_state (namespace, key, expires_at);
"""

#: Each step takes a schema from the version it is keyed by to the next one. A new database is
#: created at version 2's tables and then migrated, so every step runs in the tests.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 3: a recipient's copies (the account view) without reading every copy.
    2: ("CREATE INDEX recipients_address ON recipients (address)",),
    # 4: per copy, handoffs to the receiving side whose outcome was never recorded.
    3: ("ALTER TABLE recipients ADD COLUMN handoffs INTEGER NOT NULL DEFAULT 0",),
}
_CREATED_AT = 2

_LOCK_NAMESPACE = 0x5E6E  # first half of every advisory lock key siegel takes


def _lock_key(name: str) -> int:
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def _same(value: Any) -> Any:
    return value


class PostgreSQLStore(MessageStore):
    def __init__(self, conninfo: str, cipher: ContentCipher, *, password: str | None = None,
                 schema: str = "public", pool_size: int = 10,
                 connect_timeout: float = 5.0) -> None:
        self.conninfo = conninfo
        self.cipher = cipher
        self.schema = schema
        self._password = password
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None

    def __repr__(self) -> str:
        return f"PostgreSQLStore({self.where!r})"

    @property
    def where(self) -> str:
        """The database and schema, for messages (never the password)."""
        info = psycopg.conninfo.conninfo_to_dict(self.conninfo)
        return (f"postgresql {info.get('host', 'localhost')}:{info.get('port', 5432)}/"
                f"{info.get('dbname', '')} schema {self.schema}")

    # -- connections -----------------------------------------------------------------------

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(self.schema)))
        await conn.commit()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; every database failure becomes a :class:`StoreError`."""
        if self._pool is None:
            raise StoreError("the store is not open")
        try:
            async with self._pool.connection(timeout=self._connect_timeout) as conn:
                yield conn
        except psycopg_pool.PoolTimeout as exc:
            raise StoreError(f"{self.where}: no database connection ({exc})") from exc
        except psycopg.Error as exc:
            raise StoreError(f"{self.where}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[psycopg.AsyncCursor[Any]]:
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            yield cursor

    async def open(self) -> None:
        await self._open()
        async with self._transaction() as cur:
            version = await self._version(cur)
            if version is None:
                await self._create(cur)
                version = await self._version(cur)
        q.check_schema(self.where, version or 0)

    async def _open(self) -> None:
        if self._pool is not None:
            return
        kwargs: dict[str, Any] = {"connect_timeout": max(1, int(self._connect_timeout))}
        if self._password is not None:
            kwargs["password"] = self._password
        pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]] = (
            psycopg_pool.AsyncConnectionPool(
                self.conninfo, kwargs=kwargs, min_size=1, max_size=self._pool_size, open=False,
                configure=self._configure, check=psycopg_pool.AsyncConnectionPool.check_connection,
                reconnect_timeout=60, name="siegel-store"))
        try:
            await pool.open(wait=True, timeout=self._connect_timeout)
        except psycopg_pool.PoolTimeout as exc:
            await pool.close()
            raise StoreError(f"{self.where}: cannot connect ({exc})") from exc
        self._pool = pool

    async def _version(self, cur: psycopg.AsyncCursor[Any]) -> int | None:
        await cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
        row = await cur.fetchone()
        if not row or not row[0]:
            return None
        await cur.execute("SELECT version FROM schema_version")
        row = await cur.fetchone()
        return None if row is None else int(row[0])

    async def _create(self, cur: psycopg.AsyncCursor[Any]) -> None:
        # Two instances starting on an empty database: one creates, the other waits and sees it.
        await cur.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                          (_LOCK_NAMESPACE, _lock_key("schema")))
        if await self._version(cur) is not None:
            return
        await cur.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
            pgsql.Identifier(self.schema)))
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                await cur.execute(statement.encode())
        await cur.execute("INSERT INTO schema_version VALUES (%s)", (_CREATED_AT,))
        await self._apply_migrations(cur, _CREATED_AT)

    async def _apply_migrations(self, cur: psycopg.AsyncCursor[Any], version: int) -> int:
        while version < q.SCHEMA_VERSION:
            for statement in _MIGRATIONS[version]:
                await cur.execute(statement.encode())
            version += 1
        await cur.execute("UPDATE schema_version SET version = %s", (version,))
        return version

    async def migrate(self) -> tuple[int, int]:
        await self._open()
        async with self._transaction() as cur:
            await cur.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                              (_LOCK_NAMESPACE, _lock_key("schema")))
            found = await self._version(cur)
            if found is None:
                await self._create(cur)
                return 0, q.SCHEMA_VERSION
            if found > q.SCHEMA_VERSION:
                q.check_schema(self.where, found)
            return found, await self._apply_migrations(cur, found)

    async def take_over(self) -> None:
        """Nothing to take over: instances share the store, and the jobs of one that died are
        claimed by the others when their lease runs out."""

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """A session advisory lock held on one connection while the block runs; False (and
        nothing held) when another instance holds it."""
        async with self._connection() as conn:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                                     (_LOCK_NAMESPACE, _lock_key(name)))
            row = await cur.fetchone()
            await conn.commit()
            held = bool(row and row[0])
            try:
                yield held
            finally:
                if held:
                    with contextlib.suppress(psycopg.Error):
                        await conn.execute("SELECT pg_advisory_unlock(%s, %s)",
                                           (_LOCK_NAMESPACE, _lock_key(name)))
                        await conn.commit()

    # -- messages --------------------------------------------------------------------------

    async def _insert_message(self, cur: psycopg.AsyncCursor[Any], message: Message) -> None:
        sealed = self.cipher.seal_stream(message.id, message.raw)
        mail_from = str(message.envelope.mail_from) if message.envelope.mail_from else ""
        await cur.execute(
            "INSERT INTO messages (id, tenant, origin, channel, mail_from, received_at, size,"
            " key_id, wrapped_key) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (message.id, message.tenant, message.origin.value, message.channel, mail_from,
             message.received_at, len(message.raw), sealed.key_id, sealed.wrapped_key))
        await self._write_chunks(cur, message.id, sealed.chunks)
        await cur.executemany(q.pg(q.RECIPIENT_ROWS_SQL), q.recipient_rows(
            message.id, message.envelope.rcpt_to, message.received_at))

    @staticmethod
    async def _write_chunks(cur: psycopg.AsyncCursor[Any], message_id: str,
                            chunks: Iterable[bytes]) -> None:
        for seq, chunk in enumerate(chunks):
            await cur.execute("INSERT INTO message_chunks (message_id, seq, data)"
                              " VALUES (%s, %s, %b)", (message_id, seq, chunk))

    async def accept(self, message: Message, events: Sequence[AuditEvent] = ()) -> None:
        async with self._transaction() as cur:
            await self._insert_message(cur, message)
            await self._insert_events(cur, events)

    async def _sealed(self, conn: psycopg.AsyncConnection[Any], message_id: str,
                      size: int) -> bytearray:
        """The sealed content, read chunk by chunk into one buffer (no second copy)."""
        buffer = bytearray(size)
        filled = 0
        async with conn.cursor(name="siegel_chunks", binary=True) as chunks:
            chunks.itersize = 2
            await chunks.execute("SELECT data FROM message_chunks WHERE message_id = %s"
                                 " ORDER BY seq", (message_id,))
            async for (data,) in chunks:
                buffer[filled:filled + len(data)] = data
                filled += len(data)
                del data
        if filled != size:
            raise StoreError(f"message {message_id}: {filled} bytes of content stored, "
                             f"expected {size}")
        return buffer

    async def load(self, message_id: str) -> Message:
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT tenant, origin, channel, mail_from, received_at, key_id, wrapped_key,"
                " size FROM messages WHERE id = %s", (message_id,))
            row = await cur.fetchone()
            if row is None:
                raise MessageNotFound(f"no message {message_id}")
            tenant, origin, channel, mail_from, received_at, key_id, wrapped, size = row
            if wrapped is None:
                raise ContentDestroyed(f"the content of message {message_id} was destroyed")
            cur = await conn.execute("SELECT address FROM recipients WHERE message_id = %s"
                                     " ORDER BY position", (message_id,))
            rcpts = [r[0] for r in await cur.fetchall()]
            sealed = await self._sealed(conn, message_id, size + SEAL_OVERHEAD)
        raw = self.cipher.open(message_id, SealedContent(key_id, wrapped, sealed))  # type: ignore[arg-type]
        del sealed
        return Message(
            id=message_id, tenant=tenant,
            envelope=Envelope(Address.load(mail_from) if mail_from else None,
                              tuple(Address.load(r) for r in rcpts)),
            raw=raw, received_at=received_at, origin=Origin(origin), channel=channel)

    async def claim_due(self, now: datetime, limit: int, lease_seconds: float) -> list[Job]:
        lease_until = now + timedelta(seconds=lease_seconds)
        async with self._transaction() as cur:
            # Counted before processing begins and reset when it ends (finish): what is left
            # counts the starts that a crash or a hang cut off. SKIP LOCKED: instances claiming
            # at the same moment take different copies instead of waiting for each other.
            await cur.execute(
                "WITH due AS ("
                "  SELECT message_id, address FROM recipients"
                "  WHERE ((state = 'accepted' AND next_attempt_at <= %(now)s)"
                "      OR (state = 'held' AND hold_until <= %(now)s))"
                "    AND (lease_until IS NULL OR lease_until <= %(now)s)"
                "  ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
                " UPDATE recipients r SET lease = md5(random()::text || clock_timestamp()::text),"
                "   lease_until = %(until)s, starts = r.starts + 1"
                " FROM due, messages m"
                " WHERE r.message_id = due.message_id AND r.address = due.address"
                "   AND m.id = r.message_id"
                " RETURNING r.message_id, r.address, r.state, r.attempts, r.released,"
                "   m.received_at, r.hold_until, r.starts, r.protect_retries, r.lease,"
                "   r.next_attempt_at, r.handoffs",
                {"now": now, "limit": limit, "until": lease_until})
            rows = sorted(await cur.fetchall(), key=lambda r: r[10] or now)
        return [Job(message_id=message_id, recipient=Address.load(address),
                    state=RecipientState(state), attempts=attempts, released=released,
                    lease=lease, received_at=received_at, hold_until=hold_until, starts=starts,
                    protect_retries=protect_retries, handoffs=handoffs)
                for (message_id, address, state, attempts, released, received_at, hold_until,
                     starts, protect_retries, lease, _due, handoffs) in rows]

    async def record_handoff(self, job: Job) -> bool:
        async with self._transaction() as cur:
            # Durable against a crash of this instance once the server has it, without waiting
            # for the server's disk: only a crash of the server and of this instance together
            # could lose it (alone, the server's crash just delays the outcome's commit, which
            # this instance retries).
            await cur.execute("SET LOCAL synchronous_commit TO OFF")
            await cur.execute(q.pg(q.RECORD_HANDOFF_SQL),
                              (job.message_id, str(job.recipient), job.lease))
            return cur.rowcount == 1

    async def renew_lease(self, job: Job, until: datetime) -> bool:
        async with self._transaction() as cur:
            await cur.execute(q.pg(q.RENEW_LEASE_SQL),
                              (until, job.message_id, str(job.recipient), job.lease))
            return cur.rowcount == 1

    async def finish(
        self,
        job: Job,
        update: RecipientUpdate,
        *,
        now: datetime,
        new_messages: Sequence[Message] = (),
        events: Sequence[AuditEvent] = (),
    ) -> None:
        async with self._transaction() as cur:
            await cur.execute(q.pg(q.FINISH_SQL), q.finish_params(update, now, job, _same))
            if cur.rowcount != 1:
                raise LeaseLost(f"message {job.message_id} to {job.recipient}: lease lost")
            for message in new_messages:
                await self._insert_message(cur, message)
            await self._insert_events(cur, events)
            if update.state is RecipientState.EXPIRED:
                await cur.execute(q.pg(q.OPEN_COPIES_SQL), (job.message_id,))
                row = await cur.fetchone()
                if row is not None and row[0] == 0:
                    await self._destroy_content(cur, [job.message_id])

    @staticmethod
    async def _destroy_content(cur: psycopg.AsyncCursor[Any], ids: list[str]) -> None:
        await cur.execute("DELETE FROM message_chunks WHERE message_id = ANY(%s)", (ids,))
        await cur.execute("UPDATE messages SET wrapped_key = NULL WHERE id = ANY(%s)", (ids,))

    async def requeue(
        self,
        message_id: str,
        *,
        recipients: Iterable[str] | None,
        states: Iterable[RecipientState],
        release: bool,
        now: datetime,
    ) -> int:
        statement, params = q.requeue_query(message_id, recipients=recipients, states=states,
                                            release=release, now=now)
        async with self._transaction() as cur:
            await cur.execute("SELECT wrapped_key IS NOT NULL FROM messages WHERE id = %s",
                              (message_id,))
            content = await cur.fetchone()
            if content is None:
                raise MessageNotFound(f"no message {message_id}")
            if not content[0]:
                raise ContentDestroyed(f"the content of message {message_id} was destroyed")
            await cur.execute(q.pg(statement), params)
            return cur.rowcount

    async def end_hold(self, message_id: str, recipient: str, now: datetime) -> bool:
        address = str(Address.parse(recipient))
        async with self._transaction() as cur:
            await cur.execute(q.pg(q.END_HOLD_SQL), (now, now, message_id, address))
            return cur.rowcount == 1

    async def _fetch(self, statement: str, params: Sequence[Any]) -> builtins.list[Any]:
        async with self._connection() as conn:
            cur = await conn.execute(q.pg(statement), params)
            return await cur.fetchall()

    async def recipients(self, message_id: str) -> list[RecipientRecord]:
        rows = await self._fetch(q.RECORD_SQL + " WHERE r.message_id = ? ORDER BY r.position",
                                 (message_id,))
        return [q.record(row, _same) for row in rows]

    async def list(
        self,
        *,
        states: Iterable[RecipientState] | None = None,
        tenant: str | None = None,
        limit: int = 100,
        recipient: str | None = None,
    ) -> builtins.list[RecipientRecord]:
        statement, params = q.list_query(states=states, tenant=tenant, limit=limit,
                                         recipient=recipient)
        return [q.record(row, _same) for row in await self._fetch(statement, params)]

    async def purge(self, message_id: str) -> bool:
        async with self._transaction() as cur:
            await cur.execute("DELETE FROM messages WHERE id = %s", (message_id,))
            return cur.rowcount > 0

    async def destroy_finished_content(self, older_than: datetime) -> int:
        async with self._transaction() as cur:
            await cur.execute(q.pg("SELECT id FROM messages WHERE "  # noqa: S608
                                   + q.FINISHED_CONTENT_WHERE
                                   + " FOR UPDATE OF messages SKIP LOCKED"), (older_than,))
            ids = [row[0] for row in await cur.fetchall()]
            if ids:
                await self._destroy_content(cur, ids)
            return len(ids)

    @staticmethod
    async def _insert_events(cur: psycopg.AsyncCursor[Any], events: Sequence[AuditEvent]) -> None:
        if events:
            await cur.executemany(q.pg(q.EVENT_INSERT_SQL), q.event_rows(events, _same))

    async def record_events(self, events: Sequence[AuditEvent]) -> None:
        async with self._transaction() as cur:
            await self._insert_events(cur, events)

    async def events(self, message_id: str) -> builtins.list[AuditEvent]:
        return [q.event(row, _same) for row in await self._fetch(q.EVENTS_SQL, (message_id,))]

    # -- plugin state ----------------------------------------------------------------------

    async def state_get(self, namespace: str, key: str) -> StateRecord | None:
        rows = await self._fetch(q.STATE_BY_KEY_SQL, (namespace, key))
        return q.state_record(self.cipher, rows[0], _same) if rows else None

    async def state_put(self, namespace: str, key: str, value: bytes, *,
                        expires_at: datetime | None = None,
                        expect_version: int | None = None) -> int:
        now = datetime.now().astimezone()
        sealed = self.cipher.seal(q.state_aad(namespace, key), value)
        params = {"ns": namespace, "key": key, "kid": sealed.key_id, "wk": sealed.wrapped_key,
                  "v": sealed.ciphertext, "at": now, "exp": expires_at, "expect": expect_version}
        columns = ("INSERT INTO plugin_state (namespace, key, key_id, wrapped_key, value, version,"
                   " updated_at, expires_at) VALUES (%(ns)s, %(key)s, %(kid)s, %(wk)s, %(v)s, 1,"
                   " %(at)s, %(exp)s)")
        update = (" key_id = %(kid)s, wrapped_key = %(wk)s, value = %(v)s,"
                  " version = plugin_state.version + 1, updated_at = %(at)s, expires_at = %(exp)s")
        # One statement each: the version check and the write cannot be split by another writer.
        if expect_version is None:
            statement = columns + " ON CONFLICT (namespace, key) DO UPDATE SET" + update
        elif expect_version == 0:
            statement = columns + " ON CONFLICT (namespace, key) DO NOTHING"
        else:
            statement = ("UPDATE plugin_state SET" + update + " WHERE namespace = %(ns)s"
                         " AND key = %(key)s AND version = %(expect)s")
        async with self._transaction() as cur:
            await cur.execute((statement + " RETURNING version").encode(), params)
            row = await cur.fetchone()
            if row is None:
                raise StateConflict(f"{namespace}/{key}: changed, expected version "
                                    f"{expect_version}")
            return int(row[0])

    async def state_update(self, namespace: str, key: str, update: StateUpdate[_R], *,
                           now: datetime | None = None) -> _R:
        """One transaction holding a lock on the key (an advisory lock, which also covers a
        record that does not exist yet): read, decide, write."""
        updated_at = datetime.now().astimezone()
        async with self._transaction() as cur:
            await cur.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                              (_LOCK_NAMESPACE, _lock_key(f"state:{namespace}:{key}")))
            await cur.execute(q.pg(q.STATE_BY_KEY_SQL), (namespace, key))
            row = await cur.fetchone()
            current = None if row is None else q.state_record(self.cipher, row, _same)
            version, write, result = q.decide(current, update, now)
            if write is not None:
                await cur.execute(q.pg(q.STATE_UPSERT_SQL), q.state_upsert_params(
                    self.cipher, namespace, key, write.value, version + 1, updated_at,
                    write.expires_at))
            return result

    async def state_delete(self, namespace: str, key: str) -> bool:
        async with self._transaction() as cur:
            await cur.execute(q.pg(q.STATE_DELETE_SQL), (namespace, key))
            return cur.rowcount > 0

    async def state_scan(self, namespace: str, prefix: str = "", *,
                         now: datetime | None = None) -> builtins.list[StateRecord]:
        statement, params = q.state_page_query(namespace, prefix, now)
        return [q.state_record(self.cipher, row, _same)
                for row in await self._fetch(statement, params)]

    async def state_page(self, namespace: str, prefix: str, *, limit: int,
                         after: str | None = None, descending: bool = False,
                         now: datetime | None = None) -> builtins.list[StateRecord]:
        statement, params = q.state_page_query(namespace, prefix, now, limit=limit, after=after,
                                               descending=descending)
        return [q.state_record(self.cipher, row, _same)
                for row in await self._fetch(statement, params)]

    async def state_count(self, namespace: str, prefix: str, *,
                          now: datetime | None = None) -> int:
        statement, params = q.state_count_query(namespace, prefix, now)
        [(count,)] = await self._fetch(statement, params)
        return int(count)

    async def state_purge_expired(self, now: datetime) -> int:
        async with self._transaction() as cur:
            await cur.execute(q.pg(q.STATE_PURGE_SQL), (now,))
            return cur.rowcount
