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
