"""Encryption of message content at rest.

Envelope encryption: every message gets its own random 256-bit data key; the content is sealed with
AES-256-GCM under that key (the message id is authenticated data, so content cannot be swapped
between rows), and the data key is sealed with the store key. Destroying a message's content and
wrapped key makes it unrecoverable from the live database; a backup taken earlier still holds both,
protected by the store key. The store key lives in a file outside the database, created by
``siegel init``; keep backups of the key and of the database apart.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def hash_token(token: str) -> str:
    """What is stored of a random token (a link, a bounce address, an API client's key): its
    SHA-256 (hex). Enough for secrets of 128 bits or more; passwords take Argon2id instead."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()

_KEY_FILE_HEADER = "siegel-store-key-v1"
_NONCE_BYTES = 12
_TAG_BYTES = 16
#: How much longer sealed content is than the plain content (nonce and tag).
SEAL_OVERHEAD = _NONCE_BYTES + _TAG_BYTES
# Large messages are sealed piece by piece, so that neither the whole ciphertext nor a copy of it
# is ever held next to the content.
_SEAL_CHUNK_BYTES = 1024 * 1024


class KeyFileError(Exception):
    """The store key file is missing, unreadable or malformed."""


class DecryptionError(Exception):
    """Stored content failed authentication: wrong key, or the data was changed."""


@attrs.frozen
class SealedContent:
    key_id: str
    wrapped_key: bytes = attrs.field(repr=False)
    ciphertext: bytes = attrs.field(repr=False)


@attrs.frozen
class SealedStream:
    """Sealed content handed out in pieces: ``chunks`` joined is exactly the ``ciphertext`` that
    :meth:`ContentCipher.seal` would give (nonce, AES-256-GCM ciphertext, tag), ``size`` bytes.
    The chunks are produced (and the content encrypted) only while they are consumed, once."""

    key_id: str
    wrapped_key: bytes = attrs.field(repr=False)
    size: int
    chunks: Iterator[bytes] = attrs.field(repr=False)


def create_key_file(path: Path) -> None:
    """Write a new random store key, readable by the owner only. Refuses to overwrite."""
    key = AESGCM.generate_key(bit_length=256)
    key_id = secrets.token_hex(4)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(f"{_KEY_FILE_HEADER} {key_id} {base64.b64encode(key).decode()}\n")
        handle.flush()
        os.fsync(handle.fileno())


class ContentCipher:
    def __init__(self, key_id: str, key: bytes) -> None:
        if len(key) != 32:
            raise KeyFileError("the store key must be 32 bytes (AES-256)")
        self.key_id = key_id
        self._master = AESGCM(key)

    @classmethod
    def from_key_file(cls, path: Path) -> ContentCipher:
        try:
            text = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            raise KeyFileError(f"{path}: store key file not found (run 'siegel init')") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"{path}: cannot read the store key: {exc}") from None
        parts = text.split()
        if len(parts) != 3 or parts[0] != _KEY_FILE_HEADER:
            raise KeyFileError(f"{path}: not a siegel store key file")
        try:
            key = base64.b64decode(parts[2], validate=True)
        except ValueError:
            raise KeyFileError(f"{path}: the key is not valid base64") from None
        return cls(parts[1], key)

    def _new_data_key(self, message_id: str) -> tuple[bytes, bytes]:
        """A fresh data key and the same key sealed with the store key."""
        data_key = AESGCM.generate_key(bit_length=256)
        key_nonce = os.urandom(_NONCE_BYTES)
        wrapped = key_nonce + self._master.encrypt(
            key_nonce, data_key, b"siegel-data-key:" + message_id.encode()
        )
        return data_key, wrapped

    def seal(self, message_id: str, content: bytes) -> SealedContent:
        data_key, wrapped = self._new_data_key(message_id)
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = nonce + AESGCM(data_key).encrypt(nonce, content, message_id.encode())
        return SealedContent(self.key_id, wrapped, ciphertext)

    def seal_stream(self, message_id: str, content: bytes) -> SealedStream:
        """:meth:`seal` in pieces of about a megabyte, for content that is written out as it is
        encrypted (the store writes them into the database row one by one)."""
        data_key, wrapped = self._new_data_key(message_id)
        nonce = os.urandom(_NONCE_BYTES)

        def chunks() -> Iterator[bytes]:
            # GCM in pieces is the same computation as AESGCM.encrypt: ciphertext, then tag.
            encryptor = Cipher(algorithms.AES(data_key), modes.GCM(nonce)).encryptor()
            encryptor.authenticate_additional_data(message_id.encode())
            yield nonce
            view = memoryview(content)
            for start in range(0, len(view), _SEAL_CHUNK_BYTES):
                yield encryptor.update(view[start:start + _SEAL_CHUNK_BYTES])
            yield encryptor.finalize() + encryptor.tag

        size = _NONCE_BYTES + len(content) + _TAG_BYTES
        return SealedStream(self.key_id, wrapped, size, chunks())

    def open(self, message_id: str, sealed: SealedContent) -> bytes:
        if sealed.key_id != self.key_id:
            raise DecryptionError(
                f"message {message_id} was sealed with store key {sealed.key_id}, "
                f"but the configured key is {self.key_id}"
            )
        try:
            data_key = self._master.decrypt(
                sealed.wrapped_key[:_NONCE_BYTES],
                sealed.wrapped_key[_NONCE_BYTES:],
                b"siegel-data-key:" + message_id.encode(),
            )
            # A view, not a slice: slicing would copy the whole ciphertext once more.
            return AESGCM(data_key).decrypt(
                sealed.ciphertext[:_NONCE_BYTES], memoryview(sealed.ciphertext)[_NONCE_BYTES:],
                message_id.encode(),
            )
        except InvalidTag:
            raise DecryptionError(f"message {message_id}: stored content failed authentication") from None
