"""siegel.model.parse_email feeds the parser in pieces; the result must be what the stdlib's
one-piece parse gives, wherever the pieces happen to be cut."""

from __future__ import annotations

import email.policy
from email.parser import BytesParser

import pytest

from siegel.model import _PARSE_CHUNK_BYTES, parse_email
from siegel.testing import make_message


def _stdlib(raw: bytes):
    return BytesParser(policy=email.policy.default).parsebytes(raw)


def _same(raw: bytes) -> None:
    ours, theirs = parse_email(raw), _stdlib(raw)
    assert ours.as_bytes() == theirs.as_bytes()
    assert [p.get_content_type() for p in ours.walk()] == [p.get_content_type() for p in theirs.walk()]
    assert [[type(d) for d in p.defects] for p in ours.walk()] == [
        [type(d) for d in p.defects] for p in theirs.walk()]
    for mine, stdlib in zip(ours.walk(), theirs.walk(), strict=True):
        if not mine.is_multipart():
            assert mine.get_payload(decode=True) == stdlib.get_payload(decode=True)


@pytest.mark.parametrize("shift", [-1, 0, 1, 2])
def test_a_message_larger_than_a_piece_parses_as_in_one_piece(shift):
    raw = make_message(body="Text\n", attachments=[
        ("a.bin", "application/octet-stream", bytes(range(256)) * 1000),
        ("b.txt", "text/plain", b"line\n" * 30000)])
    # Move a CRLF (and then a boundary line) onto the cut between two pieces.
    cut = raw.index(b"\r\n", _PARSE_CHUNK_BYTES - 200)
    padded = raw[:cut] + b" " * (_PARSE_CHUNK_BYTES - cut + shift) + raw[cut:]
    assert len(padded) > 2 * _PARSE_CHUNK_BYTES
    _same(padded)


def test_broken_and_bare_lf_messages_parse_as_in_one_piece():
    lf_only = make_message(attachments=[("a.bin", "application/octet-stream", b"x" * 200_000)]
                           ).replace(b"\r\n", b"\n")
    _same(lf_only)
    truncated = lf_only[: len(lf_only) // 2]  # no closing boundary, cut inside base64
    _same(truncated)
    _same(b"no header separator " * 10_000)
    _same(b"")
