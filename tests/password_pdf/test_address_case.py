"""One recipient whatever the case of the address: one invitation, one password, one login; and
accounts an older siegel stored under another spelling are found and moved without losing the
password (over a real store and SMTP sink)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from test_workflow import CONFIG, PASSWORD, link_from

from siegel import Address, RecipientState
from siegel.plugins.password_pdf.accounts import Account
from siegel.plugins.password_pdf.encrypt import derive_recipient_key
from siegel.plugins.password_pdf.login import hash_password
from siegel.plugins.password_pdf.workflow import ACCOUNTS, Workflow
from siegel.testing import make_message

LOWER = "anna.meier@example.net"
UPPER = "ANNA.Meier@Example.NET"
#: As the store keeps it: the domain normalised, the local part as written.
UPPER_STORED = "ANNA.Meier@example.net"
BODY = "Ihre Kundennummer 123A456789\n"
OTHER_PASSWORD = "Blaue Birnen im Herbst"


def workflow_of(harness) -> Workflow:
    return Workflow(harness.runtime, harness.config.tenants["test"])


def invitations(harness) -> list:
    return [m for m in harness.sink.messages
            if m.parsed["X-Siegel-Mail"] == "password_pdf.invitation"]


async def test_two_spellings_get_one_invitation_and_both_messages(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        first = await harness.send(make_message(to=LOWER, body=BODY))
        second = await harness.send(make_message(to=UPPER, body=BODY))
        await harness.process()
        assert (await harness.states(first))[LOWER] is RecipientState.HELD
        assert (await harness.states(second))[UPPER_STORED] is RecipientState.HELD
        [invitation] = invitations(harness)
        _, problems = await workflow_of(harness).register(link_from(invitation, "register"),
                                                          PASSWORD)
        assert problems == []
        await harness.process()
        # Each held copy is released under the address its message has.
        assert (await harness.states(first))[LOWER] is RecipientState.DELIVERED
        assert (await harness.states(second))[UPPER_STORED] is RecipientState.DELIVERED
        # Later mail in a third spelling goes out at once with the same password.
        third = await harness.send(make_message(to="anna.meier@EXAMPLE.net", body=BODY))
        await harness.process()
        assert (await harness.states(third))["anna.meier@example.net"] is (
            RecipientState.DELIVERED)
        assert len(invitations(harness)) == 1


async def test_login_and_reset_in_another_case_find_the_account(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        await harness.send(make_message(to=LOWER, body=BODY))
        await harness.process()
        workflow = workflow_of(harness)
        await workflow.register(link_from(invitations(harness)[0], "register"), PASSWORD)
        assert await workflow.verify_login(Address.parse(UPPER), PASSWORD) is not None
        assert await workflow.verify_login(Address.parse(UPPER), "falsch") is None
        await workflow.request_reset(Address.parse(UPPER))
        await harness.process()
        [reset] = [m for m in harness.sink.messages
                   if m.parsed["X-Siegel-Mail"] == "password_pdf.reset"]
        assert list(reset.rcpt_to) == [UPPER_STORED]


async def _legacy_account(harness, spelt: str, password: str, age: timedelta) -> None:
    """An account as siegel stored it before addresses were case-insensitive."""
    account = Account(key=derive_recipient_key(password), set_at=harness.clock.now() - age,
                       login_hash=await hash_password(password))
    await harness.runtime.state(ACCOUNTS).put(f"test/{spelt}", account.encode())


async def test_an_account_stored_under_another_spelling_is_found_and_moved(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        await _legacy_account(harness, "Anna.Meier@example.net", PASSWORD, timedelta(days=3))
        workflow = workflow_of(harness)
        assert await workflow.verify_login(Address.parse(LOWER), PASSWORD) is not None
        state = harness.runtime.state(ACCOUNTS)
        assert await state.get("test/Anna.Meier@example.net") is None
        assert await state.scan("test/") == []  # moved onto the shared account
        moved = await harness.runtime.accounts("test").get(Address.parse(LOWER))
        assert moved is not None and moved.login_hash is not None
        assert moved.login_hash.startswith("$argon2id")
        # Known, so no first-contact hold: the PDF goes out at once.
        message_id = await harness.send(make_message(to=UPPER, body=BODY))
        await harness.process()
        assert (await harness.states(message_id))[UPPER_STORED] is RecipientState.DELIVERED
        assert invitations(harness) == []


async def test_two_stored_spellings_keep_the_password_set_last(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        await _legacy_account(harness, "ANNA.MEIER@example.net", OTHER_PASSWORD, timedelta(days=9))
        await _legacy_account(harness, "Anna.Meier@example.net", PASSWORD, timedelta(days=1))
        workflow = workflow_of(harness)
        assert await workflow.verify_login(Address.parse(LOWER), PASSWORD) is not None
        assert await workflow.verify_login(Address.parse(LOWER), OTHER_PASSWORD) is None
        assert await harness.runtime.state(ACCOUNTS).scan("test/") == []
        assert [a.key for a in await harness.runtime.accounts("test").all()] == [LOWER]


async def test_every_case_variant_logs_in_to_the_one_account(siegel_harness):
    """Property: whatever case hypothesis gives the local part and the domain, the login finds
    the one account (a real store and Argon2id check; hypothesis runs in a thread and hands
    each check to the event loop)."""
    async with siegel_harness(config=CONFIG) as harness:
        await harness.send(make_message(to=LOWER, body=BODY))
        await harness.process()
        workflow = workflow_of(harness)
        await workflow.register(link_from(invitations(harness)[0], "register"), PASSWORD)
        loop = asyncio.get_running_loop()

        @settings(max_examples=25, deadline=None, derandomize=True)
        @given(st.lists(st.booleans(), min_size=len(LOWER), max_size=len(LOWER)))
        def logs_in(flips: list[bool]) -> None:
            variant = "".join(c.upper() if flip else c
                              for c, flip in zip(LOWER, flips, strict=True))
            found = asyncio.run_coroutine_threadsafe(
                workflow.verify_login(Address.parse(variant), PASSWORD), loop).result(30)
            assert found is not None, variant
            assert asyncio.run_coroutine_threadsafe(
                workflow.recipient_key(Address.parse(variant)), loop).result(30) is not None

        await asyncio.to_thread(logs_in)
        assert [a.key for a in await harness.runtime.accounts("test").all()] == [LOWER]
