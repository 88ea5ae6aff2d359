"""SQLite group commit: messages accepted while the store thread is busy share one durable commit,
and each ``accept`` returns only once the commit holding its message is done; a message that
cannot be stored fails its own call only."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from siegel.addresses import Address
from siegel.clock import SystemClock, new_message_id
from siegel.crypto import ContentCipher, create_key_file
from siegel.model import Envelope, Message
from siegel.sqlite_store import SQLiteStore
from siegel.store import StoreError
from siegel.testing import make_message


class CountingStore(SQLiteStore):
    """Counts the durable commits (each one fsync of the WAL)."""

    commits = 0

    def _commit_accepted(self, *args: object) -> None:
        type(self).commits += 1
        super()._commit_accepted(*args)  # type: ignore[arg-type]


def message(message_id: str | None = None) -> Message:
    return Message(id=message_id or new_message_id(), tenant="t",
                   envelope=Envelope(Address.parse("a@amt.example"),
                                     (Address.parse("b@amt.example"),)),
                   raw=make_message(sender="a@amt.example", to="b@amt.example"),
                   received_at=SystemClock().now())


@pytest.fixture
async def store(tmp_path: Path):
    create_key_file(tmp_path / "store.key")
    CountingStore.commits = 0
    store = CountingStore(tmp_path / "siegel.db",
                          ContentCipher.from_key_file(tmp_path / "store.key"))
    async with store:
        yield store


async def busy(store: SQLiteStore, seconds: float) -> None:
    await store._run(lambda db: time.sleep(seconds))


async def test_accepts_while_the_store_is_busy_share_one_commit(store: CountingStore) -> None:
    messages = [message() for _ in range(10)]
    blocker = asyncio.ensure_future(busy(store, 0.3))
    await asyncio.sleep(0.05)
    accepts = [asyncio.ensure_future(store.accept(m)) for m in messages]
    await asyncio.sleep(0.1)
    assert not any(a.done() for a in accepts), "an accept returned before its commit"
    await asyncio.gather(blocker, *accepts)
    assert CountingStore.commits == 1
    for sent in messages:
        assert (await store.load(sent.id)).raw == sent.raw
    # The batch was committed durably: a second connection sees every message.
    db = sqlite3.connect(store.path)
    try:
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 10
    finally:
        db.close()


async def test_one_message_failing_fails_only_its_own_accept(store: CountingStore) -> None:
    first = message()
    await store.accept(first)
    blocker = asyncio.ensure_future(busy(store, 0.2))
    await asyncio.sleep(0.05)
    others = [message(), message()]
    results = await asyncio.gather(store.accept(message(first.id)), *map(store.accept, others),
                                   return_exceptions=True)
    await blocker
    assert isinstance(results[0], StoreError) and "UNIQUE" in str(results[0])
    assert results[1:] == [None, None]
    for sent in others:
        assert (await store.load(sent.id)).raw == sent.raw
    assert CountingStore.commits == 2


async def test_accept_on_a_closed_store_fails(tmp_path: Path) -> None:
    create_key_file(tmp_path / "store.key")
    store = SQLiteStore(tmp_path / "siegel.db", ContentCipher.from_key_file(tmp_path / "store.key"))
    with pytest.raises(StoreError, match="not open"):
        await store.accept(message())
