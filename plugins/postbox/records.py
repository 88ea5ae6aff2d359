"""How the postbox keeps its messages in plugin state: record keys, ids and sealing.

Keys are built for ranges of the store's key index (:meth:`siegel.PluginState.page`), so that
the inbox of one account is read the same way however many messages the store holds:

* ``postbox.messages``  ``TENANT/ACCOUNT/FOLDER/ID``: a message's metadata *and its key*;
  ``FOLDER`` is ``inbox`` or ``bin``; ids sort by time, so the newest is last in key order.
* ``postbox.unread``    ``TENANT/ACCOUNT/ID``: one empty marker per unread message (counted).
* ``postbox.content``   ``TENANT/ACCOUNT/ID/body`` and ``.../a/NNN/CCCCC``: the body and the
  attachments in pieces of at most :data:`CHUNK_BYTES`, each sealed with the message's key.
* ``postbox.due``       ``TENANT/KIND/TIME/ACCOUNT/ID``: what maintenance has to do when
  (``warn``, ``expire``, ``purge``, ``unretrieved``).

``ACCOUNT`` is the account's :attr:`siegel.Address.key` with ``/`` and ``%`` escaped. A message's
content is sealed (AES-256-GCM) with a key of its own that lives only in its metadata record:
deleting that record makes the content unrecoverable, whatever is left of the pieces.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from datetime import UTC, datetime
from urllib.parse import quote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from siegel import Address

MESSAGES = "postbox.messages"
UNREAD = "postbox.unread"
CONTENT = "postbox.content"
DUE = "postbox.due"

FOLDERS = ("inbox", "bin")
#: Plain bytes per content record: a 25 MB attachment is 25 records, none of them large.
CHUNK_BYTES = 1024 * 1024
_NONCE = 12
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


class ContentGone(Exception):
    """The message's key is gone (purged) or its content does not open with it."""


def account_part(address: Address) -> str:
    return quote(address.key, safe="@+-._~!$&'()*,;=:")


def account_prefix(tenant: str, address: Address) -> str:
    return f"{tenant}/{account_part(address)}/"


def new_id(at: datetime, source: str | None = None) -> str:
    """A 26-character id that sorts by ``at`` (milliseconds), then 80 bits that are random, or,
    for a copy of a stored message (``source``), derived from it: delivering the same copy twice
    (a retry after a crash) gives the same id, and the second delivery finds the first."""
    millis = int(at.timestamp() * 1000)
    tail = (hashlib.sha256(source.encode()).digest()[:10] if source is not None
            else secrets.token_bytes(10))
    value = (millis << 80) | int.from_bytes(tail, "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def valid_id(value: str) -> bool:
    return len(value) == 26 and all(c in _CROCKFORD for c in value)


def stamp(at: datetime) -> str:
    """A time in keys: sorts as it compares."""
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, where: str, plain: bytes) -> bytes:
    """``plain`` sealed under the message's key; ``where`` (the record's key) is authenticated,
    so a piece cannot be moved to another place or message."""
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plain, where.encode())


def unseal(key: bytes, where: str, sealed: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], where.encode())
    except (InvalidTag, ValueError):
        raise ContentGone(f"{where}: does not open with the message's key") from None
