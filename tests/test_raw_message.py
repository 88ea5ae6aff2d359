"""RawMessage: header edits leave every other byte alone, and the edited copy parses as a whole."""

from __future__ import annotations

import email.policy
from email.generator import BytesGenerator
from io import BytesIO

import pytest

from siegel.mime import RawMessage
from siegel.model import parse_email
from siegel.testing import make_message

SAMPLES = {
    "plain": make_message(subject="Bescheid [verschlüsseln]", body="Grüße\n"),
    "attachments": make_message(subject="Anlagen", body="siehe Anlage\n", attachments=[
        ("Bescheid.pdf", "application/pdf", b"%PDF-1.7 " + bytes(range(256))),
        ("notiz.txt", "text/plain", "Straße\n".encode())]),
    "lf line ends": make_message(subject="LF", body="eins\nzwei\n").replace(b"\r\n", b"\n"),
    "8bit": (b"From: a@behoerde.example\r\nTo: b@example.net\r\nSubject: x\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
             b"\r\nGr\xc3\xbc\xc3\x9fe\r\n"),
    "broken multipart": (b"From: a@behoerde.example\r\nSubject: kaputt\r\n"
                         b"Content-Type: multipart/mixed; boundary=XYZ\r\n\r\nno parts here\r\n"),
    "no body": b"From: a@behoerde.example\r\nSubject: leer\r\n",
}


def flattened(message: email.message.EmailMessage) -> bytes:
    out = BytesIO()
    BytesGenerator(out, policy=email.policy.SMTP.clone(linesep="\n")).flatten(message)
    return out.getvalue()


@pytest.mark.parametrize("name", SAMPLES)
def test_edited_copy_parses_like_a_full_parse(name: str) -> None:
    raw = SAMPLES[name]
    original = parse_email(raw)
    edited = RawMessage(raw)
    edited.remove("X-Siegel-Encrypt")
    edited.replace("Subject", "Neuer Betreff – geändert")
    shared = edited.parsed(original)
    full = parse_email(edited.to_bytes())
    assert shared["Subject"] == full["Subject"] == "Neuer Betreff – geändert"
    assert flattened(shared) == flattened(full)
    assert [p.get_content_type() for p in shared.walk()] == [
        p.get_content_type() for p in full.walk()]
    assert original["Subject"] != shared["Subject"]  # the original is not touched


def test_body_bytes_are_untouched() -> None:
    raw = SAMPLES["attachments"]
    edited = RawMessage(raw)
    edited.replace("Subject", "anders")
    out = edited.to_bytes()
    assert out.endswith(raw[raw.index(b"\r\n\r\n") + 4:])


def test_an_edit_of_the_structure_parses_everything_again() -> None:
    raw = SAMPLES["attachments"]
    original = parse_email(raw)
    edited = RawMessage(raw)
    edited.replace("Content-Type", "text/plain")
    shared = edited.parsed(original)
    assert not shared.is_multipart()
    assert shared.get_content_type() == "text/plain"


def test_the_parts_are_shared_not_parsed_again() -> None:
    raw = SAMPLES["attachments"]
    original = parse_email(raw)
    edited = RawMessage(raw)
    edited.replace("Subject", "anders")
    shared = edited.parsed(original)
    assert shared.get_payload() is original.get_payload()


@pytest.mark.parametrize("name", SAMPLES)
def test_equals_compares_without_copying(name: str) -> None:
    edited = RawMessage(SAMPLES[name])
    edited.replace("Subject", "anders")
    made = edited.to_bytes()
    assert edited.equals(made)
    assert edited.equals(bytes(made))
    assert not edited.equals(made[:-1])
    assert not edited.equals(made[:-1] + b"X")
    assert not edited.equals(SAMPLES[name])
