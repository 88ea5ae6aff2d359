"""The ways a reader may be shown bytes whose labels are wrong: charset fallbacks, and base64 or
quoted-printable that is still encoded although its label says otherwise.

The content checks (:func:`siegel.mime.read_message`, and the attachment worker) search every
such reading, so that a wrong label cannot hide what a mail program, its source view or its
"text encoding" menu would show the recipient.
"""

from __future__ import annotations

import binascii
import codecs
import quopri
import re
from email.message import EmailMessage

_ASCII_SAMPLE = "".join(map(chr, range(0x20, 0x7f))) + "\r\n\t"


def _ascii_compatible(charset: str) -> bool:
    """Whether ``charset`` writes ASCII as ASCII (UTF-16 and UTF-7 do not)."""
    try:
        return _ASCII_SAMPLE.encode(charset) == _ASCII_SAMPLE.encode("ascii")
    except (LookupError, UnicodeError):
        return False


def plausible_texts(data: bytes, charset: str) -> list[str]:
    """``data`` decoded the ways a reader may show it: with the declared ``charset`` and, where
    the label may be wrong, as mail programs fall back (and as a recipient can choose with the
    program's "text encoding" menu): UTF-8, then windows-1252. A part whose label does not fit
    its bytes is searched in every such reading, not only in the one the label names."""
    texts = [data.decode(charset, "replace")]
    if data.isascii() and _ascii_compatible(charset):
        return texts  # every reading is the same
    try:
        texts.append(data.decode("utf-8"))
    except UnicodeDecodeError:
        texts.append(data.decode("cp1252", "replace"))
    return list(dict.fromkeys(texts))


_BASE64_TOKEN = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}")
_BASE64_NOISE = re.compile(rb"[^A-Za-z0-9+/]")
_BASE64_LINE = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
_QP_ESCAPE = re.compile(rb"=(?:[0-9A-F]{2}|\r?\n|\r)")
BARE_CR = re.compile(rb"\r(?!\n)")


def payload_bytes(part: EmailMessage) -> bytes:
    """A part's payload still in its transfer encoding, as bytes (the parser keeps 8-bit bytes
    as surrogate escapes)."""
    payload = part.get_payload()
    if not isinstance(payload, str):
        return b""
    try:
        return payload.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return payload.encode("utf-8", "surrogateescape")


def encoded_readings(data: bytes) -> list[bytes]:
    """Further readings of text ``data`` that is still transfer-encoded, although its label
    says otherwise: a base64 body labelled 7bit, binary or not at all (or inside a part whose
    structure was lost), and quoted-printable labelled as something else. A reader shows the
    letters, and one step (a decoder, a program that sniffs) shows the text; a soft line break
    can cut a number in two that the reader still reads as one. Ordinary text has none."""
    readings = [reading for reading in dict.fromkeys(_lenient_base64(data))
                if len(reading) <= _SMALL_READING or _may_be_text(reading)]
    if _QP_ESCAPE.search(data):
        readings.append(quopri.decodestring(BARE_CR.sub(b"\n", data)))
    return readings


#: A decoding this small is searched even when it looks binary (damage can make it look so).
_SMALL_READING = 64 * 1024
_CONTROLS = bytes(b for b in range(32) if b not in b"\x00\t\n\r\f\x0b\x1a")


def _may_be_text(data: bytes) -> bool:
    """Whether decoded base64 may be text (in any charset, UTF-16 too): binary data, such as
    a large inline picture, has many control characters."""
    head = data[:8192]
    return len(head) - len(head.translate(None, _CONTROLS)) <= len(head) // 20 + 3


def _lenient_base64(data: bytes) -> list[bytes]:
    """The base64 in ``data`` decoded the way lenient readers do: the lines that hold a run of
    the base64 alphabet, with the characters outside it skipped and missing padding added, each
    line on its own (so that one damaged line does not shift the bits of all that follow) and
    all of them as one stream, read at every alignment (a character lost or inserted shifts the
    bits after it). Ordinary text has no such runs."""
    if not _BASE64_TOKEN.search(data):
        return []
    # Lines that are mostly long runs of the alphabet, and (the short last line of a base64
    # body) lines of nothing else; a line of words with one long word among them is text.
    lines = [_BASE64_NOISE.sub(b"", line) for line in map(bytes.strip, data.splitlines())
             if _BASE64_LINE.fullmatch(line)
             or sum(map(len, _BASE64_TOKEN.findall(line))) * 4 >= len(line) * 3]
    if not any(map(_BASE64_TOKEN.search, lines)):
        return []
    stream = b"".join(lines)
    shifts = range(4) if len(stream) <= _SHIFTED_BASE64_MAX else range(1)
    return [b"".join(map(base64_padded, lines)),
            *(base64_padded(stream[shift:]) for shift in shifts)]


#: Up to this much base64 is also read at the three other alignments (more is a file or an
#: inline picture, whose decoding three more times would only fill the text limit).
_SHIFTED_BASE64_MAX = 1 << 20


def base64_padded(letters: bytes) -> bytes:
    if len(letters) % 4 == 1:  # one letter too many cannot be decoded: drop it
        letters = letters[:-1]
    return binascii.a2b_base64(letters + b"===")


_ENCODED_WORD = re.compile(r"=\?([^?\s]*)\?([bBqQ])\?([^?\s]*)(?:\?=)?")
_BETWEEN_WORDS = re.compile(r"(?<=\?=)\s+(?==\?)")


def _word_bytes(encoding: str, text: str) -> bytes:
    data = text.encode("ascii", "replace")
    if encoding in "bB":
        return base64_padded(base64_noise_free(data))
    return quopri.decodestring(data.replace(b"_", b" "))


def unfold_encoded_words(raw: str) -> str:
    """A header field's raw value unfolded, with the white space between encoded words gone
    (RFC 2047 section 6.2: readers join adjacent encoded words)."""
    return _BETWEEN_WORDS.sub("", re.sub(r"\r?\n(?=[ \t])", "", raw))


def lenient_encoded_words(text: str) -> list[str]:
    """``text`` with every encoded word decoded leniently (one without its closing ``?=``, bad
    padding or escapes), in its declared charset and in the last charset readers fall back to."""
    readings = []
    for choice in (0, -1):

        def decode(match: re.Match[str], choice: int = choice) -> str:
            charset = match.group(1).partition("*")[0] or "us-ascii"
            try:
                codecs.lookup(charset)
            except LookupError:
                charset = "latin-1"
            return plausible_texts(_word_bytes(match.group(2), match.group(3)), charset)[choice]

        readings.append(_ENCODED_WORD.sub(decode, text))
    return readings


def base64_noise_free(data: bytes) -> bytes:
    """``data`` with every character outside the base64 alphabet removed."""
    return _BASE64_NOISE.sub(b"", data)


__all__ = ["BARE_CR", "base64_noise_free", "base64_padded", "encoded_readings",
           "lenient_encoded_words", "payload_bytes", "plausible_texts", "unfold_encoded_words"]
