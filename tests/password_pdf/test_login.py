"""The portal login's Argon2id hash, at the level of the workflow: what is stored when a password
is set, how a login is checked (and its hash renewed), and a password change."""

from __future__ import annotations

import json
import statistics
import time

import argon2
import attrs
from test_workflow import CITIZEN, CONFIG, PASSWORD, link_from, send_customer_mail

from siegel import Address, RecipientState
from siegel.plugins.password_pdf import verify_password
from siegel.plugins.password_pdf.accounts import Account
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


async def stored_account(harness) -> dict[str, str]:
    record = await harness.runtime.state(ACCOUNTS).get(f"test/{CITIZEN}")
    assert record is not None
    return json.loads(record.value)


async def test_setting_a_password_stores_an_argon2id_hash_and_never_the_password(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        await registered(harness)
        record = await harness.runtime.state(ACCOUNTS).get(f"test/{CITIZEN}")
        assert record is not None
        data = json.loads(record.value)
        assert set(data) == {"u", "ue", "set_at", "login_hash"}
        assert data["login_hash"].startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        parameters = argon2.extract_parameters(data["login_hash"])
        assert parameters == PARAMETERS
        assert parameters.type is argon2.Type.ID
        assert parameters.memory_cost >= OWASP_MINIMUM.memory_cost
        assert parameters.time_cost >= OWASP_MINIMUM.time_cost
        assert parameters.parallelism >= OWASP_MINIMUM.parallelism
        assert PASSWORD.encode() not in record.value
        # Encrypted at rest: neither the password nor the hash is readable in the database file.
        database = harness.store.path.read_bytes()
        assert PASSWORD.encode() not in database
        assert data["login_hash"].encode() not in database


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
    state = harness.runtime.state(ACCOUNTS)
    record = await state.get(f"test/{CITIZEN}")
    assert record is not None
    account = attrs.evolve(Account.decode(record.value), login_hash=login_hash)
    await state.put(f"test/{CITIZEN}", account.encode())
    return account


async def test_an_account_from_before_the_login_cannot_log_in_until_reset(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        workflow = await registered(harness)
        citizen = Address.parse(CITIZEN)
        legacy = await replace_login_hash(harness, None)
        assert "login_hash" not in await stored_account(harness)

        assert await workflow.verify_login(citizen, PASSWORD) is None
        assert await workflow.portal_account(citizen) is None
        assert await workflow.recipient_key(citizen) == legacy.key  # PDFs still go out

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
        assert (await stored_account(harness))["login_hash"] == weaker  # no rehash on failure

        assert await workflow.verify_login(citizen, PASSWORD) is not None
        renewed = (await stored_account(harness))["login_hash"]
        assert renewed != weaker
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
        account = await workflow._new_account(PASSWORD)
        await harness.runtime.state(ACCOUNTS).put(f"test/{CITIZEN}", account.encode())

        assert await workflow.change_password(Address.parse(CITIZEN), NEW_PASSWORD) == []
        await harness.process()
        assert (await harness.states(held))[CITIZEN] is RecipientState.DELIVERED
