"""Moving an installation from SQLite to PostgreSQL (``siegel store copy``).

Rows are copied as they are stored: content stays sealed under the same store key (it is
copied in chunks, never decrypted on the way), states, leases, versions and audit events keep
their values. The copy then verifies itself: the row counts of every table, and per message the
SHA-256 of the content both stores decrypt, per plugin-state record that of the sealed value.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import attrs

from siegel.pg_store import PostgreSQLStore
from siegel.sqlite_store import SQLiteStore, _dt
from siegel.store import ContentDestroyed, StoreError

_CHUNK = 1024 * 1024
_BATCH = 200
_TABLES = ("messages", "recipients", "events", "plugin_state")

_RECIPIENT_COLUMNS = ("message_id", "position", "address", "state", "attempts", "starts",
                      "protect_retries", "next_attempt_at", "hold_until", "lease", "lease_until",
                      "released", "level", "method", "reasons", "detail", "updated_at")
_RECIPIENT_TIMES = {"next_attempt_at", "hold_until", "lease_until", "updated_at"}


class CopyError(StoreError):
    """The copy could not be made or does not match its source."""


@attrs.frozen(kw_only=True)
class CopyReport:
    counts: dict[str, int]
    messages_verified: int
    content_destroyed: int


def _blob_chunks(db: sqlite3.Connection, rowid: int) -> Iterator[bytes]:
    with db.blobopen("messages", "content", rowid, readonly=True) as blob:
        while chunk := blob.read(_CHUNK):
            yield chunk


def _recipient_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(_dt(value) if name in _RECIPIENT_TIMES else
                 bool(value) if name == "released" else value
                 for name, value in zip(_RECIPIENT_COLUMNS, row, strict=True))


async def copy_to_postgresql(source: SQLiteStore, target: PostgreSQLStore) -> CopyReport:
    """Copy everything in ``source`` (open) into ``target`` (open, with no messages and no
    plugin state yet), then verify; raises :class:`CopyError` on any difference."""
    async with target._transaction() as cur:
        for table in ("messages", "plugin_state"):
            await cur.execute(f"SELECT EXISTS (SELECT 1 FROM {table})".encode())  # noqa: S608
            row = await cur.fetchone()
            if row and row[0]:
                raise CopyError(f"{target.where}: not empty ({table} has rows); copy only into "
                                "a new database or schema")
    db = sqlite3.connect(f"file:{source.path}?mode=ro", uri=True)
    try:
        await _copy_rows(db, target)
        counts = {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
                  for table in _TABLES}
        ids = [r[0] for r in db.execute("SELECT id FROM messages ORDER BY id")]
        state_hashes = {(ns, key): hashlib.sha256(value).hexdigest() for ns, key, value in
                        db.execute("SELECT namespace, key, value FROM plugin_state")}
    finally:
        db.close()
    async with target._transaction() as cur:
        for table in _TABLES:
            await cur.execute(f"SELECT COUNT(*) FROM {table}".encode())  # noqa: S608
            row = await cur.fetchone()
            if row is None or row[0] != counts[table]:
                raise CopyError(f"{table}: {counts[table]} rows in the source, "
                                f"{None if row is None else row[0]} copied")
        await cur.execute("SELECT namespace, key, value FROM plugin_state")
        copied = {(ns, key): hashlib.sha256(value).hexdigest()
                  for ns, key, value in await cur.fetchall()}
    if copied != state_hashes:
        raise CopyError("plugin state: the copied values differ from the source's")
    verified = destroyed = 0
    for message_id in ids:
        try:
            original = hashlib.sha256((await source.load(message_id)).raw).hexdigest()
        except ContentDestroyed:
            destroyed += 1
            continue
        if hashlib.sha256((await target.load(message_id)).raw).hexdigest() != original:
            raise CopyError(f"message {message_id}: the copy's content differs")
        verified += 1
    return CopyReport(counts=counts, messages_verified=verified, content_destroyed=destroyed)


async def _copy_rows(db: sqlite3.Connection, target: PostgreSQLStore) -> None:
    messages = db.execute(
        "SELECT rowid, id, tenant, origin, channel, mail_from, received_at, size, key_id,"
        " wrapped_key, content IS NOT NULL FROM messages ORDER BY rowid")
    while batch := messages.fetchmany(_BATCH):
        async with target._transaction() as cur:
            for (rowid, message_id, tenant, origin, channel, mail_from, received_at, size, key_id,
                 wrapped, present) in batch:
                await cur.execute(
                    "INSERT INTO messages (id, tenant, origin, channel, mail_from, received_at,"
                    " size, key_id, wrapped_key) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    (message_id, tenant, origin, channel, mail_from, _dt(received_at), size,
                     key_id, wrapped if present else None))
                if present:
                    await target._write_chunks(cur, message_id,
                                               _blob_chunks(db, rowid))
                rows = db.execute(
                    f"SELECT {', '.join(_RECIPIENT_COLUMNS)} FROM recipients"  # noqa: S608
                    " WHERE message_id = ?", (message_id,)).fetchall()
                await cur.executemany(
                    f"INSERT INTO recipients ({', '.join(_RECIPIENT_COLUMNS)}) VALUES"  # noqa: S608
                    f" ({', '.join(['%s'] * len(_RECIPIENT_COLUMNS))})".encode(),
                    [_recipient_row(row) for row in rows])
    events = db.execute("SELECT id, at, kind, tenant, message_id, recipient, detail FROM events"
                        " ORDER BY id")
    while batch := events.fetchmany(1000):
        async with target._transaction() as cur:
            await cur.executemany(
                "INSERT INTO events (id, at, kind, tenant, message_id, recipient, detail)"
                " OVERRIDING SYSTEM VALUE VALUES (%s,%s,%s,%s,%s,%s,%s)",
                [(row[0], _dt(row[1]), *row[2:]) for row in batch])
    async with target._transaction() as cur:
        await cur.execute("SELECT setval(pg_get_serial_sequence('events', 'id'),"
                          " COALESCE((SELECT MAX(id) FROM events), 0) + 1, false)")
        await cur.executemany(
            "INSERT INTO plugin_state (namespace, key, key_id, wrapped_key, value, version,"
            " updated_at, expires_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
            [(*row[:6], _dt(row[6]), _dt(row[7])) for row in db.execute(
                "SELECT namespace, key, key_id, wrapped_key, value, version, updated_at,"
                " expires_at FROM plugin_state")])
