"""Second factors of the accounts plugin without the pages: TOTP against RFC 6238's test
vectors, its window and replay rule (also under parallel requests on the real store), recovery
codes, the account record with its factors, and the password hook keeping slots in step."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from siegel import (
    Account,
    Accounts,
    Address,
    Passkey,
    PasswordRefused,
    PasswordSlot,
    RecoveryCodes,
    Text,
    TotpFactor,
)
from siegel.accounts import NAMESPACE
from siegel.clock import FrozenClock
from siegel.crypto import ContentCipher, create_key_file
from siegel.plugins.accounts import factors
from siegel.sqlite_store import SQLiteStore
from siegel.state import PluginState

ANNA = Address.parse("anna@example.org")
PASSWORD = "Grüne Äpfel am Morgen"

# RFC 6238, appendix B: the seeds are ASCII digits, 20/32/64 bytes for SHA-1/-256/-512.
SEEDS = {"sha1": b"12345678901234567890", "sha256": b"12345678901234567890123456789012",
         "sha512": b"1234567890123456789012345678901234567890123456789012345678901234"}
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("seconds", "sha1", "sha256", "sha512"), VECTORS)
def test_totp_matches_the_rfc_6238_test_vectors(seconds, sha1, sha256, sha512):
    step = seconds // factors.STEP_SECONDS
    for digest, expected in (("sha1", sha1), ("sha256", sha256), ("sha512", sha512)):
        assert factors.totp_code(SEEDS[digest], step, digits=8, digest=digest) == expected
    # The six digits apps show are the last six of the same number.
    assert factors.totp_code(SEEDS["sha1"], step) == sha1[-6:]


def test_a_code_counts_for_one_step_either_side_and_never_twice():
    secret = factors.new_totp_secret()
    now = datetime(2026, 1, 5, 9, 0, 10, tzinfo=UTC)
    step = factors.time_step(now)
    code = factors.totp_code(secret, step)
    assert factors.matching_step(secret, code, now) == step
    assert factors.matching_step(secret, f" {code[:3]} {code[3:]} ", now) == step  # as typed
    assert factors.matching_step(secret, factors.totp_code(secret, step - 1), now) == step - 1
    assert factors.matching_step(secret, factors.totp_code(secret, step + 1), now) == step + 1
    for outside in (step - 2, step + 2):
        assert factors.matching_step(secret, factors.totp_code(secret, outside), now) is None
    # Replay: the step accepted last and every earlier one are refused.
    assert factors.matching_step(secret, code, now, after=step) is None
    assert factors.matching_step(secret, factors.totp_code(secret, step - 1), now,
                                 after=step) is None
    assert factors.matching_step(secret, factors.totp_code(secret, step + 1), now,
                                 after=step) == step + 1
    for wrong in ("", "12345", "1234567", "abcdef"):
        assert factors.matching_step(secret, wrong, now) is None


def test_the_secret_as_text_and_the_otpauth_link():
    secret = bytes(range(20))
    text = factors.secret_text(secret)
    assert text == "AAAQ EAYE AUDA OCAJ BIFQ YDIO B4IB CEQT"
    assert factors.secret_from_text(text.lower()) == secret
    uri = factors.provisioning_uri(secret, account="anna@example.org", issuer="Landkreis")
    assert uri.startswith("otpauth://totp/Landkreis:anna%40example.org?secret=AAAQEAYE")
    assert "issuer=Landkreis" in uri


def test_recovery_codes_are_ten_random_codes_kept_only_as_hashes():
    now = datetime(2026, 1, 5, tzinfo=UTC)
    codes, stored = factors.new_recovery_codes(now)
    assert len(codes) == len(set(codes)) == 10
    for code in codes:
        assert len(code) == 19 and code.count("-") == 3
    assert stored.created_at == now
    assert set(stored.hashes) == {factors.hash_code(c) for c in codes}
    assert not any(c.replace("-", "") in h.upper() for c in codes for h in stored.hashes)
    # What people type: lower case, spaces, I/L for 1 and O for 0.
    assert factors.hash_code(codes[0].lower().replace("-", " ")) == factors.hash_code(codes[0])
    assert factors.normalise_code("abcd-efgh-ijkl-mnop") == "ABCDEFGH1JK1MN0P"


@pytest.fixture
async def accounts(tmp_path):
    create_key_file(tmp_path / "store.key")
    cipher = ContentCipher.from_key_file(tmp_path / "store.key")
    clock = FrozenClock()
    async with SQLiteStore(tmp_path / "s.db", cipher) as store:
        yield Accounts(PluginState(store, NAMESPACE, clock), "landkreis")


async def test_totp_set_up_then_each_code_once_even_in_parallel(accounts):
    await accounts.set_password(ANNA, PASSWORD)
    now = accounts.now
    secret = factors.new_totp_secret()
    step = factors.time_step(now)
    wrong = next(c for c in ("000000", "111111", "222222", "333333")
                 if factors.matching_step(secret, c, now) is None)
    assert await factors.set_up_totp(accounts, ANNA, secret, wrong, now) is None
    added = await factors.set_up_totp(accounts, ANNA, secret, factors.totp_code(secret, step), now)
    assert added is not None and added.totp is not None and added.has_second_factor
    assert added.totp.last_step == step
    # The set-up code is used up; the next step's code works once, also when sent twice at once.
    assert await factors.verify_totp(accounts, ANNA, factors.totp_code(secret, step), now) is None
    later = now + timedelta(seconds=30)
    code = factors.totp_code(secret, step + 1)
    results = await asyncio.gather(*(factors.verify_totp(accounts, ANNA, code, later)
                                     for _ in range(5)))
    assert sum(r is not None for r in results) == 1
    stored = await accounts.get(ANNA)
    assert stored is not None and stored.totp is not None and stored.totp.last_step == step + 1
    assert await factors.remove_totp(accounts, ANNA) is not None
    assert not (await accounts.get(ANNA)).has_second_factor


async def test_recovery_codes_work_once_and_a_new_set_replaces_the_old(accounts):
    await accounts.set_password(ANNA, PASSWORD)
    first = await factors.replace_recovery_codes(accounts, ANNA, accounts.now)
    assert await factors.use_recovery_code(accounts, ANNA, first[0]) is not None
    assert await factors.use_recovery_code(accounts, ANNA, first[0]) is None  # single use
    assert await factors.use_recovery_code(accounts, ANNA, "ABCD-EFGH-JKMN-PQRS") is None
    account = await accounts.get(ANNA)
    assert account is not None and account.recovery_codes is not None
    assert len(account.recovery_codes.hashes) == 9
    results = await asyncio.gather(*(factors.use_recovery_code(accounts, ANNA, first[1])
                                     for _ in range(4)))
    assert sum(r is not None for r in results) == 1
    second = await factors.replace_recovery_codes(accounts, ANNA, accounts.now)
    assert not set(first) & set(second)
    assert await factors.use_recovery_code(accounts, ANNA, first[2]) is None  # old set is gone
    assert await factors.use_recovery_code(accounts, ANNA, second[2].lower()) is not None
    assert await factors.use_recovery_code(accounts, Address.parse("x@example.org"),
                                           second[3]) is None


def test_an_account_with_its_factors_survives_encoding():
    now = datetime(2026, 1, 5, 9, tzinfo=UTC)
    account = attrs.evolve(
        Account.new("landkreis", ANNA, now).with_password("$argon2id$x", now),
        totp=TotpFactor(secret=b"s" * 20, created_at=now, last_step=7),
        passkeys=[Passkey(credential_id=b"id", public_key=b"pk", sign_count=3, created_at=now,
                          label="Laptop", last_used_at=now)],
        recovery_codes=RecoveryCodes(hashes=("a" * 64,), created_at=now))
    assert Account.decode(account.encode()) == account
    assert "s" * 20 not in repr(account) and "pk" not in repr(account)
    plain = Account.new("landkreis", ANNA, now)
    assert Account.decode(plain.encode()) == plain and not plain.has_second_factor


async def test_the_password_hook_writes_every_slot_with_the_hash_or_nothing(tmp_path):
    create_key_file(tmp_path / "store.key")
    cipher = ContentCipher.from_key_file(tmp_path / "store.key")
    seen: list[tuple[str, str]] = []

    def hook(account: Account, password: str) -> dict[str, PasswordSlot]:
        seen.append((account.key, password))
        if password.endswith("!"):
            return {"pdf": PasswordSlot(problems=[Text(de="Kein Ausrufezeichen.",
                                                       en="No exclamation mark.")])}
        return {"pdf": PasswordSlot(data=password.encode()[::-1]), "gone": PasswordSlot()}

    async with SQLiteStore(tmp_path / "s.db", cipher) as store:
        accounts = Accounts(PluginState(store, NAMESPACE, FrozenClock()), "landkreis",
                            password_hook=hook)
        await accounts.open(ANNA)
        await accounts.put_slot(ANNA, "gone", b"old")
        account = await accounts.set_password(ANNA, PASSWORD)
        assert account.slot("pdf") == PASSWORD.encode()[::-1]
        assert account.slot("gone") is None  # data None: the plugin's slot is removed
        assert await accounts.password_problems(ANNA, "Rote Kirschen!") == [
            Text(de="Kein Ausrufezeichen.", en="No exclamation mark.")]
        with pytest.raises(PasswordRefused) as refused:
            await accounts.set_password(ANNA, "Rote Kirschen!")
        assert refused.value.problems[0].en == "No exclamation mark."
        assert await accounts.get(ANNA) == account  # nothing changed
        assert seen[0] == ("anna@example.org", PASSWORD)
