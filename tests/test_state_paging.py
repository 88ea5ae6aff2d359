"""Plugin-state paging: ranges of the key index, never a full scan (issue 10: the postbox's
inbox costs the same with a thousand or a million records in the store)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from siegel.clock import FrozenClock
from siegel.crypto import ContentCipher, create_key_file
from siegel.sqlite_store import SQLiteStore
from siegel.state import PluginState
from siegel.store import prefix_end


@pytest.fixture
def cipher(tmp_path):
    create_key_file(tmp_path / "store.key")
    return ContentCipher.from_key_file(tmp_path / "store.key")


@pytest.mark.parametrize(("prefix", "end"), [
    ("a/", "a0"), ("", None), ("a\U0010ffff", "b"), ("\U0010ffff", None),
    ("x\ud7ff", "x\ue000"),
])
def test_prefix_end_is_the_least_key_above_the_prefix_range(prefix, end):
    assert prefix_end(prefix) == end


async def test_pages_walk_a_prefix_in_key_order_both_ways(tmp_path, cipher):
    clock = FrozenClock()
    async with SQLiteStore(tmp_path / "s.db", cipher) as store:
        state = PluginState(store, "postbox", clock)
        other = PluginState(store, "other", clock)
        keys = [f"t/acc/inbox/{i:03d}" for i in range(7)]
        for key in keys:
            await state.put(key, key.encode())
        # Neighbours of the range: a longer sibling prefix, upper case (LIKE ignored case), the
        # same key in another namespace, and a record that expired.
        await state.put("t/acc/inboxes/1", b"no")
        await state.put("t/ACC/inbox/1", b"no")
        await state.put("t/acc/inbox0", b"no")
        await other.put("t/acc/inbox/001", b"no")
        await state.put("t/acc/inbox/002x", b"gone", ttl=timedelta(seconds=1))
        clock.advance(seconds=2)

        first = await state.page("t/acc/inbox/", limit=3)
        assert [r.key for r in first] == keys[:3]
        assert [r.value for r in first] == [k.encode() for k in keys[:3]]
        rest = await state.page("t/acc/inbox/", limit=10, after=first[-1].key)
        assert [r.key for r in rest] == keys[3:]
        newest = await state.page("t/acc/inbox/", limit=2, descending=True)
        assert [r.key for r in newest] == keys[:-3:-1]
        older = await state.page("t/acc/inbox/", limit=10, after=newest[-1].key, descending=True)
        assert [r.key for r in older] == keys[-3::-1]
        assert await state.page("t/acc/inbox/", limit=0) == []
        assert await state.count("t/acc/inbox/") == 7
        assert await store.state_count("postbox", "t/acc/inbox/") == 8  # without a time: all
        assert [r.key for r in await state.scan("t/acc/inbox/")] == keys
        assert await state.count("") == 10


def _plan(db: sqlite3.Connection, sql: str, params: list[object]) -> str:
    return " | ".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))


async def test_every_state_query_uses_the_key_index(tmp_path, cipher, monkeypatch):
    """The statements the store really runs are captured and explained: each one searches the
    primary-key index with a key range (no SCAN of the table, no temporary sort)."""
    seen: list[tuple[str, list[object]]] = []
    async with SQLiteStore(tmp_path / "s.db", cipher) as store:
        state = PluginState(store, "postbox", FrozenClock())
        await state.put("t/a/inbox/1", b"x")
        db = store._db
        assert db is not None
        real_run = store._run

        class Recording:
            def __init__(self, inner: sqlite3.Connection) -> None:
                self.inner = inner

            def execute(self, sql: str, params: list[object] = ()):  # type: ignore[assignment]
                seen.append((sql, list(params)))
                return self.inner.execute(sql, params)

        async def recording_run(function):
            return await real_run(lambda inner: function(Recording(inner)))

        monkeypatch.setattr(store, "_run", recording_run)
        await state.page("t/a/inbox/", limit=20)
        await state.page("t/a/inbox/", limit=20, after="t/a/inbox/5", descending=True)
        await state.count("t/a/inbox/")
        await state.scan("t/a/")
        await store.state_count("postbox", "t/a/")
        monkeypatch.undo()
        assert len(seen) == 5
        for sql, params in seen:
            plan = _plan(db, sql, params)
            assert "SEARCH plugin_state USING" in plan, (sql, plan)
            assert "(namespace=? AND key>? AND key<?)" in plan, (sql, plan)
            assert "SCAN" not in plan and "TEMP B-TREE" not in plan, (sql, plan)
