"""Poison messages: a copy whose processing keeps being cut off (the process crashes or hangs while
it works on it) is quarantined with the reason instead of being taken up again forever.

The processing starts are counted durably in the store; the end-to-end test kills the real
``siegel serve`` with SIGKILL while it reads a pathological message, twice, and checks that the
third start quarantines it and tells the sender.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

from siegel import (
    Availability,
    Outgoing,
    Protected,
    ProtectionMethod,
    RecipientState,
    RetryLater,
    StoreError,
    Text,
    hookimpl,
)
from siegel.crypto import ContentCipher
from siegel.sink import SmtpSink
from siegel.sqlite_store import SQLiteStore
from siegel.testing import make_message
from test_crash_recovery import (
    SENDER,
    Server,
    make_workdir,
    poll,
    ports,
    server_factory,
    wait_until,
)

__all__ = ["ports", "server_factory"]  # fixtures used below

COLLEAGUE = "kollegin@behoerde.example"


async def test_claims_count_starts_until_the_copy_finishes(siegel_harness):
    async with siegel_harness() as harness:
        store, clock = harness.store, harness.clock
        message_id = await harness.send(make_message(to=COLLEAGUE))
        [job] = await store.claim_due(clock.now(), 10, lease_seconds=0.001)
        assert (job.starts, job.handoffs) == (1, 0)
        # The lease ran out without a finish (a hung or dead worker): the next claim counts on.
        clock.advance(seconds=1)
        [job] = await store.claim_due(clock.now(), 10, lease_seconds=60)
        assert job.starts == 2
        [record] = await store.recipients(message_id)
        assert record.starts == 2
        await harness.runtime.process(job)
        [record] = await store.recipients(message_id)
        assert (record.state, record.starts) == (RecipientState.DELIVERED, 0)


async def test_a_copy_started_too_often_is_quarantined_unread_as_poison(siegel_harness):
    config = {"delivery": {"max_processing_starts": 2}}
    async with siegel_harness(config=config) as harness:
        store, clock = harness.store, harness.clock
        message_id = await harness.send(make_message(to=COLLEAGUE))
        for _ in range(2):
            await store.claim_due(clock.now(), 10, lease_seconds=0.001)
            clock.advance(seconds=1)
        await harness.process()
        [record] = await store.recipients(message_id)
        assert record.state is RecipientState.QUARANTINED
        assert record.detail.startswith("poison message: processing was started 2 times")
        assert harness.sink.to(COLLEAGUE) == []
        # A person's release starts counting afresh: the copy is processed normally.
        await store.requeue(message_id, recipients=None, states=[RecipientState.QUARANTINED],
                            release=True, now=clock.now())
        await harness.process()
        assert await harness.states(message_id) == {COLLEAGUE: RecipientState.DELIVERED}


async def test_a_store_of_schema_1_is_migrated_and_keeps_its_messages(siegel_harness):
    async with siegel_harness() as harness:
        message_id = await harness.send(make_message(to=COLLEAGUE))
        path, key_file = harness.store.path, harness.config.base_dir / "keys" / "store.key"
    # What a store written by the previous version looks like.
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE recipients DROP COLUMN starts")
        db.execute("ALTER TABLE recipients DROP COLUMN protect_retries")
        db.execute("ALTER TABLE recipients DROP COLUMN handoffs")
        db.execute("DROP INDEX recipients_address")
        db.execute("UPDATE schema_version SET version = 1")
    db.close()
    store = SQLiteStore(path, ContentCipher.from_key_file(key_file))
    with pytest.raises(StoreError, match="schema version 1, expected 4; run 'siegel store migrate'"):
        await store.open()
    assert await store.migrate() == (1, 4)
    await store.close()
    async with store:
        [record] = await store.recipients(message_id)
        assert (record.state, record.starts) == (RecipientState.ACCEPTED, 0)
        [job] = await store.claim_due(record.received_at.replace(year=2100), 10, 60)
        assert (job.starts, job.handoffs) == (1, 0)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(4,)]
    db.close()


async def test_a_store_of_a_newer_schema_is_refused(siegel_harness):
    async with siegel_harness() as harness:
        path, key_file = harness.store.path, harness.config.base_dir / "keys" / "store.key"
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    db.close()
    with pytest.raises(StoreError, match="schema version 99, expected 4"):
        await SQLiteStore(path, ContentCipher.from_key_file(key_file)).open()


def starts(database: Path, recipient: str) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        rows = db.execute("SELECT starts FROM recipients WHERE address = ?",
                          (recipient,)).fetchall()
    db.close()
    return int(rows[0][0]) if rows else 0


def pathological_message(recipient: str) -> bytes:
    """60 000 tiny attachments (7.5 MB, within every default limit): half a minute or more of
    parsing, the stand-in for any message that crashes or hangs the process."""
    parts = b"".join(
        b'--b\r\nContent-Type: text/plain; name="t%d.txt"\r\n'
        b'Content-Disposition: attachment; filename="t%d.txt"\r\n\r\nx\r\n' % (i, i)
        for i in range(60_000))
    return (f"From: {SENDER}\r\nTo: {recipient}\r\nSubject: Teile\r\nMIME-Version: 1.0\r\n"
            'Message-ID: <poison@demo.example>\r\n'
            'Content-Type: multipart/mixed; boundary="b"\r\n\r\n').encode() + parts + b"--b--\r\n"


@pytest.mark.slow
def test_a_message_that_kills_the_gateway_ends_quarantined_after_restarts(
        tmp_path, ports, server_factory):
    import smtplib

    listen_port, relay_port = ports
    config = make_workdir(tmp_path, listen_port, relay_port)
    text = config.read_text(encoding="utf-8")
    text = text.replace("[delivery]\n", "[delivery]\nclassify_timeout_seconds = 600\n"
                        "max_processing_starts = 2\n")
    config.write_text(text, encoding="utf-8")
    database = config.parent / "var" / "siegel.db"
    recipient = "buerger@example.org"
    with SmtpSink(port=relay_port) as sink:
        server: Server = server_factory(config, listen_port)
        server.start()
        with smtplib.SMTP("127.0.0.1", listen_port, timeout=30) as smtp:
            smtp.sendmail(SENDER, [recipient], pathological_message(recipient))
        for run in (1, 2):
            wait_until(lambda run=run: starts(database, recipient) == run, 30,
                       f"processing start {run}", server.log)
            time.sleep(0.5)  # well into reading the message
            server.kill()
            server.start()
        # The third start finds two that never finished: quarantined, the sender told.
        assert poll(lambda: any(SENDER in m.rcpt_to for m in sink.messages), 30), (
            server.log.read_text(errors="replace"))
        assert server.terminate() == 0
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        [(state, detail, left)] = db.execute(
            "SELECT state, detail, starts FROM recipients WHERE address = ?",
            (recipient,)).fetchall()
    db.close()
    assert state == "quarantined"
    assert detail.startswith("poison message: processing was started 2 times and never finished")
    assert left == 0
    assert not any(recipient in m.rcpt_to for m in sink.messages)


class FlakyMethod:
    """A protection method that answers "retry later" ``failures`` times, then protects."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    @hookimpl
    def siegel_register_protection_methods(self) -> list[ProtectionMethod]:
        async def can_serve(ctx):
            return Availability.yes(Text("ja", "yes"))

        async def protect(ctx):
            self.calls += 1
            if self.calls <= self.failures:
                return RetryLater(reason=Text("Helfer fort", "helper gone"))
            return Protected(outgoing=[Outgoing(
                channel="smtp", mail_from=str(ctx.message.envelope.mail_from),
                recipients=[str(ctx.recipient)],
                raw=b"Subject: geschuetzt\r\n\r\n" + hashlib.sha256(ctx.raw).hexdigest().encode())],
                reason=Text("geschützt", "protected"))

        return [ProtectionMethod(name="flaky", can_serve=can_serve, protect=protect)]


@pytest.mark.parametrize(("failures", "outcome"), [
    (2, RecipientState.DELIVERED), (3, RecipientState.QUARANTINED)])
async def test_retry_later_queues_the_copy_again_a_few_times(siegel_harness, failures, outcome):
    config = {"tenants": {"test": {"protection": ["flaky"]}},
              "delivery": {"max_protect_retries": 2}}
    method = FlakyMethod(failures)
    async with siegel_harness(config=config, plugins=[("flaky", method)]) as harness:
        message_id = await harness.send(make_message(to="buerger@example.net"))
        for _ in range(4):
            await harness.process()
            [record] = await harness.store.recipients(message_id)
            if record.state is not RecipientState.ACCEPTED:
                break
            assert record.detail == "helper gone"
            assert harness.sink.to("buerger@example.net") == []
            harness.clock.advance(seconds=600)
        assert record.state is outcome, record
        assert method.calls == min(failures + 1, 3)
        if outcome is RecipientState.QUARANTINED:
            assert record.detail == ("protection method 'flaky' gave up after 3 tries: "
                                     "helper gone")
            assert harness.sink.to("buerger@example.net") == []
            assert harness.notices("quarantined")
        else:
            [mail] = harness.sink.to("buerger@example.net")
            assert mail.raw.startswith(b"Subject: geschuetzt")


class StoreDownMethod(FlakyMethod):
    """A protection method whose store call fails ``failures`` times (a database restart)."""

    @hookimpl
    def siegel_register_protection_methods(self) -> list[ProtectionMethod]:
        [flaky] = FlakyMethod.siegel_register_protection_methods(self)

        async def protect(ctx):
            if self.calls < self.failures:
                self.calls += 1
                raise StoreError("the database is restarting")
            self.failures = 0
            return await flaky.protect(ctx)

        return [ProtectionMethod(name="flaky", can_serve=flaky.can_serve, protect=protect)]


async def test_a_store_error_inside_a_protection_method_is_retried_not_quarantined(
        siegel_harness):
    config = {"tenants": {"test": {"protection": ["flaky"]}},
              "delivery": {"max_protect_retries": 2}}
    method = StoreDownMethod(2)
    async with siegel_harness(config=config, plugins=[("flaky", method)]) as harness:
        message_id = await harness.send(make_message(to="buerger@example.net"))
        for _ in range(3):
            await harness.process()
            [record] = await harness.store.recipients(message_id)
            if record.state is not RecipientState.ACCEPTED:
                break
            assert "the database is restarting" in record.detail
            harness.clock.advance(seconds=600)
        assert record.state is RecipientState.DELIVERED, record
        [mail] = harness.sink.to("buerger@example.net")
        assert mail.raw.startswith(b"Subject: geschuetzt")
