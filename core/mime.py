"""Reading and minimally editing RFC 5322 messages.

Classifiers read the parsed message; rewriters edit the *raw* header block so that everything they do
not touch stays byte for byte as the sender wrote it (DKIM signatures over other headers survive).
"""

from __future__ import annotations

import email.errors
import email.policy
import html
import re
from email.message import EmailMessage
from email.parser import BytesParser

from siegel.model import parse_email

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


class RawMessage:
    """An editable view of a message's header block; the body is never touched."""

    def __init__(self, raw: bytes) -> None:
        match = _HEADER_END.search(raw)
        if match:
            separator = match.group()
            end_of_last_field = b"\r\n" if separator.startswith(b"\r\n") else b"\n"
            head = raw[: match.start()] + end_of_last_field
            self._blank_line: bytes | None = separator[len(end_of_last_field):]
            # A view, not a copy: the body can be most of a large message.
            self._body: bytes | memoryview = memoryview(raw)[match.end():]
        else:
            head, self._blank_line, self._body = raw, None, b""
        self._newline = b"\r\n" if b"\r\n" in raw[: len(head) + 2] else b"\n"
        self._fields = self._split_fields(head)
        self.changed = False

    def _split_fields(self, head: bytes) -> list[bytes]:
        fields: list[bytes] = []
        for line in head.splitlines(keepends=True):
            if fields and line[:1] in (b" ", b"\t"):
                fields[-1] += line
            else:
                fields.append(line)
        return fields

    @staticmethod
    def _name(field: bytes) -> str:
        match = _FIELD_START.match(field)
        return match.group(1).decode("ascii").lower() if match else ""

    def remove(self, name: str) -> int:
        """Remove every field called ``name``; return how many were removed."""
        wanted = name.lower()
        kept = [f for f in self._fields if self._name(f) != wanted]
        removed = len(self._fields) - len(kept)
        if removed:
            self._fields = kept
            self.changed = True
        return removed

    def replace(self, name: str, value: str) -> None:
        """Replace the first field called ``name`` (and drop any others) with a new value.

        The value is folded and, where it is not ASCII, encoded as RFC 2047 words.
        """
        folded = email.policy.SMTP.header_factory(name, value).fold(policy=email.policy.SMTP)
        encoded = folded.encode("ascii").replace(b"\r\n", self._newline)
        wanted = name.lower()
        fields: list[bytes] = []
        placed = False
        for field in self._fields:
            if self._name(field) == wanted:
                if not placed:
                    fields.append(encoded)
                    placed = True
            else:
                fields.append(field)
        if not placed:
            fields.insert(0, encoded)
        self._fields = fields
        self.changed = True

    def header_block(self) -> bytes:
        """The (edited) header fields and the blank line that ends them."""
        head = b"".join(self._fields)
        if head and not head.endswith(b"\n"):
            head += self._newline
        return head + (self._newline if self._blank_line is None else self._blank_line)

    def to_bytes(self) -> bytes:
        return b"".join((self.header_block(), self._body))

    def equals(self, data: bytes) -> bool:
        """``data == self.to_bytes()``, without making the copy."""
        head = self.header_block()
        return (len(data) == len(head) + len(self._body) and data.startswith(head)
                and memoryview(data)[len(head):] == self._body)

    def parsed(self, original: EmailMessage) -> EmailMessage:
        """The edited message parsed, given the unedited one parsed: only the header block is
        parsed again and the body is shared with ``original`` (not copied, not parsed twice).
        Where an edit touched how the body is structured or encoded, or the body is 8-bit text,
        all of it is parsed."""
        edited = BytesParser(policy=original.policy).parsebytes(self.header_block(),
                                                                headersonly=True)
        assert isinstance(edited, EmailMessage)
        body = original.get_payload()
        # An 8-bit body comes back from get_payload already decoded, so it cannot be shared.
        if _structure(edited) != _structure(original) or (
                isinstance(body, str) and not body.isascii()):
            return parse_email(self.to_bytes())
        edited.set_payload(body)
        edited.preamble, edited.epilogue = original.preamble, original.epilogue
        edited.defects.extend(original.defects)
        return edited


_STRUCTURE_FIELDS = frozenset({"content-type", "content-transfer-encoding", "mime-version"})


def _structure(message: EmailMessage) -> list[tuple[str, str]]:
    return [(name.lower(), str(value)) for name, value in message.raw_items()
            if name.lower() in _STRUCTURE_FIELDS]


_TAG = re.compile(r"<[^>]*>")
_SKIP_BLOCKS = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BLOCK_BREAKS = re.compile(r"<\s*(br|/p|/div|/li|/tr|/h[1-6])\b[^>]*>", re.IGNORECASE)


def html_to_text(markup: str) -> str:
    """Readable text from HTML, for checks and for rendering; nothing in it is executed."""
    text = _SKIP_BLOCKS.sub(" ", markup)
    text = _BLOCK_BREAKS.sub("\n", text)
    text = _TAG.sub(" ", text)
    text = html.unescape(text)
    return re.sub(r"[ \t\r\f\v]+", " ", text)


def body_text(message: EmailMessage, limit: int = 10 * 1024 * 1024) -> str:
    """All human-readable text of a message (text parts; HTML converted), at most ``limit`` chars.

    Attachments are skipped; their names are available through :func:`attachment_names`.
    """
    pieces: list[str] = []
    size = 0
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        content_type = part.get_content_type()
        if content_type not in ("text/plain", "text/html"):
            continue
        try:
            content = part.get_content()
        except (LookupError, ValueError, AssertionError):
            payload = part.get_payload(decode=True)
            content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        if not isinstance(content, str):
            continue
        if content_type == "text/html":
            content = html_to_text(content)
        pieces.append(content)
        size += len(content)
        if size >= limit:
            break
    return "\n".join(pieces)[:limit]


def attachment_names(message: EmailMessage) -> list[str]:
    return [
        name
        for part in message.walk()
        if not part.is_multipart() and (name := part.get_filename())
    ]


def oversized_header_blocks(message: EmailMessage, limit: int) -> list[str]:
    """The header blocks (of the message and of each MIME part) larger than ``limit`` bytes,
    measured on the raw fields, so that no field needs to be parsed to find out."""
    found: list[str] = []

    def visit(part: EmailMessage, path: str) -> None:
        size = sum(len(name) + len(value) + 4 for name, value in part.raw_items())
        if size > limit:
            found.append(path)
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                for index, child in enumerate(payload, start=1):
                    if isinstance(child, EmailMessage):
                        visit(child, f"{path}.{index}" if path != "message" else f"part {index}")

    visit(message, "message")
    return found


def subject_of(message: EmailMessage) -> str:
    value = message.get("subject")
    return str(value) if value is not None else ""



# Defects after which the parser may have mis-read where parts begin and end, so classifiers may
# not have seen all content. Header defects and sloppy base64 padding are common and harmless.
_STRUCTURAL_DEFECTS = (
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.InvalidMultipartContentTransferEncodingDefect,
    email.errors.MissingHeaderBodySeparatorDefect,
    email.errors.FirstHeaderLineIsContinuationDefect,
    email.errors.InvalidBase64CharactersDefect,
    email.errors.InvalidBase64LengthDefect,
)


def structural_defects(message: EmailMessage) -> list[str]:
    """Structural MIME defects with the part where they occur (``part 1.2``), for reasons."""
    found: list[str] = []

    def visit(part: EmailMessage, path: str) -> None:
        for defect in part.defects:
            if isinstance(defect, _STRUCTURAL_DEFECTS):
                found.append(f"{path}: {type(defect).__name__}")
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                for index, child in enumerate(payload, start=1):
                    if isinstance(child, EmailMessage):
                        visit(child, f"{path}.{index}" if path != "message" else f"part {index}")

    visit(message, "message")
    return found
