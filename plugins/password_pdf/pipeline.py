"""Render and encrypt in one pass: the form the gateway should use."""

from __future__ import annotations

from email.message import EmailMessage

from .encrypt import RecipientKey, _protect_writer, _serialise
from .render import (
    DEFAULT_MAX_BODY_CHARS,
    Language,
    Letterhead,
    _render_writer,
)
from .signing import PdfSigning, sign_and_serialise

__all__ = ["render_encrypted"]


def render_encrypted(
    message: EmailMessage,
    *,
    letterhead: Letterhead,
    key: RecipientKey,
    language: Language = "de",
    max_body_chars: int = DEFAULT_MAX_BODY_CHARS,
    signing: PdfSigning | None = None,
) -> bytes:
    """``encrypt_pdf(render_message(...), key)`` without the intermediate plain PDF.

    Same output guarantees as the two steps; the attachments are held once in plain form
    (as decoded from the message) and are never serialised unencrypted, which saves
    about two copies of the attachments at peak. With ``signing``, the PDF carries the tenant's
    PAdES signature, made in the same write.
    """
    writer = _render_writer(
        message, letterhead=letterhead, language=language, max_body_chars=max_body_chars
    )
    _protect_writer(writer, key)
    if signing is not None:
        return sign_and_serialise(writer, signing)
    return _serialise(writer)
