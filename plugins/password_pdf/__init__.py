"""Password-protected PDF delivery: render an e-mail as PDF, encrypt it (AES-256, R6).

The recipient's password is never stored: :func:`derive_recipient_key` turns it into a
:class:`RecipientKey` once, and :func:`encrypt_pdf` needs only that key afterwards.
:func:`render_encrypted` renders and encrypts in one pass (less memory for large
attachments); :func:`render_message` alone gives the unencrypted PDF.
"""

from .encrypt import (
    PasswordRejected,
    RecipientKey,
    derive_recipient_key,
    encrypt_pdf,
    verify_password,
)
from .render import (
    Language,
    Letterhead,
    render_encrypted,
    render_message,
)

__all__ = [
    "Language",
    "Letterhead",
    "PasswordRejected",
    "RecipientKey",
    "derive_recipient_key",
    "encrypt_pdf",
    "render_encrypted",
    "render_message",
    "verify_password",
]
