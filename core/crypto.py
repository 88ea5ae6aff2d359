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
import os
import secrets
from pathlib import Path

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_KEY_FILE_HEADER = "siegel-store-key-v1"
_NONCE_BYTES = 12


class KeyFileError(Exception):
    """The store key file is missing, unreadable or malformed."""


class DecryptionError(Exception):
    """Stored content failed authentication: wrong key, or the data was changed."""


@attrs.frozen
class SealedContent:
    key_id: str
    wrapped_key: bytes = attrs.field(repr=False)
    ciphertext: bytes = attrs.field(repr=False)


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

    def seal(self, message_id: str, content: bytes) -> SealedContent:
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = nonce + AESGCM(data_key).encrypt(nonce, content, message_id.encode())
        key_nonce = os.urandom(_NONCE_BYTES)
        wrapped = key_nonce + self._master.encrypt(
            key_nonce, data_key, b"siegel-data-key:" + message_id.encode()
        )
        return SealedContent(self.key_id, wrapped, ciphertext)

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
            return AESGCM(data_key).decrypt(
                sealed.ciphertext[:_NONCE_BYTES], sealed.ciphertext[_NONCE_BYTES:],
                message_id.encode(),
            )
        except InvalidTag:
            raise DecryptionError(f"message {message_id}: stored content failed authentication") from None
