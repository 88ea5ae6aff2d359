"""The core accounts service: one account per tenant and address, in the store, encrypted at
rest, changed atomically (also by several store connections at once, as several instances are)."""

from __future__ import annotations

import asyncio

import argon2
import pytest

from siegel import Account, AccountMissing, Accounts, Address, IdentityLevel, check_password
from siegel.accounts import NAMESPACE
from siegel.clock import FrozenClock
from siegel.crypto import ContentCipher, create_key_file
from siegel.passwords import PARAMETERS
from siegel.sqlite_store import SQLiteStore
from siegel.state import PluginState, ReadOnlyPluginState

PASSWORD = "Grüne Äpfel am Morgen"
SLOT_SECRET = b"SCHLUESSELMATERIAL-DER-PDFS"


@pytest.fixture
def cipher(tmp_path):
    create_key_file(tmp_path / "store.key")
    return ContentCipher.from_key_file(tmp_path / "store.key")


def accounts_of(store: SQLiteStore, clock: FrozenClock, tenant: str = "landkreis") -> Accounts:
    return Accounts(PluginState(store, NAMESPACE, clock), tenant)


async def test_one_account_per_address_whatever_its_case_kept_encrypted_across_restarts(
        tmp_path, cipher):
    clock = FrozenClock()
    async with SQLiteStore(tmp_path / "s.db", cipher) as store:
        accounts = accounts_of(store, clock)
        first = await accounts.set_password(Address.parse("Anna.Schmidt@Example.org"), PASSWORD,
                                            slot=("password_pdf", SLOT_SECRET))
        assert first.level is IdentityLevel.MAILBOX
        assert first.password_set_at == first.created_at == clock.now()
        clock.advance(hours=1)
        again = await accounts.open(Address.parse("anna.schmidt@example.org"))
        assert again == first  # the same account, not a second one
        assert [a.key for a in await accounts.all()] == ["anna.schmidt@example.org"]
        assert first.address == "Anna.Schmidt@example.org"  # as first written (domains are normalised)
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*"))
    assert first.login_hash is not None
    assert first.login_hash.encode() not in on_disk
    assert SLOT_SECRET not in on_disk and PASSWORD.encode() not in on_disk
    async with SQLiteStore(tmp_path / "s.db", cipher) as store:
        reopened = await accounts_of(store, clock).get(Address.parse("ANNA.SCHMIDT@example.org"))
        assert reopened == first
        assert reopened.slot("password_pdf") == SLOT_SECRET
        # Another tenant has its own accounts.
        assert await accounts_of(store, clock, "stadt").get(Address.parse(first.address)) is None


async def test_parallel_first_contacts_from_two_instances_make_one_account(tmp_path, cipher):
    clock = FrozenClock()
    anna = Address.parse("anna@example.org")
    async with SQLiteStore(tmp_path / "s.db", cipher) as one, \
            SQLiteStore(tmp_path / "s.db", cipher) as two:
        # Forty first-contact mails at once, half through each "instance", each at its own time.
        async def first_contact(store: SQLiteStore, n: int) -> Account:
            own_clock = FrozenClock(clock.now())
            own_clock.advance(seconds=n)
            return await accounts_of(store, own_clock).open(anna)

        opened = await asyncio.gather(*(first_contact(one if n % 2 else two, n)
                                        for n in range(40)))
        assert len({a.created_at for a in opened}) == 1
        # Two plugins write their slots at the same time: neither loses the other's.
        await asyncio.gather(*(accounts_of(s, clock).put_slot(anna, owner, owner.encode() * 3)
                               for s, owner in ((one, "password_pdf"), (two, "postbox"))))
        stored = await accounts_of(one, clock).get(anna)
        assert stored is not None
        assert dict(stored.slots) == {"password_pdf": b"password_pdf" * 3,
                                      "postbox": b"postbox" * 3}
        assert stored.with_slot("postbox", None).slot("postbox") is None


async def test_passwords_are_argon2id_and_a_login_during_a_change_keeps_the_new_one(
        tmp_path, cipher):
    clock = FrozenClock()
    anna = Address.parse("anna@example.org")
    async with SQLiteStore(tmp_path / "s.db", cipher) as store:
        accounts = accounts_of(store, clock)
        account = await accounts.set_password(anna, PASSWORD)
        assert account.login_hash is not None
        assert argon2.extract_parameters(account.login_hash) == PARAMETERS
        assert await accounts.verify_password(anna, PASSWORD) == account
        assert await accounts.verify_password(anna, PASSWORD + " ") is None
        assert await accounts.verify_password(Address.parse("bert@example.org"), PASSWORD) is None
        assert (await accounts.open(Address.parse("bert@example.org"))).can_log_in is False

        # A hash with weaker, older parameters is replaced at the next login ...
        weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
        await accounts.update(anna, lambda a: a and a.with_password(weak.hash(PASSWORD),
                                                                    account.password_set_at))
        renewed = await accounts.verify_password(anna, PASSWORD)
        assert renewed is not None and renewed.login_hash is not None
        assert argon2.extract_parameters(renewed.login_hash) == PARAMETERS
        assert renewed.password_version != account.password_version

        # ... but not over a password changed while the login was checked.
        await accounts.update(anna, lambda a: a and a.with_password(weak.hash(PASSWORD),
                                                                    account.password_set_at))
        login = asyncio.create_task(accounts.verify_password(anna, PASSWORD))
        clock.advance(minutes=1)
        changed = await accounts.set_password(anna, "Ein ganz neues Passwort")
        await login
        stored = await accounts.get(anna)
        assert stored == changed and stored.password_set_at == clock.now()
        assert (await check_password(stored.login_hash, "Ein ganz neues Passwort")).verified


async def test_identity_levels_are_ordered_and_only_rise(tmp_path, cipher):
    clock = FrozenClock()
    anna = Address.parse("anna@example.org")
    assert IdentityLevel.MAILBOX < IdentityLevel.CONFIRMED
    assert IdentityLevel.of("confirmed") is IdentityLevel.CONFIRMED
    with pytest.raises(ValueError, match="known: mailbox, confirmed"):
        IdentityLevel.of("pin")
    async with SQLiteStore(tmp_path / "s.db", cipher) as store:
        accounts = accounts_of(store, clock)
        with pytest.raises(AccountMissing):
            await accounts.raise_level(anna, IdentityLevel.CONFIRMED)
        with pytest.raises(AccountMissing):
            await accounts.put_slot(anna, "postbox", b"x")
        await accounts.open(anna)
        raised = await accounts.raise_level(anna, IdentityLevel.CONFIRMED)
        assert raised.level is IdentityLevel.CONFIRMED
        assert (await accounts.raise_level(anna, IdentityLevel.MAILBOX)).level is (
            IdentityLevel.CONFIRMED)
        assert (await accounts.get(anna)) == raised


async def test_bad_input_is_refused_precisely(tmp_path, cipher):
    clock = FrozenClock()
    async with SQLiteStore(tmp_path / "s.db", cipher) as store:
        with pytest.raises(ValueError, match=r"namespace 'siegel\.accounts'"):
            Accounts(PluginState(store, "password_pdf.accounts", clock), "landkreis")
        accounts = accounts_of(store, clock)
        anna = await accounts.open(Address.parse("anna@example.org"))
        with pytest.raises(ValueError, match="named by its plugin"):
            anna.with_slot("../postbox", b"x")
        with pytest.raises(ValueError, match=r"cannot become landkreis/bert@example\.org"):
            await accounts.update(Address.parse("anna@example.org"),
                                  lambda a: Account.new("landkreis",
                                                        Address.parse("bert@example.org"),
                                                        clock.now()))
        # A dry run reads accounts but cannot change them.
        dry = Accounts(ReadOnlyPluginState(store, NAMESPACE, clock), "landkreis")
        assert await dry.get(Address.parse("anna@example.org")) == anna
        with pytest.raises(PermissionError):
            await dry.open(Address.parse("bert@example.org"))
