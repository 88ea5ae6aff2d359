"""The login hash of a recipient account (:mod:`siegel.accounts`): Argon2id (RFC 9106).

The R6 ``/U`` entry in a password PDF is itself a salted hash of the password, but a fast one
(about 1.5 ms a guess), so the portal does not verify logins with it: an account keeps an
Argon2id hash in PHC form (``$argon2id$v=19$m=65536,t=3,p=4$salt$hash``) and verifies against that.

Parameters: argon2-cffi's RFC 9106 "low memory" profile, 64 MiB, 3 passes, 4 lanes. That is above
the minimum of OWASP ASVS 5 and the Password Storage Cheat Sheet (19 MiB, 2 passes, 1 lane) on
every axis and costs about 0.1 s on a current server. Hashing runs in its own pool of two threads,
beside the event loop: the gateway keeps delivering, and at most two hashes (128 MiB) run at once
however many logins arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import argon2
import attrs
from argon2.exceptions import InvalidHashError, VerificationError

from siegel.addresses import Address
from siegel.model import Text

#: What every new hash is made with; a stored hash made with anything else is replaced at the
#: next successful login.
PARAMETERS: Final = argon2.profiles.RFC_9106_LOW_MEMORY

_HASHER: Final = argon2.PasswordHasher.from_parameters(PARAMETERS)
_HASHING: Final = ThreadPoolExecutor(max_workers=2, thread_name_prefix="siegel-argon2")


@attrs.frozen(kw_only=True)
class LoginCheck:
    """The result of checking a password against a stored hash."""

    verified: bool
    #: The hash was made with other parameters than :data:`PARAMETERS`: store a new one.
    needs_rehash: bool = False


async def hash_password(password: str) -> str:
    """A new Argon2id hash of ``password`` in PHC string form, with a fresh random salt."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_HASHING, _HASHER.hash, password)


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(32))


def _check(stored: str | None, password: str) -> LoginCheck:
    if stored is None:
        # No hash to check against: do the same work, so that the time taken does not tell.
        with contextlib.suppress(VerificationError):
            _HASHER.verify(_dummy_hash(), password)
        return LoginCheck(verified=False)
    try:
        _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):  # a mismatch, or a damaged record
        return LoginCheck(verified=False)
    return LoginCheck(verified=True, needs_rehash=_HASHER.check_needs_rehash(stored))


async def check_password(stored: str | None, password: str) -> LoginCheck:
    """Whether ``password`` matches ``stored`` (``None``: there is no hash; the check then takes
    as long as a real one and fails)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_HASHING, _check, stored, password)


@functools.cache
def _common_passwords() -> frozenset[str]:
    """Loaded when a password is first checked: zxcvbn's lists cost about 12 MB in every gateway
    process, and only the portal needs them."""
    import zxcvbn.frequency_lists

    return frozenset(zxcvbn.frequency_lists.FREQUENCY_LISTS["passwords"]) | frozenset({
        "passwort", "passwort1", "passwort123", "hallo123", "hallohallo", "geheim", "geheim123",
        "qwertz", "qwertzuiop", "schatz", "fussball", "ichliebedich", "sommer2024", "sommer2025",
        "sommer2026", "winter2025", "winter2026", "einszweidrei", "1234567890ab",
    })


def password_problems(password: str, address: Address, minimum_length: int) -> list[Text]:
    """What is wrong with a new password of the account of ``address``, per OWASP ASVS 5
    (length, common passwords, not the address; no composition rules). Empty when acceptable.
    Plugins add their own conditions through ``siegel_account_password_set``."""
    problems: list[Text] = []
    if len(password) < minimum_length:
        problems.append(Text(de=f"Das Passwort muss mindestens {minimum_length} Zeichen lang sein.",
                             en=f"The password must be at least {minimum_length} characters long."))
    lowered = password.lower()
    common = _common_passwords()
    if lowered in common or lowered.rstrip("0123456789!.") in common:
        problems.append(Text(de="Dieses Passwort ist zu verbreitet; bitte wählen Sie ein anderes.",
                             en="This password is too common; please choose another one."))
    if address.local.lower() in lowered and len(address.local) >= 4:
        problems.append(Text(de="Das Passwort darf Ihre E-Mail-Adresse nicht enthalten.",
                             en="The password must not contain your e-mail address."))
    if len(set(password)) <= 2 and password:
        problems.append(Text(de="Das Passwort besteht nur aus einem oder zwei Zeichen.",
                             en="The password consists of only one or two characters."))
    return problems
