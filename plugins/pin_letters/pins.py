"""The PIN: 12 characters from an alphabet without look-alikes, printed in three groups of four.

23 symbols (characters easily mistaken for one another are left out: ``0 O Q``, ``1 I``,
``2 Z``, ``5 S``, ``6 G``, ``8 B``) give
log2(23) = 4.52 bits a character, 54 bits for the PIN: guessing it within the few attempts a
letter allows (default 5) succeeds with a chance of 5 in 2^54. It is stored only as an Argon2id
hash (:func:`siegel.hash_password`, the parameters of login passwords), so that even a copy of
the store and its key does not give out PINs that are still valid.
"""

from __future__ import annotations

import math
import secrets
from typing import Final

ALPHABET: Final = "ACDEFHJKLMNPRTUVWXY3479"
LENGTH: Final = 12
GROUP: Final = 4
#: The entropy of a PIN in bits.
BITS: Final = LENGTH * math.log2(len(ALPHABET))


def new_pin() -> str:
    """A fresh PIN (ungrouped), from the operating system's random source."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def grouped(pin: str) -> str:
    """``ACDE-FHJK-LMNP``: how the letter prints it."""
    return "-".join(pin[i:i + GROUP] for i in range(0, len(pin), GROUP))


def normalised(text: str) -> str | None:
    """What a person typed, as a PIN: case, spaces and dashes do not matter. ``None`` when it
    cannot be a PIN at all (wrong length or a character the alphabet does not have): a typo
    the page points out without counting an attempt."""
    pin = "".join(text.split()).replace("-", "").replace("‐", "").upper()
    if len(pin) != LENGTH or any(c not in ALPHABET for c in pin):
        return None
    return pin
