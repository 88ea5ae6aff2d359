"""Exceptions of the S/MIME library.

Every error says what went wrong and where: ``where`` is a path into the CMS structure
(``AuthEnvelopedData.recipientInfos[1].kari``) or the MIME entity (``multipart/signed part 2``) so
an operator can find the problem in the message, and the message text says what to do about it
where there is something to do.
"""

from __future__ import annotations


class SmimeError(Exception):
    """Base class of all errors raised by :mod:`siegel.plugins.smime`."""

    def __init__(self, message: str, *, where: str = "") -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class MalformedError(SmimeError):
    """The input is not a well-formed CMS structure or S/MIME entity."""


class UnsupportedError(SmimeError):
    """The input uses an algorithm or construct this library does not implement."""


class PolicyError(SmimeError):
    """A request or an input was refused by the cryptographic policy (BSI TR-02102-1).

    Raised for weak choices: AES-128 or RSA PKCS#1 v1.5 key transport without the explicit allow
    flag, RSA keys below the configured minimum, SHA-1 signatures.
    """


class CertificateError(SmimeError):
    """A certificate cannot be used for the requested operation (key type, key usage)."""


class KeyMismatchError(SmimeError):
    """The private key does not belong to the certificate it was given with."""


class DecryptionError(SmimeError):
    """An enveloped message could not be decrypted."""


class NoMatchingRecipientError(DecryptionError):
    """The message is not encrypted for the given certificate."""


class IntegrityError(DecryptionError):
    """Decryption failed authentication: the message was modified, or the key is wrong.

    Raised for a wrong AES-GCM tag, invalid CBC padding and unwrap failures; the causes are not
    told apart on purpose (a padding oracle must not learn which one it was).
    """


class VerificationError(SmimeError):
    """A signature could not be verified."""


class SignatureMismatchError(VerificationError):
    """The signature does not match the content: the content or the signature was modified."""


class ChainValidationError(VerificationError):
    """The signature is correct, but the signer certificate does not chain to a trust root."""
