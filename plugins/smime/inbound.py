"""The header block of a decrypted or verified inbound message: what the clerk sees.

An S/MIME message has two header blocks: the outer one (transported in clear, anyone on the way
could have written it) and the inner entity's (inside the encryption and, when signed, covered
by the signature). Merging both would let a sender forge what the clerk sees (issue 9): a second
``From:`` or ``Subject:``, or an ``X-Siegel-SMIME: signature valid`` of its own. The rule
(RFC 8551 3.1, draft-ietf-lamps-header-protection):

* ``X-Siegel-*`` fields are siegel's alone: every one arriving in the outer or the inner header
  block of an S/MIME message is removed; siegel then writes its own verification result.
* The inner entity's ``Content-*`` fields describe the body and are kept. When the inner entity
  is ``message/rfc822`` (a wrapped whole message, RFC 8551 3.1), that message's fields count as
  the inner ones.
* Other inner fields count only when a valid signature covers them. Then the signed inner
  single-instance fields (RFC 5322 3.6: Date, From, Sender, Reply-To, To, Cc, Bcc, Message-ID,
  In-Reply-To, References, Subject) replace the outer ones; a signed ``From`` whose addresses
  differ from the outer ``From`` is flagged in ``X-Siegel-SMIME``, and so is a ``From`` that the
  signer's certificate does not name. Other inner fields (``Keywords``, ``X-*``) are dropped.
* Without a valid signature the outer fields win and inner fields other than ``Content-*`` are
  dropped (flagged when one of them was a single-instance field).
* The delivered header block has at most one of each single-instance field: of several, the
  first stays.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence

import attrs

SINGLE_INSTANCE = ("date", "from", "sender", "reply-to", "to", "cc", "bcc", "message-id",
                   "in-reply-to", "references", "subject")
SIEGEL_PREFIX = "x-siegel-"
_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")
_HEADER_END = re.compile(rb"\r?\n\r?\n")


@attrs.frozen(kw_only=True)
class Field:
    """One header field as it arrived (folded lines included, with its line ending)."""

    name: str
    raw: bytes = attrs.field(repr=False)

    @property
    def value(self) -> str:
        text = self.raw.split(b":", 1)[1] if b":" in self.raw else b""
        return re.sub(r"\s+", " ", text.decode("utf-8", "replace")).strip()


def split_header(entity: bytes) -> tuple[list[Field], bytes]:
    """The fields of ``entity``'s header block and its body (the blank line removed).

    A line that is neither a field nor a continuation ends the header block, as the email
    parser treats it (the rest is body)."""
    if entity.startswith((b"\r\n", b"\n")):
        return [], entity[2 if entity.startswith(b"\r\n") else 1:]
    match = _HEADER_END.search(entity)
    head, body = (entity[:match.start()] + b"\r\n", entity[match.end():]) if match else (
        entity, b"")
    fields: list[Field] = []
    lines = head.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] = Field(name=fields[-1].name, raw=fields[-1].raw + line)
            continue
        found = _FIELD_NAME.match(line)
        if found is None:
            return fields, b"".join(lines[index:]) + b"\r\n" + body
        fields.append(Field(name=found.group(1).decode("ascii").lower(), raw=line))
    return fields, body


def _addresses(fields: Sequence[Field], name: str) -> set[str]:
    values = [field.value for field in fields if field.name == name]
    return {address.lower() for _, address in email.utils.getaddresses(values) if address}


@attrs.frozen(kw_only=True)
class Delivered:
    """The merged message (without siegel's status fields) and what the clerk must be told."""

    head: bytes = attrs.field(repr=False)
    rest: bytes = attrs.field(repr=False)
    #: English notes for ``X-Siegel-SMIME`` (ASCII, no line breaks).
    notes: tuple[str, ...] = ()
    #: How many ``X-Siegel-*`` fields from outside were removed.
    removed_siegel_fields: int = 0

    def with_status(self, status: Sequence[tuple[str, str]]) -> bytes:
        """The message with siegel's fields (name, ASCII value without line breaks) added."""
        for name, value in status:
            if not name.lower().startswith(SIEGEL_PREFIX) or not value.isascii() or any(
                    c in value for c in "\r\n"):
                raise ValueError(f"not a status field siegel may write: {name!r}")
        fields = b"".join(f"{name}: {value}\r\n".encode("ascii") for name, value in status)
        return self.head + fields + self.rest


def merge(outer: bytes, entity: bytes, *, signed: bool, signer_addresses: Sequence[str] = ()
          ) -> Delivered:
    """The message to deliver: header fields by the rule of this module, then the inner
    entity's ``Content-*`` fields and body; add siegel's fields with
    :meth:`Delivered.with_status`.

    ``outer`` is the received message (only its header block is used), ``entity`` the innermost
    entity after decryption/verification, ``signed`` whether a valid signature covers it."""
    outer_fields, _ = split_header(outer)
    inner_fields, body = split_header(entity)
    content_type = next((f.value for f in inner_fields if f.name == "content-type"), "")
    if content_type.split(";")[0].strip().lower() == "message/rfc822":
        inner_fields, body = split_header(body)
    removed = sum(f.name.startswith(SIEGEL_PREFIX) for f in (*outer_fields, *inner_fields))
    outer_fields = [f for f in outer_fields if not f.name.startswith(SIEGEL_PREFIX)
                    and not f.name.startswith("content-") and f.name != "mime-version"]
    inner_fields = [f for f in inner_fields if not f.name.startswith(SIEGEL_PREFIX)
                    and f.name != "mime-version"]
    content = [f for f in inner_fields if f.name.startswith("content-")]
    inner_single = [f for f in inner_fields if f.name in SINGLE_INSTANCE]
    notes: list[str] = []
    if signed and inner_single:
        replaced = {f.name for f in inner_single}
        outer_from = _addresses(outer_fields, "from")
        inner_from = _addresses(inner_single, "from")
        if "from" in replaced and outer_from and inner_from != outer_from:
            notes.append("signed From differs from the outer From "
                         + _ascii(", ".join(sorted(outer_from))))
        headers = inner_single + [f for f in outer_fields if f.name not in replaced]
    else:
        if inner_single:
            notes.append("unsigned inner header fields ignored: "
                         + ", ".join(sorted({f.name for f in inner_single})))
        headers = outer_fields
    if signed and signer_addresses:
        shown_from = _addresses(headers, "from")
        if shown_from and not shown_from & {a.lower() for a in signer_addresses}:
            notes.append("the signer's certificate does not name the From address")
    seen: set[str] = set()
    unique: list[Field] = []
    for field in headers:
        if field.name in SINGLE_INSTANCE:
            if field.name in seen:
                continue
            seen.add(field.name)
        unique.append(field)
    return Delivered(
        head=b"".join(_crlf(f.raw) for f in unique),
        rest=b"MIME-Version: 1.0\r\n" + b"".join(_crlf(f.raw) for f in content) + b"\r\n" + body,
        notes=tuple(notes), removed_siegel_fields=removed)


def _crlf(field: bytes) -> bytes:
    return re.sub(rb"\r*\n", b"\r\n", field if field.endswith(b"\n") else field + b"\r\n")


def _ascii(text: str) -> str:
    """Safe for a header value: ASCII, no line breaks, bounded."""
    return re.sub(r"[^ -~]", "?", text)[:200]


__all__ = ["SINGLE_INSTANCE", "Delivered", "Field", "merge", "split_header"]
