"""What the SQL store backends share: the statements both run (written with ``?`` placeholders;
:func:`pg` turns one into psycopg's style), the rows they read turned into records, the schema
version check and the read-decide-write step of ``state_update``.

The two backends differ in how they bind values (SQLite keeps times as ISO text, PostgreSQL as
``timestamptz``), how they store large content (one blob, or chunks) and how they lock; each
passes its own time conversion to the functions here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from siegel.addresses import Address
from siegel.crypto import ContentCipher, SealedContent
from siegel.model import AuditEvent, Level, Origin, RecipientState
from siegel.store import (
    Job,
    RecipientRecord,
    RecipientUpdate,
    StateRecord,
    StateUpdate,
    StateWrite,
    StoreError,
    prefix_end,
)

_R = TypeVar("_R")

#: The schema this siegel writes; both backends number their schemas alike.
SCHEMA_VERSION = 4

#: Converts a stored time (whatever the backend returns) into an aware datetime.
ToTime = Callable[[Any], datetime | None]
#: Converts an aware datetime into what the backend binds.
FromTime = Callable[[datetime | None], Any]


class SchemaMismatch(StoreError):
    """The database's schema is not the one this siegel works with (older: migrate; newer:
    upgrade siegel)."""


def check_schema(where: str, found: int) -> None:
    """Refuse a schema this siegel does not write, saying what to do."""
    if found > SCHEMA_VERSION:
        raise SchemaMismatch(f"{where}: schema version {found}, expected {SCHEMA_VERSION} "
                             "(written by a newer siegel?); upgrade siegel")
    if found < SCHEMA_VERSION:
        raise SchemaMismatch(f"{where}: schema version {found}, expected {SCHEMA_VERSION}; "
                             "run 'siegel store migrate' first")


def pg(sql: str) -> bytes:
    """A statement written for SQLite's ``?`` placeholders in psycopg's ``%s`` style."""
    return sql.replace("%", "%%").replace("?", "%s").encode()


# -- recipients ------------------------------------------------------------------------------

RECORD_SQL = (
    "SELECT r.message_id, m.tenant, m.origin, m.mail_from, r.address, m.received_at, m.size,"
    " r.state, r.attempts, r.next_attempt_at, r.hold_until, r.released, r.level, r.method,"
    " r.reasons, r.detail, r.updated_at, m.wrapped_key IS NULL, r.starts"
    " FROM recipients r JOIN messages m ON m.id = r.message_id"
)

FINISH_SQL = (
    "UPDATE recipients SET state = ?, attempts = ?, next_attempt_at = ?, hold_until = ?,"
    " level = ?, method = ?, reasons = ?, detail = ?, updated_at = ?, lease = NULL,"
    " lease_until = NULL, starts = 0, handoffs = ?, protect_retries = ?"
    " WHERE message_id = ? AND address = ? AND lease = ?"
)

RECORD_HANDOFF_SQL = ("UPDATE recipients SET handoffs = handoffs + 1 WHERE message_id = ?"
                      " AND address = ? AND lease = ?")

RENEW_LEASE_SQL = ("UPDATE recipients SET lease_until = ? WHERE message_id = ? AND address = ?"
                   " AND lease = ?")

OPEN_COPIES_SQL = ("SELECT COUNT(*) FROM recipients WHERE message_id = ? AND state NOT IN"
                   " ('delivered', 'failed', 'expired')")

END_HOLD_SQL = ("UPDATE recipients SET hold_until = ?, updated_at = ? WHERE message_id = ?"
                " AND address = ? AND state = 'held'")

#: Messages whose content may go: every copy final since before the bound time.
FINISHED_CONTENT_WHERE = (
    "wrapped_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM recipients r"
    " WHERE r.message_id = messages.id AND"
    "   (r.state NOT IN ('delivered', 'failed', 'expired') OR r.updated_at > ?))"
)

RECIPIENT_ROWS_SQL = ("INSERT INTO recipients (message_id, position, address, state,"
                      " next_attempt_at, updated_at) VALUES (?,?,?,?,?,?)")


def recipient_rows(message_id: str, rcpt_to: Sequence[Address], at: Any) -> list[tuple[Any, ...]]:
    return [(message_id, position, str(rcpt), RecipientState.ACCEPTED.value, at, at)
            for position, rcpt in enumerate(dict.fromkeys(rcpt_to))]


_FINAL = frozenset({RecipientState.DELIVERED, RecipientState.FAILED, RecipientState.EXPIRED})


def finish_params(update: RecipientUpdate, now: datetime, job: Job, ts: FromTime
                  ) -> tuple[Any, ...]:
    # This start's handoffs have an outcome now; an earlier start's stay in doubt until the
    # copy is final (a retry refused by the relay tells nothing about the earlier handoff).
    in_doubt = 0 if update.state in _FINAL else job.handoffs
    return (update.state.value, update.attempts, ts(update.next_attempt_at),
            ts(update.hold_until), None if update.level is None else int(update.level),
            update.method, json.dumps(list(update.reasons), ensure_ascii=False),
            update.detail, ts(now), in_doubt, update.protect_retries, job.message_id,
            str(job.recipient), job.lease)


def record(row: Sequence[Any], dt: ToTime) -> RecipientRecord:
    received_at, updated_at = dt(row[5]), dt(row[16])
    assert received_at is not None and updated_at is not None
    return RecipientRecord(
        message_id=row[0], tenant=row[1], origin=Origin(row[2]), mail_from=row[3],
        recipient=row[4], received_at=received_at, size=row[6],
        state=RecipientState(row[7]), attempts=row[8], next_attempt_at=dt(row[9]),
        hold_until=dt(row[10]), released=bool(row[11]),
        level=None if row[12] is None else Level(row[12]), method=row[13],
        reasons=tuple(json.loads(row[14])), detail=row[15], updated_at=updated_at,
        content_destroyed=bool(row[17]), starts=row[18],
    )


def list_query(*, states: Iterable[RecipientState] | None, tenant: str | None, limit: int,
               recipient: str | None) -> tuple[str, list[Any]]:
    """The statement behind :meth:`MessageStore.list` (newest first)."""
    sql = RECORD_SQL + " WHERE 1=1"
    params: list[Any] = []
    if recipient is not None:
        sql += " AND r.address = ?"
        params.append(str(Address.parse(recipient)))
    if states is not None:
        values = [s.value for s in states]
        sql += f" AND r.state IN ({','.join('?' * len(values))})"
        params += values
    if tenant is not None:
        sql += " AND m.tenant = ?"
        params.append(tenant)
    sql += " ORDER BY m.received_at DESC, r.position LIMIT ?"
    params.append(limit)
    return sql, params


def requeue_query(message_id: str, *, recipients: Iterable[str] | None,
                  states: Iterable[RecipientState], release: bool,
                  now: Any) -> tuple[str, list[Any]]:
    state_values = [s.value for s in states]
    marks = ",".join("?" * len(state_values))
    # Only "?" placeholders are formatted into the statement; values are bound.
    sql = (f"UPDATE recipients SET state = 'accepted', next_attempt_at = ?, updated_at = ?,"  # noqa: S608
           f" released = released OR ?, lease = NULL, lease_until = NULL, starts = 0"
           f" WHERE message_id = ? AND state IN ({marks})")
    params: list[Any] = [now, now, release, message_id, *state_values]
    if recipients is not None:
        wanted = [str(Address.load(r)) for r in recipients]
        sql += f" AND address IN ({','.join('?' * len(wanted))})"
        params += wanted
    return sql, params


# -- events ----------------------------------------------------------------------------------

EVENT_INSERT_SQL = ("INSERT INTO events (at, kind, tenant, message_id, recipient, detail)"
                    " VALUES (?,?,?,?,?,?)")
EVENTS_SQL = ("SELECT at, kind, tenant, message_id, recipient, detail FROM events"
              " WHERE message_id = ? ORDER BY id")


def event_rows(events: Sequence[AuditEvent], ts: FromTime) -> list[tuple[Any, ...]]:
    return [(ts(e.at), e.kind, e.tenant, e.message_id, e.recipient,
             json.dumps(dict(e.detail), ensure_ascii=False)) for e in events]


def event(row: Sequence[Any], dt: ToTime) -> AuditEvent:
    at = dt(row[0])
    assert at is not None
    return AuditEvent(at=at, kind=row[1], tenant=row[2], message_id=row[3], recipient=row[4],
                      detail=json.loads(row[5]))


# -- plugin state ----------------------------------------------------------------------------

STATE_SQL = ("SELECT namespace, key, key_id, wrapped_key, value, version, updated_at,"
             " expires_at FROM plugin_state")
STATE_BY_KEY_SQL = STATE_SQL + " WHERE namespace = ? AND key = ?"
STATE_UPSERT_SQL = (
    "INSERT INTO plugin_state (namespace, key, key_id, wrapped_key, value, version,"
    " updated_at, expires_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (namespace, key)"
    " DO UPDATE SET key_id = excluded.key_id, wrapped_key = excluded.wrapped_key,"
    " value = excluded.value, version = excluded.version,"
    " updated_at = excluded.updated_at, expires_at = excluded.expires_at"
)
STATE_DELETE_SQL = "DELETE FROM plugin_state WHERE namespace = ? AND key = ?"
STATE_PURGE_SQL = "DELETE FROM plugin_state WHERE expires_at IS NOT NULL AND expires_at <= ?"


def state_aad(namespace: str, key: str) -> str:
    return f"state:{namespace}:{key}"


def state_record(cipher: ContentCipher, row: Sequence[Any], dt: ToTime) -> StateRecord:
    namespace, key, key_id, wrapped, value, version, updated_at, expires_at = row
    plain = cipher.open(state_aad(namespace, key), SealedContent(key_id, bytes(wrapped),
                                                                 bytes(value)))
    updated = dt(updated_at)
    assert updated is not None
    return StateRecord(namespace=namespace, key=key, value=plain, version=version,
                       updated_at=updated, expires_at=dt(expires_at))


def _state_range(namespace: str, prefix: str, now: Any) -> tuple[str, list[Any]]:
    """The WHERE clause of the records under ``prefix``: a key range on the primary key
    (``LIKE`` cannot use it: SQLite's ignores case, PostgreSQL's needs the C collation)."""
    sql = " WHERE namespace = ? AND key >= ?"
    params: list[Any] = [namespace, prefix]
    end = prefix_end(prefix)
    if end is not None:
        sql += " AND key < ?"
        params.append(end)
    if now is not None:
        sql += " AND (expires_at IS NULL OR expires_at > ?)"
        params.append(now)
    return sql, params


def state_page_query(namespace: str, prefix: str, now: Any, *, limit: int | None = None,
                     after: str | None = None, descending: bool = False) -> tuple[str, list[Any]]:
    """:meth:`MessageStore.state_scan` (no ``limit``) and ``state_page``."""
    where, params = _state_range(namespace, prefix, now)
    if after is not None:
        where += " AND key < ?" if descending else " AND key > ?"
        params.append(after)
    sql = STATE_SQL + where + (" ORDER BY key DESC" if descending else " ORDER BY key")
    if limit is not None:
        sql += " LIMIT ?"
        params.append(max(0, limit))
    return sql, params


def state_count_query(namespace: str, prefix: str, now: Any) -> tuple[str, list[Any]]:
    where, params = _state_range(namespace, prefix, now)
    return "SELECT COUNT(*) FROM plugin_state" + where, params  # noqa: S608 (only "?" marks)


def state_upsert_params(cipher: ContentCipher, namespace: str, key: str, value: bytes,
                        version: int, updated_at: Any, expires_at: Any) -> tuple[Any, ...]:
    sealed = cipher.seal(state_aad(namespace, key), value)
    return (namespace, key, sealed.key_id, sealed.wrapped_key, sealed.ciphertext, version,
            updated_at, expires_at)


def decide(record: StateRecord | None, update: StateUpdate[_R],
           now: datetime | None) -> tuple[int, StateWrite | None, _R]:
    """The decision step of ``state_update``: the stored version (0: absent), and what
    ``update`` wants written for the record as it stands (an expired one counts as absent)."""
    version = record.version if record is not None else 0
    if record is not None and now is not None and record.expires_at is not None and (
            record.expires_at <= now):
        record = None
    write, result = update(record)
    return version, write, result
