"""Second factors of an account, without the pages: TOTP (RFC 6238) and recovery codes.

TOTP: HMAC-SHA-1, 30-second steps, 6 digits (what every authenticator app reads from an
``otpauth://`` link), computed by pyotp. A code is accepted for the current step and one step
either side (clocks drift; a code typed as it changes), and never for a step at or before the last
one accepted (:attr:`siegel.TotpFactor.last_step`): a code seen over a shoulder or in a proxy's
log cannot be used again. The check and the new ``last_step`` are one atomic account update, so
two requests racing with the same code cannot both pass.

Recovery codes: :data:`RECOVERY_CODES` codes of 80 random bits (16 characters of Crockford's
base 32, shown in groups of four), stored only as SHA-256 hashes; each works once in place of the
second factor, and a new set replaces the old one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime

import attrs
import pyotp

from siegel import Account, Accounts, Address, RecoveryCodes, TotpFactor

STEP_SECONDS = 30
DIGITS = 6
#: Steps accepted before and after the current one.
WINDOW = 1
RECOVERY_CODES = 10
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U


def new_totp_secret() -> bytes:
    """160 random bits, as RFC 4226 recommends for HMAC-SHA-1."""
    return secrets.token_bytes(20)


def secret_text(secret: bytes) -> str:
    """The secret as authenticator apps take it typed in: base 32, in groups of four."""
    text = base64.b32encode(secret).decode("ascii").rstrip("=")
    return " ".join(text[i:i + 4] for i in range(0, len(text), 4))


def secret_from_text(text: str) -> bytes:
    cleaned = text.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def provisioning_uri(secret: bytes, *, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` link a QR code carries."""
    return pyotp.TOTP(base64.b32encode(secret).decode("ascii"), digits=DIGITS,
                      interval=STEP_SECONDS).provisioning_uri(name=account, issuer_name=issuer)


def time_step(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def totp_code(secret: bytes, step: int, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    """The code of time step ``step`` (RFC 6238 with T0 = 0)."""
    totp = pyotp.TOTP(base64.b32encode(secret).decode("ascii"), digits=digits,
                      interval=STEP_SECONDS, digest=getattr(hashlib, digest))
    return totp.at(step * STEP_SECONDS)


def matching_step(secret: bytes, code: str, now: datetime, *, after: int = -1) -> int | None:
    """The step within the window whose code ``code`` is, if later than ``after``; else ``None``."""
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isdigit():
        return None
    current = time_step(now)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        # Every step is compared (no early exit), in constant time.
        if hmac.compare_digest(totp_code(secret, step), code) and step > after and found is None:
            found = step
    return found


def normalise_code(code: str) -> str:
    """A recovery code as typed (any case, spaces or dashes) in its stored form."""
    cleaned = "".join(c for c in code.upper() if c.isalnum())
    return cleaned.translate(str.maketrans("ILO", "110"))


def hash_code(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode("ascii", "replace")).hexdigest()


def new_recovery_codes(now: datetime,
                       count: int = RECOVERY_CODES) -> tuple[list[str], RecoveryCodes]:
    """Fresh codes to show once, and what the account keeps of them."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i:i + 4] for i in range(0, 16, 4)))
    return codes, RecoveryCodes(hashes=tuple(hash_code(c) for c in codes), created_at=now)


@attrs.define
class _Outcome:
    ok: bool = False


async def _checked_update(accounts: Accounts, address: Address,
                          change: Callable[[Account], Account | None]) -> Account | None:
    """Run ``change`` atomically on an existing account; the account afterwards if ``change``
    returned one (accepted), else ``None``."""
    outcome = _Outcome()

    def step(current: Account | None) -> Account | None:
        outcome.ok = False
        if current is None:
            return None
        changed = change(current)
        if changed is None:
            return current
        outcome.ok = True
        return changed

    account = await accounts.update(address, step)
    return account if outcome.ok else None


async def verify_totp(accounts: Accounts, address: Address, code: str,
                      now: datetime) -> Account | None:
    """The account, with the code's step recorded, if ``code`` is a fresh code of its TOTP."""
    def change(current: Account) -> Account | None:
        if current.totp is None:
            return None
        step = matching_step(current.totp.secret, code, now, after=current.totp.last_step)
        if step is None:
            return None
        return attrs.evolve(current, totp=attrs.evolve(current.totp, last_step=step))

    return await _checked_update(accounts, address, change)


async def set_up_totp(accounts: Accounts, address: Address, secret: bytes, code: str,
                      now: datetime) -> Account | None:
    """Store ``secret`` as the account's TOTP if ``code`` proves the app has it."""
    step = matching_step(secret, code, now)
    if step is None:
        return None
    return await _checked_update(accounts, address, lambda current: attrs.evolve(
        current, totp=TotpFactor(secret=secret, created_at=now, last_step=step)))


async def use_recovery_code(accounts: Accounts, address: Address, code: str) -> Account | None:
    """The account, with ``code`` used up, if it is one of its unused recovery codes."""
    wanted = hash_code(code)

    def change(current: Account) -> Account | None:
        codes = current.recovery_codes
        if codes is None or not any(hmac.compare_digest(h, wanted) for h in codes.hashes):
            return None
        left = tuple(h for h in codes.hashes if h != wanted)
        return attrs.evolve(current, recovery_codes=attrs.evolve(codes, hashes=left))

    return await _checked_update(accounts, address, change)


async def replace_recovery_codes(accounts: Accounts, address: Address,
                                 now: datetime) -> list[str]:
    """A new set of codes (the old ones stop working); returns them to show once."""
    codes, stored = new_recovery_codes(now)
    await _checked_update(accounts, address,
                          lambda current: attrs.evolve(current, recovery_codes=stored))
    return codes


async def remove_totp(accounts: Accounts, address: Address) -> Account | None:
    return await _checked_update(accounts, address,
                                 lambda current: attrs.evolve(current, totp=None))
