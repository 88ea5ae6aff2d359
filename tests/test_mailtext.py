"""The mails siegel writes itself: what mail programs read back from the bytes we produce."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siegel import mailtext
from siegel.mailtext import Mail


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def lines(raw: bytes) -> list[bytes]:
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
    return raw.split(b"\r\n")


def test_headers_and_text_read_back() -> None:
    mail = Mail(headers=[("From", "Landkreis Göttingen <post@landkreis.example>"),
                         ("To", "Frau Müller <mueller@example.net>"),
                         ("Subject", "Ihr Bescheid über 50 € – Straße")],
                text="Grüße aus Göttingen\n.\nZeile mit = und ß\n" + "x" * 200 + "\n")
    raw = mail.to_bytes()
    assert raw.isascii()
    assert all(len(line) <= 78 for line in lines(raw))
    parsed = parse(raw)
    assert parsed["Subject"] == "Ihr Bescheid über 50 € – Straße"
    assert parsed["From"].addresses[0].display_name == "Landkreis Göttingen"
    assert parsed["From"].addresses[0].addr_spec == "post@landkreis.example"
    assert parsed["To"].addresses[0].display_name == "Frau Müller"
    text = "Grüße aus Göttingen\n.\nZeile mit = und ß\n" + "x" * 200 + "\n"
    assert parsed.get_content().replace("\r\n", "\n") == text
    assert not parsed.defects


def test_line_breaks_in_values_cannot_add_headers() -> None:
    mail = Mail(headers=[("Subject", "Hallo\r\nBcc: opfer@example.net\nX-Evil: 1"),
                         ("To", "a@example.net\r\nBcc: b@example.net")], text="")
    parsed = parse(mail.to_bytes())
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None
    assert parsed["Subject"] == "Hallo Bcc: opfer@example.net X-Evil: 1"


def test_text_that_looks_encoded_is_shown_as_written() -> None:
    subject = "Betreff =?utf-8?b?R2VoZWlt?= bleibt so"
    assert parse(Mail(headers=[("Subject", subject)], text="").to_bytes())["Subject"] == subject


def test_long_values_fold_and_unbreakable_ones_stay_within_the_hard_limit() -> None:
    words = " ".join(["Sachstand"] * 40)
    token = "y" * 2000
    raw = Mail(headers=[("Subject", words), ("X-Token", token)], text="").to_bytes()
    assert all(len(line) <= 998 for line in lines(raw))
    parsed = parse(raw)
    assert parsed["Subject"] == words
    assert str(parsed["X-Token"]).replace(" ", "") == token


def test_internationalised_address_stays_utf8() -> None:
    raw = Mail(headers=[("To", "Jürgen <jürgen@müller.example>")], text="").to_bytes()
    assert "jürgen@müller.example".encode() in raw
    parsed = email.message_from_bytes(raw, policy=email.policy.SMTPUTF8)
    assert "jürgen@müller.example" in str(parsed["To"])


def test_set_replaces_in_place_and_remove_drops_all() -> None:
    mail = Mail(headers=[("From", "a@x.example"), ("Subject", "1"), ("subject", "2"),
                         ("To", "b@y.example")])
    mail.set("Subject", "neu")
    assert mail.headers == [("From", "a@x.example"), ("Subject", "neu"), ("To", "b@y.example")]
    mail.set("Date", "Mon, 23 Nov 2026 08:00:00 +0000")
    assert mail.headers[-1][0] == "Date"
    mail.remove("FROM")
    assert mail.get("from") is None and mail.get("to") == "b@y.example"


@pytest.mark.parametrize("filename", ["nachricht.pdf", "Bescheid März 2026.pdf", 'a"b\\c.txt',
                                      "Übersicht – 50 €.xlsx",
                                      "Sehr langer Dateiname mit Umlauten äöü und noch viel mehr "
                                      "Text für die Anlage zum Bescheid vom 23.11.2026.pdf",
                                      "l" * 150 + ".txt"])
def test_attachments_keep_name_type_and_bytes(filename: str) -> None:
    content = bytes(range(256)) * 1000 + b"\r\n.\r\n"
    mail = Mail(headers=[("Subject", "Anlagen")], text="siehe Anlage")
    mail.attach(content, "application/pdf", filename)
    mail.attach(b"zweite", "not a type", "x.bin")
    raw = mail.to_bytes()
    assert raw.isascii() and all(len(line) <= 78 for line in lines(raw))
    parsed = parse(raw)
    assert not parsed.defects
    parts = list(parsed.iter_attachments())
    assert [p.get_filename() for p in parts] == [filename, "x.bin"]
    assert parts[0].get_content_type() == "application/pdf"
    assert parts[0].get_content() == content
    assert parts[1].get_content_type() == "application/octet-stream"
    body = parsed.get_body(("plain",))
    assert body is not None and body.get_content() == "siehe Anlage"


@given(st.text(max_size=300), st.text(max_size=200))
def test_any_subject_and_text_survive(subject: str, text: str) -> None:
    raw = Mail(headers=[("Subject", subject)], text=text).to_bytes()
    assert raw.isascii() and all(len(line) <= 998 for line in lines(raw))
    parsed = parse(raw)
    expected_subject = mailtext._LINE_BREAKS.sub(" ", subject).strip()
    assert str(parsed["Subject"] or "") == expected_subject or " ".join(
        str(parsed["Subject"] or "").split()) == " ".join(expected_subject.split())
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    assert parsed.get_content().replace("\r\n", "\n") == normalised


def test_templates_are_read_again_when_the_tenant_changes_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    own = tmp_path / "de"
    own.mkdir()
    (own / "delayed.txt").write_text("Betreff eins\nText $x\n", encoding="utf-8")
    assert mailtext.load("siegel.plugins", "de", "delayed", tmp_path).subject == "Betreff eins"
    (own / "delayed.txt").write_text("Betreff zwei\nText $x\n", encoding="utf-8")
    import os
    os.utime(own / "delayed.txt", ns=(1, 10**18))
    assert mailtext.load("siegel.plugins", "de", "delayed", tmp_path).subject == "Betreff zwei"
    assert mailtext.load("siegel.plugins", "en", "delayed", tmp_path).subject  # falls back
