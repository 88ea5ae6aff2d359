"""PIN letters in the store: issue, check, expire, void, single use, per account."""

from __future__ import annotations

import asyncio

import pytest
from pin_helpers import ANNA, BERND, CONFIG, HOME, AuditRecorder

from siegel import Address, IdentityLevel
from siegel.plugins.pin_letters.letters import NAMESPACE, LetterBook, LetterStatus, Outcome


@pytest.fixture
def recorder() -> AuditRecorder:
    return AuditRecorder()


@pytest.fixture
async def book(siegel_harness, recorder):
    async with siegel_harness(config=CONFIG, plugins=[("recorder", recorder)]) as harness:
        accounts = harness.runtime.accounts("test")
        for address in (ANNA, BERND):
            await accounts.open(Address.parse(address))
        yield LetterBook(harness.runtime, "test", valid_days=30, max_attempts=5), harness


async def printed(book: LetterBook, *addresses: str) -> dict[str, str]:
    for address in addresses:
        await book.request(Address.parse(address), HOME, requested_by="portal")
    return {item.letter.address: item.pin for item in await book.issue(await book.pending())}


async def level(harness, address: str) -> IdentityLevel:
    account = await harness.runtime.accounts("test").get(Address.parse(address))
    return account.level


async def test_the_right_pin_confirms_once_and_raises_the_level(book, recorder):
    book, harness = book
    pins = await printed(book, ANNA)
    anna = Address.parse(ANNA)
    letter = await book.get(anna)
    assert letter.status is LetterStatus.PRINTED and letter.pin_hash.startswith("$argon2id$")
    assert pins[ANNA] not in (await harness.store.state_get(NAMESPACE, f"test/{anna.key}")).value.decode()
    assert await level(harness, ANNA) is IdentityLevel.MAILBOX
    assert await book.confirm(anna, pins[ANNA]) is Outcome.CONFIRMED
    assert await level(harness, ANNA) is IdentityLevel.CONFIRMED
    used = await book.get(anna)
    assert used.status is LetterStatus.USED and used.pin_hash is None
    assert await book.confirm(anna, pins[ANNA]) is Outcome.REFUSED  # single use
    assert recorder.kinds() == ["pin_letter_requested", "pin_letter_printed",
                                "identity_level_raised"]
    raised = recorder.events[-1]
    assert (raised.tenant, raised.recipient, raised.detail["level"]) == ("test", ANNA, "confirmed")
    assert pins[ANNA] not in repr(recorder.events)


async def test_another_accounts_pin_does_not_work(book):
    book, harness = book
    pins = await printed(book, ANNA, BERND)
    assert pins[ANNA] != pins[BERND]
    assert await book.confirm(Address.parse(ANNA), pins[BERND]) is Outcome.REFUSED
    assert await level(harness, ANNA) is IdentityLevel.MAILBOX
    assert await book.confirm(Address.parse(BERND), pins[BERND]) is Outcome.CONFIRMED
    assert await level(harness, ANNA) is IdentityLevel.MAILBOX


async def test_the_pin_expires(book):
    book, harness = book
    pins = await printed(book, ANNA)
    anna = Address.parse(ANNA)
    wrong = "ACDEFHJKLMNP" if pins[ANNA] != "ACDEFHJKLMNP" else "PNMLKJHFEDCA"
    harness.clock.advance(days=29, hours=23)
    assert await book.confirm(anna, wrong) is Outcome.REFUSED
    assert (await book.get(anna)).attempts == 1  # still valid: the attempt counted
    harness.clock.advance(hours=1)
    assert await book.confirm(anna, pins[ANNA]) is Outcome.REFUSED
    assert (await book.get(anna)).attempts == 1  # an expired letter counts nothing
    assert await level(harness, ANNA) is IdentityLevel.MAILBOX


async def test_five_wrong_pins_void_the_letter(book, recorder):
    book, harness = book
    pins = await printed(book, ANNA)
    anna = Address.parse(ANNA)
    wrong = "ACDEFHJKLMNP" if pins[ANNA] != "ACDEFHJKLMNP" else "PNMLKJHFEDCA"
    for attempt in range(1, 5):
        assert await book.confirm(anna, wrong) is Outcome.REFUSED
        assert (await book.get(anna)).attempts == attempt
    assert await book.confirm(anna, wrong) is Outcome.REFUSED
    assert (await book.get(anna)).status is LetterStatus.VOID
    assert await book.confirm(anna, pins[ANNA]) is Outcome.REFUSED
    assert await level(harness, ANNA) is IdentityLevel.MAILBOX
    assert recorder.kinds()[-2:] == ["pin_letter_refused", "pin_letter_void"]


async def test_parallel_guesses_get_no_more_checks_than_the_limit(book):
    book, _harness = book
    pins = await printed(book, ANNA)
    anna = Address.parse(ANNA)
    wrong = "ACDEFHJKLMNP" if pins[ANNA] != "ACDEFHJKLMNP" else "PNMLKJHFEDCA"
    outcomes = await asyncio.gather(*(book.confirm(anna, wrong) for _ in range(8)),
                                    book.confirm(anna, pins[ANNA]))
    letter = await book.get(anna)
    assert letter.attempts <= 5
    if outcomes[-1] is Outcome.CONFIRMED:  # the right one came in among the first five
        assert letter.status is LetterStatus.USED
    else:
        assert letter.status is LetterStatus.VOID


async def test_a_new_request_or_print_invalidates_the_old_pin(book):
    book, _harness = book
    anna = Address.parse(ANNA)
    first = await printed(book, ANNA)
    again = await book.again(anna)
    assert again.status is LetterStatus.PENDING
    second = await printed(book)
    assert await book.confirm(anna, first[ANNA]) is Outcome.REFUSED
    await book.request(anna, HOME, requested_by="cli")  # replaced before use
    assert await book.confirm(anna, second[ANNA]) is Outcome.REFUSED
    third = await printed(book)
    assert await book.confirm(anna, third[ANNA]) is Outcome.CONFIRMED


async def test_a_letter_requested_again_while_printing_is_left_out(book):
    book, _harness = book
    anna = Address.parse(ANNA)
    await book.request(anna, HOME, requested_by="portal")
    pending = await book.pending()
    await book.request(anna, HOME, requested_by="portal")  # changed after it was read
    assert await book.issue(pending) == []
    assert [letter.address for letter in await book.pending()] == [ANNA]
