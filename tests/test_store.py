"""The store, on both backends (SQLite and PostgreSQL): durable, encrypted at rest, survives
restarts, recovers abandoned jobs."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import attrs
import pytest

from siegel import Address, Envelope, Message, RecipientState
from siegel.clock import FrozenClock, new_message_id
from siegel.crypto import (
    ContentCipher,
    DecryptionError,
    KeyFileError,
    SealedContent,
    create_key_file,
)
from siegel.sqlite_store import SQLiteStore
from siegel.store import ContentDestroyed, LeaseLost, RecipientUpdate, StoreError

SECRET = b"Kundennummer 123A456789 Geheimnis"


@pytest.fixture
def cipher(tmp_path):
    create_key_file(tmp_path / "store.key")
    return ContentCipher.from_key_file(tmp_path / "store.key")


def message(now, rcpts=("a@x.example", "b@y.example")) -> Message:
    return Message(id=new_message_id(), tenant="t",
                   envelope=Envelope(Address.parse("s@t.example"),
                                     tuple(Address.parse(r) for r in rcpts)),
                   raw=b"Subject: hi\r\n\r\n" + SECRET + b"\r\n", received_at=now)


async def test_content_is_encrypted_at_rest_and_survives_reopening(backend, cipher):
    clock = FrozenClock()
    msg = message(clock.now())
    async with backend.store(cipher) as store:
        await store.accept(msg)
    on_disk = backend.at_rest()
    assert b"s@t.example" in on_disk  # the envelope is stored in the clear, so this sees rows
    assert SECRET not in on_disk and b"Kundennummer" not in on_disk
    async with backend.store(cipher) as store:
        loaded = await store.load(msg.id)
        assert loaded.raw == msg.raw
        assert loaded.envelope == msg.envelope
        assert {r.state for r in await store.recipients(msg.id)} == {RecipientState.ACCEPTED}


async def test_wrong_key_and_tampering_are_detected(tmp_path, cipher):
    db = tmp_path / "siegel.db"
    msg = message(FrozenClock().now())
    async with SQLiteStore(db, cipher) as store:
        await store.accept(msg)
    create_key_file(tmp_path / "other.key")
    async with SQLiteStore(db, ContentCipher.from_key_file(tmp_path / "other.key")) as store:
        with pytest.raises(DecryptionError, match="sealed with store key"):
            await store.load(msg.id)
    with sqlite3.connect(db) as raw_db:
        content = raw_db.execute("SELECT content FROM messages").fetchone()[0]
        flipped = bytes([content[0]]) + bytes([content[20] ^ 1]).join([content[1:20], content[21:]])
        raw_db.execute("UPDATE messages SET content = ?", (flipped,))
    async with SQLiteStore(db, cipher) as store:
        with pytest.raises(DecryptionError, match="failed authentication"):
            await store.load(msg.id)


def test_key_file_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(KeyFileError, match="not found"):
        ContentCipher.from_key_file(tmp_path / "missing.key")
    (tmp_path / "bad.key").write_text("hello")
    with pytest.raises(KeyFileError, match="not a siegel store key file"):
        ContentCipher.from_key_file(tmp_path / "bad.key")
    create_key_file(tmp_path / "k")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        create_key_file(tmp_path / "k")


async def test_claims_are_leased_and_an_abandoned_job_comes_back(backend, cipher):
    clock = FrozenClock()
    async with backend.store(cipher) as store:
        msg = message(clock.now())
        await store.accept(msg)
        jobs = await store.claim_due(clock.now(), 10, lease_seconds=60)
        assert len(jobs) == 2
        assert await store.claim_due(clock.now(), 10, lease_seconds=60) == []
        clock.advance(seconds=61)
        again = await store.claim_due(clock.now(), 10, lease_seconds=60)
        assert len(again) == 2
        # The first worker's result is refused: its lease is gone.
        with pytest.raises(LeaseLost):
            await store.finish(jobs[0], RecipientUpdate(state=RecipientState.DELIVERED,
                                                        detail="late"), now=clock.now())
        await store.finish(again[0], RecipientUpdate(state=RecipientState.DELIVERED, detail="ok"),
                           now=clock.now())


async def test_a_live_worker_renews_its_lease_and_a_taken_over_one_cannot(backend, cipher):
    clock = FrozenClock()
    async with backend.store(cipher) as store:
        await store.accept(message(clock.now(), rcpts=("a@x.example",)))
        [job] = await store.claim_due(clock.now(), 10, lease_seconds=60)
        clock.advance(seconds=50)
        assert await store.renew_lease(job, clock.now() + timedelta(seconds=60))
        clock.advance(seconds=50)
        assert await store.claim_due(clock.now(), 10, lease_seconds=60) == []
        clock.advance(seconds=11)
        [again] = await store.claim_due(clock.now(), 10, lease_seconds=60)
        assert not await store.renew_lease(job, clock.now() + timedelta(seconds=60))
        assert await store.renew_lease(again, clock.now() + timedelta(seconds=60))


async def test_the_next_serving_process_voids_leases_so_nothing_is_stuck(tmp_path, cipher):
    clock = FrozenClock()
    db = tmp_path / "s.db"
    async with SQLiteStore(db, cipher) as store:
        await store.take_over()
        await store.accept(message(clock.now()))
        assert len(await store.claim_due(clock.now(), 10, lease_seconds=900)) == 2
        # Another process (an administrator's CLI) opens the store: the leases stand.
        async with SQLiteStore(db, cipher) as other:
            assert await other.claim_due(clock.now(), 10, lease_seconds=900) == []
            with pytest.raises(StoreError, match="another siegel process is serving"):
                await other.take_over()
    # The serving process died holding the leases; the next one picks the jobs up at once.
    async with SQLiteStore(db, cipher) as store:
        await store.take_over()
        assert len(await store.claim_due(clock.now(), 10, lease_seconds=900)) == 2


async def test_finish_stores_the_notices_in_the_same_transaction(backend, cipher):
    clock = FrozenClock()
    async with backend.store(cipher) as store:
        msg = message(clock.now(), rcpts=("a@x.example",))
        await store.accept(msg)
        [job] = await store.claim_due(clock.now(), 10, 60)
        notice = message(clock.now(), rcpts=("s@t.example",))
        await store.finish(job, RecipientUpdate(state=RecipientState.QUARANTINED, detail="q"),
                           now=clock.now(), new_messages=[notice])
        assert (await store.recipients(notice.id))[0].state is RecipientState.ACCEPTED


async def test_expired_content_is_destroyed_and_finished_content_after_retention(backend, cipher):
    clock = FrozenClock()
    async with backend.store(cipher) as store:
        held = message(clock.now(), rcpts=("a@x.example",))
        done = message(clock.now(), rcpts=("a@x.example",))
        await store.accept(held)
        await store.accept(done)
        jobs = {j.message_id: j for j in await store.claim_due(clock.now(), 10, 60)}
        await store.finish(jobs[held.id], RecipientUpdate(state=RecipientState.EXPIRED,
                                                          detail="x"), now=clock.now())
        await store.finish(jobs[done.id], RecipientUpdate(state=RecipientState.DELIVERED,
                                                          detail="x"), now=clock.now())
        with pytest.raises(ContentDestroyed):
            await store.load(held.id)
        assert (await store.load(done.id)).raw == done.raw
        assert await store.destroy_finished_content(clock.now() - timedelta(days=7)) == 0
        clock.advance(days=8)
        assert await store.destroy_finished_content(clock.now() - timedelta(days=7)) == 1
        with pytest.raises(ContentDestroyed):
            await store.load(done.id)
        assert (await store.recipients(done.id))[0].content_destroyed


async def test_requeue_and_purge(backend, cipher):
    clock = FrozenClock()
    async with backend.store(cipher) as store:
        msg = message(clock.now())
        await store.accept(msg)
        for job in await store.claim_due(clock.now(), 10, 60):
            await store.finish(job, RecipientUpdate(state=RecipientState.QUARANTINED, detail="q"),
                               now=clock.now())
        assert await store.requeue(msg.id, recipients=["b@y.example"],
                                   states=[RecipientState.QUARANTINED], release=True,
                                   now=clock.now()) == 1
        records = {r.recipient: r for r in await store.recipients(msg.id)}
        assert records["b@y.example"].state is RecipientState.ACCEPTED
        assert records["b@y.example"].released
        assert records["a@x.example"].state is RecipientState.QUARANTINED
        assert await store.purge(msg.id)
        assert await store.recipients(msg.id) == []
        assert not await store.purge(msg.id)


async def test_plugin_state_is_encrypted_versioned_and_expires(backend, cipher):
    from siegel.state import PluginState
    from siegel.store import StateConflict

    clock = FrozenClock()
    async with backend.store(cipher) as store:
        accounts = PluginState(store, "pdf.accounts", clock)
        tokens = PluginState(store, "pdf.tokens", clock)
        assert await accounts.put("buerger@example.net", b'{"u": "GEHEIM-U-ENTRY"}',
                                  expect_version=0) == 1
        with pytest.raises(StateConflict):
            await accounts.put("buerger@example.net", b"{}", expect_version=0)
        assert await accounts.put("buerger@example.net", b'{"u": "v2"}', expect_version=1) == 2
        await accounts.put("buerger_2@example.net", b"x")
        await accounts.put("b%rger@example.net", b"y")
        await tokens.put("t1", b"token", ttl=timedelta(days=5))
        assert [r.key for r in await accounts.scan("buerger_")] == ["buerger_2@example.net"]
        assert (await accounts.get("buerger@example.net")).value == b'{"u": "v2"}'
        assert await tokens.get("buerger@example.net") is None  # namespaces are separate
        clock.advance(days=5)
        assert await tokens.get("t1") is None
        assert await store.state_purge_expired(clock.now()) == 1
        assert await accounts.delete("b%rger@example.net")
    on_disk = backend.at_rest()
    assert b"GEHEIM-U-ENTRY" not in on_disk and b"v2" not in on_disk


async def test_large_content_is_sealed_in_pieces_and_loads_byte_for_byte(backend, cipher):
    # Several seal chunks plus an odd remainder, and a CRLF split across a chunk boundary.
    body = (b"x" * (1024 * 1024 - 1) + b"\r\n") * 3 + bytes(range(256)) * 777
    msg = attrs.evolve(message(FrozenClock().now()), raw=b"Subject: big\r\n\r\n" + body)
    async with backend.store(cipher) as store:
        await store.accept(msg)
    [(key_id, wrapped)] = backend.sql("SELECT key_id, wrapped_key FROM messages")
    if backend.name == "sqlite":
        [(content,)] = backend.sql("SELECT content FROM messages")
    else:  # in chunks of about a megabyte
        chunks = backend.sql("SELECT data FROM message_chunks ORDER BY seq")
        assert len(chunks) == 6 and max(len(c) for (c,) in chunks) <= 1024 * 1024
        content = b"".join(c for (c,) in chunks)
    assert len(content) == 12 + len(msg.raw) + 16
    assert cipher.open(msg.id, SealedContent(key_id, bytes(wrapped), content)) == msg.raw
    async with backend.store(cipher) as store:
        assert (await store.load(msg.id)).raw == msg.raw


def test_sealing_in_pieces_gives_what_seal_gives(cipher):
    content = bytes(range(256)) * 9000
    stream = cipher.seal_stream("m1", content)
    ciphertext = b"".join(stream.chunks)
    assert len(ciphertext) == stream.size
    assert cipher.open("m1", SealedContent(stream.key_id, stream.wrapped_key, ciphertext)) == content
    with pytest.raises(DecryptionError):  # bound to the message id
        cipher.open("m2", SealedContent(stream.key_id, stream.wrapped_key, ciphertext))
    tampered = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
    with pytest.raises(DecryptionError):
        cipher.open("m1", SealedContent(stream.key_id, stream.wrapped_key, tampered))
    whole = cipher.seal("m1", content)
    assert cipher.open("m1", whole) == content
