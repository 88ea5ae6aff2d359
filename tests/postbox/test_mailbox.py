"""The postbox's storage (:class:`Mailbox`): paging, unread marks, retrieval, bin, purge, levels,
large attachments, and one account never reaching another's messages."""

from __future__ import annotations

import hashlib

import pytest
from postbox_helpers import CITIZEN, CLERK, CONFIG, OTHER, mailbox_of

from siegel import Address, IdentityLevel
from siegel.plugins.postbox import records
from siegel.plugins.postbox.mailbox import LevelTooLow, MessageMissing
from siegel.plugins.postbox.records import ContentGone
from siegel.testing import make_message

BODY = "Sehr geehrter Herr Schmidt,\nIhr Bescheid zur Kundennummer 123A456789.\n"
FILE = ("Bescheid.pdf", "application/pdf", b"%PDF-1.7\n" + bytes(range(256)) * 40)


async def test_inbox_newest_first_with_unread_marks_and_retrieval(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        box = mailbox_of(harness)
        ids = []
        start = harness.clock.now()
        for number in range(5):
            raw = make_message(sender=CLERK, to=CITIZEN, subject=f"Bescheid {number}", body=BODY,
                               attachments=[FILE] if number == 4 else [])
            summary = await box.deliver(raw, level=IdentityLevel.MAILBOX, source=f"m{number}",
                                        envelope_sender=CLERK, received_at=harness.clock.now())
            ids.append(summary.id)
            harness.clock.advance(minutes=1)
        # Delivering the same copy again (a retry) finds the first delivery.
        again = await box.deliver(make_message(sender=CLERK, to=CITIZEN), source="m0",
                                  level=IdentityLevel.MAILBOX, envelope_sender=CLERK,
                                  received_at=start)
        assert again.id == ids[0]

        first = await box.page(limit=2)
        assert [m.subject for m in first.messages] == ["Bescheid 4", "Bescheid 3"]
        assert first.unread == 5 and all(m.unread for m in first.messages)
        second = await box.page(limit=2, after=first.next_after)
        last = await box.page(limit=2, after=second.next_after)
        assert [m.id for m in (*first.messages, *second.messages, *last.messages)] == ids[::-1]
        assert last.next_after is None

        newest = await box.get(ids[4])
        assert "123A456789" in newest.text
        [attachment] = newest.summary.attachments
        assert attachment.sha512 == hashlib.sha512(FILE[2]).hexdigest()
        assert (await box.attachment(ids[4], 0))[1] == FILE[2]
        assert newest.summary.threading.reply_to == CLERK
        assert newest.summary.threading.message_id

        read_at = await box.mark_read(ids[4])
        assert read_at == harness.clock.now()
        harness.clock.advance(hours=1)
        assert await box.mark_read(ids[4]) == read_at  # the first read stands
        assert await box.unread_count() == 4
        assert not (await box.summary(ids[4])).unread
        events = [e for e in await harness.store.events("m4") if e.kind == "postbox.retrieved"]
        assert len(events) == 1 and events[0].detail["at"] == read_at.isoformat()
        await harness.process()
        [notice] = harness.notices("retrieved")
        assert notice["To"] == CLERK and "m4" in notice["X-Siegel-Message-Id"]


async def test_another_account_cannot_reach_the_messages(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        mine = mailbox_of(harness)
        other = mailbox_of(harness, OTHER)
        summary = await mine.deliver(make_message(to=CITIZEN, body=BODY, attachments=[FILE]),
                                     level=IdentityLevel.MAILBOX)
        for attempt in (other.get(summary.id), other.summary(summary.id),
                        other.attachment(summary.id, 0), other.mark_read(summary.id),
                        other.move_to_bin(summary.id), other.restore(summary.id)):
            with pytest.raises(MessageMissing):
                await attempt
        assert not await other.purge(summary.id)
        assert (await other.page()).messages == () and await other.unread_count() == 0
        # Ids that try to leave the account's prefix are not ids.
        for forged in ("../" + summary.id, f"x/{summary.id}", summary.id + "/body", ""):
            with pytest.raises(MessageMissing):
                await mine.get(forged)
        assert (await mine.get(summary.id)).summary.id == summary.id


async def test_bin_restore_and_purge_erases_the_key(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        box = mailbox_of(harness)
        kept = await box.deliver(make_message(to=CITIZEN, body=BODY), level=IdentityLevel.MAILBOX)
        gone = await box.deliver(make_message(to=CITIZEN, body=BODY, attachments=[FILE]),
                                 level=IdentityLevel.MAILBOX)
        await box.move_to_bin(kept.id)
        assert [m.id for m in (await box.page()).messages] == [gone.id]
        assert [m.id for m in (await box.page("bin")).messages] == [kept.id]
        assert await box.unread_count() == 1  # the inbox's
        await box.restore(kept.id)
        assert (await box.page("bin")).messages == ()
        assert await box.unread_count() == 2

        # The pieces alone are of no use: without the record holding the key they do not open.
        content = harness.runtime.state(records.CONTENT)
        prefix = records.account_prefix("test", Address.parse(CITIZEN))
        pieces = await content.scan(f"{prefix}{gone.id}/")
        assert len(pieces) == 2  # the body and one piece of the attachment
        with pytest.raises(ContentGone):
            records.unseal(records.new_key(), pieces[0].key, pieces[0].value)

        assert await box.purge(gone.id)
        assert await content.scan(f"{prefix}{gone.id}/") == []
        with pytest.raises(MessageMissing):
            await box.get(gone.id)
        assert await box.unread_count() == 1
        assert not await box.purge(gone.id)


async def test_a_message_above_the_accounts_level_shows_only_its_summary(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        box = mailbox_of(harness)
        await harness.runtime.accounts("test").open(Address.parse(CITIZEN))
        summary = await box.deliver(make_message(to=CITIZEN, body=BODY, attachments=[FILE]),
                                    level=IdentityLevel.CONFIRMED)
        assert (await box.summary(summary.id)).level is IdentityLevel.CONFIRMED
        for attempt in (box.get(summary.id), box.attachment(summary.id, 0),
                        box.mark_read(summary.id)):
            with pytest.raises(LevelTooLow):
                await attempt
        await harness.runtime.accounts("test").raise_level(Address.parse(CITIZEN),
                                                           IdentityLevel.CONFIRMED)
        assert "123A456789" in (await box.get(summary.id)).text


async def test_a_25_mb_attachment_is_stored_in_pieces_and_comes_back_whole(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        box = mailbox_of(harness)
        big = hashlib.shake_256(b"siegel").digest(25 * 1024 * 1024)
        raw = make_message(to=CITIZEN, body=BODY, attachments=[("daten.bin",
                                                                "application/octet-stream", big)])
        summary = await box.deliver(raw, level=IdentityLevel.MAILBOX)
        [info] = summary.attachments
        assert info.size == len(big) and info.sha512 == hashlib.sha512(big).hexdigest()
        prefix = records.account_prefix("test", Address.parse(CITIZEN))
        pieces = await harness.runtime.state(records.CONTENT).count(f"{prefix}{summary.id}/a/")
        assert pieces == 25
        assert (await box.attachment(summary.id, 0))[1] == big


async def test_notice_choice_lives_in_the_accounts_slot(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        box = mailbox_of(harness)
        await harness.runtime.accounts("test").open(Address.parse(CITIZEN))
        assert not await box.notices_wanted()  # opt-in (seed 003)
        await box.set_notices(True)
        assert await box.notices_wanted()
        account = await harness.runtime.accounts("test").get(Address.parse(CITIZEN))
        assert account.slot("postbox") == b'{"notices": true}'
