"""A seeded generator of broken, odd and hostile MIME messages, for fuzz tests.

It starts from real, well-formed messages (built with the email package: plain, HTML alternative,
attachments, forwarded messages, encoded subjects, RFC 2231 file names) that carry a secret
``marker`` somewhere a recipient could read it, and applies a few random mutations to each:
header damage (duplicates, garbage, very long or oddly folded fields, bad encoded words), boundary
damage, wrong or unknown transfer encodings and charsets, deep nesting, huge lines, changed
content types, byte flips, truncation and mixed line ends.

Everything depends on the seed only, so a failing case is reproduced with its seed and index::

    from mime_fuzz import MimeFuzzer
    case = MimeFuzzer(seed=20261203, marker="KD-4711-0815").case(index)
    case.raw, case.mutations

:func:`readable_marker` is the oracle: whether a recipient could read the marker in a message,
with a decoder far more lenient than siegel's (every part's payload tried with every transfer
encoding and several charsets, every header decoded).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.header
import email.policy
import email.utils
import quopri
import random
import re
from collections.abc import Callable
from email.message import EmailMessage
from email.parser import BytesParser

import attrs

SENDER = "sachbearbeitung@behoerde.example"
RECIPIENT = "buerger@example.net"


@attrs.frozen
class FuzzCase:
    index: int
    raw: bytes = attrs.field(repr=False)
    seed_kind: str
    mutations: tuple[str, ...]


def _finish(message: EmailMessage) -> bytes:
    # Boundaries of our own: the email package would draw them from the global random.
    for number, part in enumerate(message.walk()):
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            part.set_boundary(f"=_fuzz_{number}")
    return message.as_bytes(policy=email.policy.SMTP)


def _base(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = RECIPIENT
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(1767600000)
    message["Message-ID"] = "<fuzz@behoerde.example>"
    return message


class MimeFuzzer:
    def __init__(self, *, seed: int, marker: str) -> None:
        self.seed = seed
        self.marker = marker
        self.seeds: list[tuple[str, Callable[[random.Random], bytes]]] = [
            ("plain-8bit", self._plain_8bit),
            ("plain-qp", self._plain_qp),
            ("plain-base64", self._plain_base64),
            ("html-alternative", self._html_alternative),
            ("attachment-csv", self._attachment_csv),
            ("attachment-name", self._attachment_name),
            ("forwarded", self._forwarded),
            ("encoded-subject", self._encoded_subject),
        ]
        self.mutators: list[tuple[str, Callable[[random.Random, bytes], bytes]]] = [
            ("duplicate-header", self._duplicate_header),
            ("drop-header", self._drop_header),
            ("garbage-header", self._garbage_header),
            ("long-header", self._long_header),
            ("bad-encoded-word", self._bad_encoded_word),
            ("drop-closing-boundary", self._drop_closing_boundary),
            ("change-boundary", self._change_boundary),
            ("drop-boundary-parameter", self._drop_boundary_parameter),
            ("stray-boundary", self._stray_boundary),
            ("change-transfer-encoding", self._change_transfer_encoding),
            ("corrupt-base64", self._corrupt_base64),
            ("change-charset", self._change_charset),
            ("change-content-type", self._change_content_type),
            ("nest", self._nest),
            ("huge-line", self._huge_line),
            ("flip-bytes", self._flip_bytes),
            ("truncate", self._truncate),
            ("mixed-line-ends", self._mixed_line_ends),
            ("nul-bytes", self._nul_bytes),
        ]

    def case(self, index: int) -> FuzzCase:
        rng = random.Random(f"{self.seed}:{index}")
        kind, build = rng.choice(self.seeds)
        raw = build(rng)
        applied = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            name, mutate = rng.choice(self.mutators)
            raw = mutate(rng, raw)
            applied.append(name)
        return FuzzCase(index=index, raw=raw, seed_kind=kind, mutations=tuple(applied))

    # -- real messages ---------------------------------------------------------------------

    def _text(self, rng: random.Random) -> str:
        lines = [f"Zeile {i}: Grüße aus dem Bürgerbüro" for i in range(rng.randint(1, 30))]
        lines.insert(rng.randrange(len(lines) + 1), f"Ihre Kundennummer: {self.marker}")
        return "\n".join(lines) + "\n"

    def _plain_8bit(self, rng: random.Random) -> bytes:
        message = _base("Ihr Antrag")
        message.set_content(self._text(rng), cte="8bit")
        return _finish(message)

    def _plain_qp(self, rng: random.Random) -> bytes:
        message = _base("Ihr Antrag")
        message.set_content(self._text(rng), cte="quoted-printable")
        return _finish(message)

    def _plain_base64(self, rng: random.Random) -> bytes:
        message = _base("Ihr Antrag")
        message.set_content(self._text(rng), cte="base64")
        return _finish(message)

    def _html_alternative(self, rng: random.Random) -> bytes:
        message = _base("Ihr Antrag")
        message.set_content("Siehe HTML-Teil.\n")
        text = self._text(rng).replace("\n", "<br>")
        message.add_alternative(f"<html><body><p>{text}</p></body></html>", subtype="html")
        return _finish(message)

    def _attachment_csv(self, rng: random.Random) -> bytes:
        message = _base("Liste")
        message.set_content("Anbei die Liste.\n")
        message.add_attachment(f"Name;Nummer\nMuster;{self.marker}\n".encode(),
                               maintype="text", subtype="plain", filename="liste.txt")
        return _finish(message)

    def _attachment_name(self, rng: random.Random) -> bytes:
        message = _base("Unterlagen")
        message.set_content("Anbei.\n")
        message.add_attachment(bytes(rng.randrange(256) for _ in range(200)),
                               maintype="application", subtype="octet-stream",
                               filename=f"Bescheid {self.marker} ä.bin")
        return _finish(message)

    def _forwarded(self, rng: random.Random) -> bytes:
        inner = _base("Weitergeleitet")
        inner.set_content(self._text(rng))
        outer = _base("WG: Ihr Antrag")
        outer.set_content("Siehe unten.\n")
        outer.add_attachment(inner)
        return _finish(outer)

    def _encoded_subject(self, rng: random.Random) -> bytes:
        message = _base(f"Änderung zu {self.marker} – bitte prüfen")
        message.set_content("Guten Tag.\n")
        return _finish(message)

    # -- mutations -------------------------------------------------------------------------

    @staticmethod
    def _split(raw: bytes) -> tuple[bytes, bytes]:
        head, sep, body = raw.partition(b"\r\n\r\n")
        return head, body if sep else b""

    @staticmethod
    def _join(head: bytes, body: bytes) -> bytes:
        return head + b"\r\n\r\n" + body

    def _header_lines(self, raw: bytes) -> tuple[list[bytes], bytes]:
        head, body = self._split(raw)
        return re.split(rb"\r\n(?![ \t])", head), body

    def _duplicate_header(self, rng: random.Random, raw: bytes) -> bytes:
        fields, body = self._header_lines(raw)
        fields.insert(rng.randrange(len(fields) + 1), rng.choice(fields))
        return self._join(b"\r\n".join(fields), body)

    def _drop_header(self, rng: random.Random, raw: bytes) -> bytes:
        fields, body = self._header_lines(raw)
        if len(fields) > 1:
            del fields[rng.randrange(len(fields))]
        return self._join(b"\r\n".join(fields), body)

    def _garbage_header(self, rng: random.Random, raw: bytes) -> bytes:
        fields, body = self._header_lines(raw)
        garbage = rng.choice([b"no colon here", b": empty name", b"X-\xff\xfe: \xc3\x28",
                              b" leading continuation", b"Content-Type: text/plain; charset=",
                              b"MIME-Version: 9.9", b"Content-Type: multipart/mixed"])
        fields.insert(rng.randrange(len(fields) + 1), garbage)
        return self._join(b"\r\n".join(fields), body)

    def _long_header(self, rng: random.Random, raw: bytes) -> bytes:
        fields, body = self._header_lines(raw)
        size = rng.choice((2_000, 20_000, 90_000))
        if rng.random() < 0.5:
            value = b"\r\n ".join(b"=?utf-8?q?W=C3=B6rter_%d?=" % i for i in range(size // 26))
        else:
            value = b"x" * size
        fields.insert(rng.randrange(len(fields) + 1), b"X-Long: " + value)
        return self._join(b"\r\n".join(fields), body)

    def _bad_encoded_word(self, rng: random.Random, raw: bytes) -> bytes:
        words = [b"=?x-unknown?q?abc?=", b"=?utf-8?b?!!!?=", b"=?utf-8?q?=ZZ?=", b"=?utf-8?",
                 b"=?utf-8?x?abc?=", b"=??q?abc?="]
        fields, body = self._header_lines(raw)
        index = rng.randrange(len(fields))
        fields[index] = fields[index] + b" " + rng.choice(words)
        return self._join(b"\r\n".join(fields), body)

    def _boundaries(self, raw: bytes) -> list[bytes]:
        return re.findall(rb'boundary="?([^";\r\n]+)"?', raw)

    def _drop_closing_boundary(self, rng: random.Random, raw: bytes) -> bytes:
        boundaries = self._boundaries(raw)
        if not boundaries:
            return raw
        return raw.replace(b"--" + rng.choice(boundaries) + b"--", b"")

    def _change_boundary(self, rng: random.Random, raw: bytes) -> bytes:
        boundaries = self._boundaries(raw)
        if not boundaries:
            return raw
        old = rng.choice(boundaries)
        return raw.replace(b"boundary=\"" + old, b"boundary=\"" + old[:-1] + b"Z", 1)

    def _drop_boundary_parameter(self, rng: random.Random, raw: bytes) -> bytes:
        return re.sub(rb';\s*boundary="?[^";\r\n]+"?', b"", raw, count=1)

    def _stray_boundary(self, rng: random.Random, raw: bytes) -> bytes:
        boundaries = self._boundaries(raw)
        if not boundaries:
            return raw
        head, body = self._split(raw)
        at = rng.randrange(len(body) + 1)
        return self._join(head, body[:at] + b"\r\n--" + rng.choice(boundaries) + b"\r\n" + body[at:])

    def _change_transfer_encoding(self, rng: random.Random, raw: bytes) -> bytes:
        new = rng.choice([b"base64", b"quoted-printable", b"x-uuencode", b"7bit", b"binary",
                          b"BASE64", b"garbage"])
        return re.sub(rb"(?i)(Content-Transfer-Encoding:)[ \t]*[^\r\n]*", rb"\1 " + new, raw,
                      count=1)

    def _corrupt_base64(self, rng: random.Random, raw: bytes) -> bytes:
        lines = raw.split(b"\r\n")
        candidates = [i for i, line in enumerate(lines)
                      if len(line) >= 16 and re.fullmatch(rb"[A-Za-z0-9+/=]+", line)]
        if not candidates:
            return raw
        index = rng.choice(candidates)
        line = bytearray(lines[index])
        line[rng.randrange(len(line))] = rng.choice(b"!*~=\xff")
        lines[index] = bytes(line)
        return b"\r\n".join(lines)

    def _change_charset(self, rng: random.Random, raw: bytes) -> bytes:
        new = rng.choice([b"x-unknown", b"utf-16", b"iso-8859-1", b"us-ascii", b"utf-7",
                          b'"utf-8', b"cp1252"])
        return re.sub(rb'(?i)charset="?[^";\r\n]*"?', b"charset=" + new, raw, count=1)

    def _change_content_type(self, rng: random.Random, raw: bytes) -> bytes:
        new = rng.choice([b"text/csv", b"text/enriched", b"text/x-unknown", b"text",
                          b"application/octet-stream", b"TEXT/PLAIN", b"text/plain/extra",
                          b"multipart/mixed", b"message/rfc822", b"image/png"])
        matches = list(re.finditer(rb"(?i)Content-Type:[ \t]*([^;\r\n]+)", raw))
        if not matches:
            return raw
        match = rng.choice(matches)
        return raw[:match.start(1)] + new + raw[match.end(1):]

    def _nest(self, rng: random.Random, raw: bytes) -> bytes:
        depth = rng.choice((1, 3, 20))
        head, _body = self._split(raw)
        fields = [f for f in re.split(rb"\r\n(?![ \t])", head)
                  if f.lower().startswith((b"from:", b"to:", b"subject:"))]
        inner = raw
        for level in range(depth):
            boundary = b"nest%d" % level
            if rng.random() < 0.3:
                inner = b"Content-Type: message/rfc822\r\n\r\n" + inner
            inner = (b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n--'
                     + boundary + b"\r\n" + inner + b"\r\n--" + boundary + b"--\r\n")
        return b"\r\n".join([*fields, b"MIME-Version: 1.0"]) + b"\r\n" + inner

    def _huge_line(self, rng: random.Random, raw: bytes) -> bytes:
        head, body = self._split(raw)
        at = rng.randrange(len(body) + 1)
        filler = bytes(rng.choice(b"abcdefgh ") for _ in range(64)) * rng.choice((100, 3000))
        return self._join(head, body[:at] + filler + body[at:])

    def _flip_bytes(self, rng: random.Random, raw: bytes) -> bytes:
        data = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)

    def _truncate(self, rng: random.Random, raw: bytes) -> bytes:
        return raw[: rng.randrange(len(raw) // 2, len(raw))]

    def _mixed_line_ends(self, rng: random.Random, raw: bytes) -> bytes:
        lines = raw.split(b"\r\n")
        return b"".join(line + rng.choice((b"\r\n", b"\n", b"\r\n", b"\r")) for line in lines)

    def _nul_bytes(self, rng: random.Random, raw: bytes) -> bytes:
        at = rng.randrange(len(raw) + 1)
        return raw[:at] + b"\x00" * rng.randint(1, 5) + raw[at:]


# -- the oracle -------------------------------------------------------------------------------

_CHARSETS = ("utf-8", "latin-1", "utf-16", "utf-16-le", "utf-16-be", "utf-7", "cp1252")


def _decodings(payload: bytes) -> list[bytes]:
    found = [payload]
    with contextlib.suppress(binascii.Error, ValueError):
        found.append(base64.b64decode(re.sub(rb"[^A-Za-z0-9+/]", b"", payload) + b"==="))
    found.append(quopri.decodestring(payload))
    return found


def _texts(data: bytes) -> list[str]:
    texts = []
    for charset in _CHARSETS:
        try:
            texts.append(data.decode(charset, "ignore"))
        except LookupError:
            continue
    return texts


def readable_marker(raw: bytes, pattern: re.Pattern[str]) -> bool:
    """Whether a recipient could read text matching ``pattern`` in ``raw``: in the bytes as they
    are, in any header once its encoded words are decoded, or in any part's payload decoded
    with any transfer encoding and any of several charsets."""
    if any(pattern.search(text) for text in _texts(raw)):
        return True
    try:
        message = BytesParser(policy=email.policy.compat32).parsebytes(raw)
    except Exception:
        return False
    for part in message.walk():
        for _name, value in part.items():
            try:
                decoded = str(email.header.make_header(email.header.decode_header(str(value))))
            except Exception:
                decoded = str(value)
            if pattern.search(decoded):
                return True
        payload = part.get_payload()
        if isinstance(payload, str):
            data = payload.encode("latin-1", "replace")
            if any(pattern.search(text) for decoded in _decodings(data)
                   for text in _texts(decoded)):
                return True
    return False
