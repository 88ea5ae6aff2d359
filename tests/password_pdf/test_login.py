"""The portal login's Argon2id hash, at the level of the workflow: what is stored when a password
is set, how a login is checked (and its hash renewed), and a password change."""

from __future__ import annotations

import statistics
import time

import argon2
import attrs
from test_workflow import CITIZEN, CONFIG, PASSWORD, link_from, send_customer_mail

from siegel import Account, Address, RecipientState
from siegel.accounts import NAMESPACE
from siegel.plugins.password_pdf import verify_password
from siegel.plugins.password_pdf.accounts import SLOT, encode_key, pdf_key
from siegel.plugins.password_pdf.encrypt import derive_recipient_key
from siegel.plugins.password_pdf.login import PARAMETERS, check_password, hash_password
from siegel.plugins.password_pdf.workflow import ACCOUNTS, Workflow

NEW_PASSWORD = "Blaue Birnen im Herbst"
# OWASP ASVS 5 / Password Storage Cheat Sheet: Argon2id with at least 19 MiB, 2 passes, 1 lane.
OWASP_MINIMUM = argon2.Parameters(type=argon2.Type.ID, version=19, salt_len=16, hash_len=32,
                                  time_cost=2, memory_cost=19 * 1024, parallelism=1)


async def registered(harness) -> Workflow:
    """A workflow of tenant ``test`` whose CITIZEN has chosen PASSWORD through the invitation."""
    workflow = Workflow(harness.runtime, harness.config.tenants["test"])
    await send_customer_mail(harness)
    await harness.process()
    _, problems = await workflow.register(link_from(harness.sink.to(CITIZEN)[0], "register"),
                                          PASSWORD)
    assert problems == []
    await harness.process()
    return workflow


async def stored_account(harness) -> Account:
    account = await harness.runtime.accounts("test").get(Address.parse(CITIZEN))
    assert account is not None
    return account


async def test_setting_a_password_stores_an_argon2id_hash_and_never_the_password(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        await registered(harness)
        # The shared account keeps the hash; the PDF key material is the plugin's slot of it.
        assert await harness.runtime.state(ACCOUNTS).scan("test/") == []
        record = await harness.runtime.state(NAMESPACE).get(f"test/{CITIZEN}")
        assert record is not None
        account = Account.decode(record.value)
        assert set(account.slots) == {SLOT}
        assert account.login_hash is not None
        assert account.login_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        parameters = argon2.extract_parameters(account.login_hash)
        assert parameters == PARAMETERS
        assert parameters.type is argon2.Type.ID
        assert parameters.memory_cost >= OWASP_MINIMUM.memory_cost
        assert parameters.time_cost >= OWASP_MINIMUM.time_cost
        assert parameters.parallelism >= OWASP_MINIMUM.parallelism
        assert PASSWORD.encode() not in record.value
        # Encrypted at rest: neither the password nor the hash is readable in the database file.
        database = harness.store.path.read_bytes()
        assert PASSWORD.encode() not in database
        assert account.login_hash.encode() not in database


async def test_login_checks_the_password_against_the_hash(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        workflow = await registered(harness)
        citizen = Address.parse(CITIZEN)
        account = await workflow.verify_login(citizen, PASSWORD)
        assert account is not None and account.recipient == citizen
        assert account.password_set_at == harness.clock.now()
        assert await workflow.verify_login(citizen, PASSWORD + " ") is None
        assert await workflow.verify_login(citizen, "") is None
        assert await workflow.verify_login(Address.parse("unbekannt@example.net"), PASSWORD) is None
        assert (await workflow.portal_account(citizen)) == account


async def replace_login_hash(harness, login_hash: str | None) -> Account:
    """Store the citizen's account with another login hash (None: from before the login)."""
    account = await harness.runtime.accounts("test").update(
        Address.parse(CITIZEN), lambda a: a and attrs.evolve(a, login_hash=login_hash))
    assert account is not None
    return account


async def test_an_account_from_before_the_login_cannot_log_in_until_reset(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        workflow = await registered(harness)
        citizen = Address.parse(CITIZEN)
        legacy = await replace_login_hash(harness, None)
        assert (await stored_account(harness)).login_hash is None

        assert await workflow.verify_login(citizen, PASSWORD) is None
        assert await workflow.portal_account(citizen) is None
        assert await workflow.recipient_key(citizen) == pdf_key(legacy)  # PDFs still go out

        await workflow.request_reset(citizen)
        await harness.process()
        [reset_mail] = [m for m in harness.sink.to(CITIZEN)
                        if m.parsed.get("X-Siegel-Mail") == "password_pdf.reset"]
        _, problems = await workflow.reset(link_from(reset_mail, "reset"), PASSWORD)
        assert problems == []
        assert await workflow.verify_login(citizen, PASSWORD) is not None


async def test_a_hash_with_older_parameters_is_renewed_at_login(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        workflow = await registered(harness)
        citizen = Address.parse(CITIZEN)
        weaker = argon2.PasswordHasher.from_parameters(OWASP_MINIMUM).hash(PASSWORD)
        await replace_login_hash(harness, weaker)

        assert await workflow.verify_login(citizen, "falsch falsch falsch") is None
        assert (await stored_account(harness)).login_hash == weaker  # no rehash on failure

        assert await workflow.verify_login(citizen, PASSWORD) is not None
        renewed = (await stored_account(harness)).login_hash
        assert renewed is not None and renewed != weaker
        assert argon2.extract_parameters(renewed) == PARAMETERS
        assert await workflow.verify_login(citizen, PASSWORD) is not None


async def test_a_missing_hash_takes_as_long_to_check_as_a_real_one():
    stored = await hash_password(PASSWORD)
    await check_password(None, PASSWORD)  # the dummy hash is made once, on first use

    async def median_seconds(stored_hash: str | None) -> float:
        durations = []
        for _ in range(3):
            started = time.perf_counter()
            assert not (await check_password(stored_hash, "falsch falsch falsch")).verified
            durations.append(time.perf_counter() - started)
        return statistics.median(durations)

    real, missing = await median_seconds(stored), await median_seconds(None)
    assert missing > 0.5 * real, (missing, real)
    assert (await check_password(stored, PASSWORD)).verified
    assert not (await check_password("not a PHC string", PASSWORD)).verified


async def test_changing_the_password_works_like_a_reset(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        workflow = await registered(harness)
        citizen = Address.parse(CITIZEN)
        before = await workflow.portal_account(citizen)
        old_key = await workflow.recipient_key(citizen)
        harness.clock.advance(days=3)

        problems = await workflow.change_password(citizen, "passwort123")
        assert problems  # the same rules as everywhere
        assert await workflow.recipient_key(citizen) == old_key

        assert await workflow.change_password(citizen, NEW_PASSWORD) == []
        key = await workflow.recipient_key(citizen)
        assert key is not None and key != old_key
        assert verify_password(key, NEW_PASSWORD) and not verify_password(key, PASSWORD)
        assert await workflow.verify_login(citizen, PASSWORD) is None
        after = await workflow.verify_login(citizen, NEW_PASSWORD)
        assert after is not None and before is not None
        assert after.password_set_at == harness.clock.now() != before.password_set_at
        assert after.password_version != before.password_version
        await harness.process()
        [notice] = [m for m in harness.sink.to(CITIZEN)
                    if m.parsed.get("X-Siegel-Mail") == "password_pdf.password_changed"]
        assert "/t/test/password" in notice.parsed.get_body(("plain",)).get_content()


async def test_a_password_change_releases_what_waits_for_a_password(siegel_harness):
    # Held messages and an account together happen when the account was written by another
    # instance between the hold and this change; the change releases them as a reset would.
    async with siegel_harness(config=CONFIG) as harness:
        workflow = Workflow(harness.runtime, harness.config.tenants["test"])
        held = await send_customer_mail(harness)
        await harness.process()
        assert (await harness.states(held))[CITIZEN] is RecipientState.HELD
        await harness.runtime.accounts("test").set_password(
            Address.parse(CITIZEN), PASSWORD, slot=(SLOT, encode_key(derive_recipient_key(PASSWORD))))

        assert await workflow.change_password(Address.parse(CITIZEN), NEW_PASSWORD) == []
        await harness.process()
        assert (await harness.states(held))[CITIZEN] is RecipientState.DELIVERED
