"""Content rules see every part a recipient could read (issue 9, first leak class).

Each variant below once carried a customer number past the content rules in plain text. Every one
goes through a real pipeline into a real SMTP sink; none may reach the citizen unprotected. A
control message without the number is delivered, so the check would notice a rule that never
matches, and a message whose parts are all readable is not held for being unreadable.
"""

from __future__ import annotations

import base64
import email.policy
from email.message import EmailMessage

import pytest

from content_samples import (
    CUSTOMER,
    RULES,
    docx,
    encrypted_pdf,
    odt,
    pdf,
    xlsx,
    zipped,
)
from siegel import Classifier, Level, RecipientState, extract, hookimpl
from siegel.testing import make_message

SENDER = "sachbearbeitung@behoerde.example"
CITIZEN = "buerger@example.net"
COLLEAGUE = "kollegin@behoerde.example"
CONFIG = {"settings": {"recipient_scope": {"external": "plain"}, **RULES}}


def head(content_type: str | None, *, encoding: str | None = None, extra: str = "") -> bytes:
    lines = [f"From: {SENDER}", f"To: {CITIZEN}", "Subject: Ihr Anliegen",
             "Message-ID: <t@behoerde.example>", "MIME-Version: 1.0"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if encoding is not None:
        lines.append(f"Content-Transfer-Encoding: {encoding}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def single(content_type: str | None, body: bytes, **kwargs: str) -> bytes:
    return head(content_type, **kwargs) + body + b"\r\n"


def multipart(subtype: str, *parts: bytes) -> bytes:
    body = b"".join(b"--XYZ\r\n" + part + b"\r\n" for part in parts) + b"--XYZ--\r\n"
    return head(f'multipart/{subtype}; boundary="XYZ"') + b"This is MIME.\r\n" + body


def part(content_type: str | None, body: bytes, *headers: str) -> bytes:
    lines = [f"Content-Type: {content_type}"] if content_type else []
    return ("\r\n".join([*lines, *headers]) + "\r\n\r\n").encode() + body


def with_attachment(filename: str, mime_type: str, data: bytes) -> bytes:
    return make_message(to=CITIZEN, body="Guten Tag,\nanbei das Schreiben.\n",
                        attachments=[(filename, mime_type, data)])


def nested_message() -> bytes:
    inner = make_message(to=CITIZEN, subject="Weitergeleitet",
                         body=f"Kundennummer {CUSTOMER}\n").replace(b"\r\n", b"\n")
    return multipart("mixed", part("text/plain", b"Siehe unten."),
                     part("message/rfc822", inner.replace(b"\n", b"\r\n")))


def base64_message() -> bytes:
    inner = make_message(to=CITIZEN, subject="Weitergeleitet", body=f"Kundennummer {CUSTOMER}\n")
    return multipart("mixed", part("text/plain", b"Siehe Anhang."),
                     part("message/rfc822", base64.encodebytes(inner).replace(b"\n", b"\r\n"),
                          "Content-Transfer-Encoding: base64"))


def html_alternative() -> bytes:
    return multipart("alternative", part("text/plain; charset=utf-8", b"Guten Tag"),
                     part("text/html; charset=utf-8",
                          f"<p>Nr. {CUSTOMER[:4]}<b></b>{CUSTOMER[4:]}</p>".encode()))


def rfc2231_name() -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, CITIZEN, "Unterlagen"
    message.set_content("Guten Tag")
    message.add_attachment(b"\x89PNG\r\n\x1a\n", maintype="image", subtype="png",
                           filename=("utf-8", "de", f"Bescheid für {CUSTOMER}.png"))
    return message.as_bytes(policy=email.policy.SMTP)


LEAKS = {
    "text/csv": single("text/csv; charset=utf-8", f"name;kdnr\r\nMüller;{CUSTOMER}".encode()),
    "text/enriched": single("text/enriched",
                            f"<bold>{CUSTOMER[:3]}</bold>{CUSTOMER[3:]}".encode()),
    "text/x-garbled": single("text/x-garbled; charset=us-ascii", CUSTOMER.encode()),
    "garbled content type": single("tetx/plian;;; charset", CUSTOMER.encode()),
    "no content type": single(None, f"Kundennummer {CUSTOMER}".encode()),
    "base64 text/calendar": single("text/calendar; charset=utf-8",
                                   base64.b64encode(f"SUMMARY:{CUSTOMER}".encode()),
                                   encoding="base64"),
    "utf-16 text": single("text/plain; charset=utf-16", f"Nr. {CUSTOMER}".encode("utf-16"),
                          encoding="binary"),
    "text/csv attachment": with_attachment("liste.csv", "text/csv", CUSTOMER.encode()),
    "nested message/rfc822": nested_message(),
    "html alternative only": html_alternative(),
    "pdf attachment": with_attachment("bescheid.pdf", "application/pdf", pdf(CUSTOMER)),
    "pdf as octet-stream": with_attachment("scan", "application/octet-stream", pdf(CUSTOMER)),
    "docx attachment": with_attachment(
        "brief.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        docx(CUSTOMER)),
    "xlsx attachment": with_attachment(
        "liste.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        xlsx(CUSTOMER)),
    "odt attachment": with_attachment("brief.odt", "application/vnd.oasis.opendocument.text",
                                      odt(CUSTOMER)),
    "pdf in a zip": with_attachment("akte.zip", "application/zip",
                                    zipped("bescheid.pdf", pdf(CUSTOMER))),
    "rfc 2231 file name": rfc2231_name(),
    "zero-width space": single("text/html; charset=utf-8",
                               f"{CUSTOMER[:4]}&#8203;{CUSTOMER[4:]}".encode()),
    "soft hyphen and full-width digits": single(
        "text/plain; charset=utf-8",
        ("\uff11\uff12\uff13" + "A\u00ad" + CUSTOMER[4:]).encode()),
    "rfc 2047 display name": single("text/plain", b"Guten Tag",
                                    extra="Cc: =?utf-8?q?Kunde_" + CUSTOMER + "?= <a@example.net>"
                                    ).replace(f"To: {CITIZEN}".encode(),
                                              f"To: {CITIZEN}".encode()),
}

def base64_lines(text: str) -> bytes:
    return base64.encodebytes(text.encode()).replace(b"\n", b"\r\n")


LETTER = "Guten Tag,\nwir haben Ihren Antrag erhalten und bearbeiten ihn.\n" * 3

# Leaks that the MIME fuzz test (tests/test_mime_fuzz.py) found, one per root cause: a reader
# shows these parts in a way the label does not say, so siegel reads every plausible way.
LEAKS |= {
    # The charset label does not fit the bytes: readers fall back to UTF-8 or windows-1252,
    # and the recipient can choose another in the "text encoding" menu.
    "utf-8 labelled utf-16": single("text/plain; charset=utf-16",
                                    f"Grüße, Nr. {CUSTOMER}".encode(), encoding="8bit"),
    # A base64 body whose transfer encoding was lost or mislabelled, or has text inside it.
    "base64 labelled 7bit": single("text/plain; charset=utf-8",
                                   base64_lines(LETTER + f"Nr. {CUSTOMER}\n"), encoding="7bit"),
    "base64 without a transfer encoding": single(
        "text/plain; charset=utf-8", base64_lines(LETTER + f"Nr. {CUSTOMER}\n")),
    "base64 with text inserted": single(
        "text/plain; charset=utf-8",
        base64_lines(LETTER + f"Nr. {CUSTOMER}\n").replace(b"\r\n", b" und so fort\r\n", 1),
        encoding="binary"),
    "base64 with a character lost": single(
        "text/plain; charset=utf-8",
        (lambda line: line[:10] + line[11:])(
            base64.b64encode((LETTER + f"Nr. {CUSTOMER}\n").encode())), encoding="7bit"),
    # A quoted-printable soft line break before a bare CR (a line end to mail programs; the
    # email package drops the rest of the line), or quoted-printable labelled 8bit.
    "soft line break before a bare CR": single(
        "text/html; charset=utf-8", f"<p>Nr. {CUSTOMER[:5]}=\r{CUSTOMER[5:]}</p>".encode(),
        encoding="quoted-printable"),
    "quoted-printable labelled 8bit": single(
        "text/plain; charset=utf-8", f"Nr. {CUSTOMER[:5]}=\r\n{CUSTOMER[5:]}".encode(),
        encoding="8bit"),
    # An attachment that turns out to be text is read the same ways: base64 labelled 7bit in a
    # part that claims to be a picture, quoted-printable labelled 7bit in a file.
    "base64 text labelled image/png and 7bit": single(
        "image/png", base64_lines(LETTER + f"Nr. {CUSTOMER}\n"), encoding="7bit"),
    "quoted-printable labelled 7bit in a file": single(
        "application/octet-stream", f"<p>Nr. {CUSTOMER[:5]}=\r\n{CUSTOMER[5:]}</p>".encode(),
        encoding="7bit"),
    # A subject whose encoded word is damaged (no closing ``?=``) or labelled with the wrong
    # charset: readers decode it leniently.
    "unterminated encoded word in the subject": single("text/plain", b"Guten Tag").replace(
        b"Subject: Ihr Anliegen", b"Subject: =?utf-8?b?"
        + base64.b64encode(f"Nr. {CUSTOMER}".encode()) + b"?"),
    "encoded word labelled utf-16 in the subject": single("text/plain", b"Guten Tag").replace(
        b"Subject: Ihr Anliegen", b"Subject: =?utf-16?b?"
        + base64.b64encode(f"Nr. {CUSTOMER}".encode()) + b"?="),
    # The number in a header field a reader shows in its header or source view, though the
    # field's name or parameter is damaged.
    "damaged subject field name": single("text/plain", b"Guten Tag",
                                         extra=f"Su2ject: Nr. {CUSTOMER}"),
    "damaged file name parameter": multipart(
        "mixed", part("text/plain; charset=utf-8", b"Anbei.",
                      f"Content-Disposition: inline; filename*x=utf-8''Nr.%20{CUSTOMER}.txt")),
}

UNREADABLE = {
    # The pipeline's check for broken MIME quarantines this one first (the stricter finding).
    "undecodable base64": (single("text/plain", b"MTIzQTQ1Njc4O", encoding="base64"),
                           "InvalidBase64LengthDefect"),
    "unknown charset": (single("text/plain; charset=x-unbekannt", b"Guten Tag"),
                        "unknown charset"),
    "unknown transfer encoding": (single("text/plain", b"Guten Tag", encoding="x-geheim"),
                                  "unknown transfer encoding"),
    "encrypted pdf": (with_attachment("bescheid.pdf", "application/pdf", encrypted_pdf(CUSTOMER)),
                      "part 2 application/pdf (encrypted)"),
    "scanned pdf": (with_attachment("scan.pdf", "application/pdf", pdf("", image_only=True)),
                    "no text layer"),
    "picture": (with_attachment("foto.jpg", "image/jpeg", b"\xff\xd8\xff\xe0" + bytes(64)),
                "no text can be extracted"),
    "truncated multipart": (multipart("mixed", part("text/plain", b"Teil 1"))[:-9],
                            "truncated"),
    "inline OpenPGP": (single("text/plain", b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA+x\r\n"
                                               b"-----END PGP MESSAGE-----"),
                       "part 1 text/plain (encrypted)"),
    "PGP/MIME": (multipart("encrypted; protocol=\"application/pgp-encrypted\"",
                           part("application/pgp-encrypted", b"Version: 1"),
                           part("application/octet-stream", b"-----BEGIN PGP MESSAGE-----\r\n"
                                b"\r\nhQEMA+x\r\n-----END PGP MESSAGE-----")),
                 "part 2 application/octet-stream (encrypted)"),
    "message/partial": (single("message/partial; id=x; number=1; total=2", b"Subject: x\r\n"),
                        "structure not understood"),
}


async def _run(siegel_harness, raw: bytes, recipient: str = CITIZEN, config=CONFIG):
    async with siegel_harness(config=config) as harness:
        message_id = await harness.send(raw, mail_from=SENDER, rcpt_to=[recipient])
        await harness.process()
        [record] = await harness.store.recipients(message_id)
    return harness, record


@pytest.mark.parametrize("raw", LEAKS.values(), ids=LEAKS.keys())
async def test_a_customer_number_in_any_readable_part_is_found(siegel_harness, raw):
    harness, record = await _run(siegel_harness, raw)
    assert record.state is RecipientState.QUARANTINED  # protect, and the test has no method
    assert record.level is Level.PROTECT
    assert any("content rule 'kundennummer'" in reason for reason in record.reasons), \
        record.reasons
    assert harness.sink.to(CITIZEN) == []


@pytest.mark.parametrize(("raw", "reason"), UNREADABLE.values(), ids=UNREADABLE.keys())
async def test_an_unreadable_part_counts_against_the_message(siegel_harness, raw, reason):
    harness, record = await _run(siegel_harness, raw)
    assert record.state is RecipientState.QUARANTINED
    assert record.level >= Level.PROTECT
    assert any(reason in r for r in record.reasons), record.reasons
    assert harness.sink.to(CITIZEN) == []
    for text in record.reasons:  # parts are named, never their content
        assert CUSTOMER not in text


async def test_a_base64_encoded_attached_message_is_decoded_and_read(siegel_harness):
    from siegel import mime
    from siegel.model import parse_email

    raw = base64_message()
    reading = mime.read_message(parse_email(raw))
    assert CUSTOMER in reading.text and "Weitergeleitet" in reading.text
    assert not reading.unreadable
    # The pipeline's own check for broken MIME quarantines it (the parser saw no header block
    # in the encoded text); either way it never reaches the citizen.
    harness, record = await _run(siegel_harness, raw)
    assert record.state is RecipientState.QUARANTINED and record.level is Level.QUARANTINE
    assert harness.sink.to(CITIZEN) == []


async def test_a_clean_message_with_readable_attachments_is_delivered(siegel_harness):
    raw = make_message(to=CITIZEN, body="Guten Tag,\nanbei die Unterlagen.\n", attachments=[
        ("info.pdf", "application/pdf", pdf("keine Nummer")),
        ("brief.docx", "application/octet-stream", docx("keine Nummer")),
        ("liste.csv", "text/csv", b"a;b\r\n1;2\r\n")])
    harness, record = await _run(siegel_harness, raw)
    assert record.state is RecipientState.DELIVERED, record.reasons
    assert len(harness.sink.to(CITIZEN)) == 1


async def test_unreadable_parts_do_not_count_for_internal_recipients(siegel_harness):
    raw = with_attachment("bescheid.pdf", "application/pdf", encrypted_pdf(CUSTOMER))
    _harness, record = await _run(siegel_harness, raw, recipient=COLLEAGUE)
    assert record.state is RecipientState.DELIVERED, record.reasons


async def test_unreadable_is_as_strict_as_the_strictest_rule_by_default(siegel_harness):
    config = {"settings": {"recipient_scope": {"external": "plain"}, "content_rules": {"rules": [
        {"name": "kdnr", "pattern": "KD-\\d+"},
        {"name": "gesundheit", "pattern": "Diagnose", "level": "quarantine"}]}}}
    raw = with_attachment("bescheid.pdf", "application/pdf", encrypted_pdf(CUSTOMER))
    _harness, record = await _run(siegel_harness, raw, config=config)
    assert record.level is Level.QUARANTINE
    assert any("encrypted" in r for r in record.reasons)


async def test_unreadable_level_and_ignored_types_are_settings(siegel_harness):
    rules = {"rules": RULES["content_rules"]["rules"], "ignore_unreadable": ["image/*"]}
    config = {"settings": {"recipient_scope": {"external": "plain"}, "content_rules": rules}}
    picture = with_attachment("logo.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(64))
    _harness, record = await _run(siegel_harness, picture, config=config)
    assert record.state is RecipientState.DELIVERED, record.reasons

    # An encrypted PDF that calls itself a picture is not let go as a picture.
    disguised = with_attachment("logo.png", "image/png", encrypted_pdf(CUSTOMER))
    _harness, record = await _run(siegel_harness, disguised, config=config)
    assert record.state is RecipientState.QUARANTINED
    assert any("image/png (encrypted)" in r for r in record.reasons), record.reasons

    rules = {"rules": [{**RULES["content_rules"]["rules"][0], "level": "quarantine"}],
             "unreadable": "protect"}
    config = {"settings": {"recipient_scope": {"external": "plain"}, "content_rules": rules}}
    _harness, record = await _run(siegel_harness, picture, config=config)
    assert record.level is Level.PROTECT


async def test_without_a_rule_that_reads_the_body_nothing_is_extracted(siegel_harness):
    config = {"settings": {"recipient_scope": {"external": "plain"}, "content_rules": {"rules": [
        {"name": "betreff", "pattern": "Az\\.", "where": ["subject"]}]}}}
    raw = with_attachment("bescheid.pdf", "application/pdf", encrypted_pdf(CUSTOMER))
    _harness, record = await _run(siegel_harness, raw, config=config)
    assert record.state is RecipientState.DELIVERED, record.reasons


EXPLAIN_CONFIG = """
[store]
path = "var/siegel.db"
key_file = "keys/store.key"

[settings.relay]
host = "127.0.0.1"
port = 10026
tls = "none"

[tenants.landkreis]
name = "Landkreis Göttingen – Jobcenter"
domains = ["landkreisgoettingen.de"]
plugin_set = "district"
"""


def test_explain_says_what_was_read_and_what_could_not_be(tmp_path):
    import json

    from click.testing import CliRunner

    from siegel.cli import cli
    from siegel.crypto import create_key_file

    config = tmp_path / "siegel.toml"
    config.write_text(EXPLAIN_CONFIG, encoding="utf-8")
    create_key_file(tmp_path / "keys" / "store.key")
    eml = tmp_path / "message.eml"
    eml.write_bytes(make_message(
        sender="sb@landkreisgoettingen.de", to=[CITIZEN, "kollege@goettingen.de"],
        body="Guten Tag,\nanbei zwei Schreiben.\n",
        attachments=[("info.pdf", "application/pdf", pdf("ohne Nummer")),
                     ("bescheid.pdf", "application/pdf", encrypted_pdf(CUSTOMER))]))
    result = CliRunner().invoke(cli, ["explain", "--config", str(config), str(eml), "--json",
                                      "--lang", "en"])
    assert result.exit_code == 0, result.output
    external, internal = json.loads(result.output)["recipients"]
    assert external["verdict"] == "protect"
    assert external["outcome"] == "protect with password_pdf"
    assert external["reading"] == {
        "parts_read": 1, "attachments": 2, "attachments_extracted": 1,
        "unreadable": [{"part": "3", "content_type": "application/pdf", "problem": "encrypted",
                        "reason": "encrypted"}]}
    assert "content.unreadable" in {f["code"] for f in external["findings"]}
    # The district's rules are for external recipients: nothing is extracted for a colleague.
    assert internal["verdict"] == "plain"
    assert internal["reading"]["attachments_extracted"] is None

    result = CliRunner().invoke(cli, ["explain", "--config", str(config), str(eml),
                                      "--lang", "en"])
    assert result.exit_code == 0, result.output
    assert ("reading: 1 part read, 1 attachment text extracted, 1 part unreadable: "
            "3 application/pdf (encrypted)") in result.output
    assert "reading: 1 part read, 2 attachments not read (no rule needs them)" in result.output
    german = CliRunner().invoke(cli, ["explain", "--config", str(config), str(eml)]).output
    assert "gelesen: 1 Teil gelesen, 1 Anhang mit Text gelesen, 1 Teil nicht lesbar: " \
        "3 application/pdf (verschlüsselt)" in german
    assert CUSTOMER not in german


class AlsoReadsAttachments:
    """A second classifier that asks for the attachment text, as a tenant's own plugin may."""

    def __init__(self) -> None:
        self.seen: list[object] = []

    @hookimpl
    def siegel_register_classifiers(self):
        async def classify(ctx):
            if not ctx.is_internal:
                self.seen.append(await ctx.attachment_text(ctx.settings("content_rules").limits))
        return [Classifier(name="also_reads", classify=classify)]


async def test_attachments_are_read_once_per_copy_and_only_when_a_rule_could_decide(
        siegel_harness, monkeypatch):
    calls: list[int] = []
    real = extract.extract

    async def counting(attachments, limits):
        calls.append(len(attachments))
        return await real(attachments, limits)

    monkeypatch.setattr(extract, "extract", counting)
    rules = {"rules": [*RULES["content_rules"]["rules"], {"name": "az", "pattern": "AZ-\\d+"}]}
    config = {"settings": {"recipient_scope": {"external": "plain"}, "content_rules": rules}}
    raw = make_message(to=[CITIZEN, COLLEAGUE], body="Guten Tag", attachments=[
        ("a.pdf", "application/pdf", pdf(CUSTOMER)), ("b.docx", "application/msword",
                                                      docx("AZ-1"))])
    also = AlsoReadsAttachments()
    async with siegel_harness(config=config, plugins=[("also", also)]) as harness:
        await harness.send(raw, mail_from=SENDER, rcpt_to=[CITIZEN])
        await harness.process()
        # The citizen's copy: two rules and a second classifier, one reading of both files.
        assert calls == [2]
        [extraction] = also.seen
        assert CUSTOMER in extraction.text and "AZ-1" in extraction.text

        # The colleague's copy: no rule applies to internal recipients, nothing is read.
        await harness.send(raw, mail_from=SENDER, rcpt_to=[COLLEAGUE])
        await harness.process()
        assert calls == [2]


@pytest.mark.parametrize(("settings", "expected"), [
    ({"unreadable": "maybe"}, "settings.content_rules.unreadable"),
    ({"ignore_unreadable": ["Image/PNG"]}, "settings.content_rules.ignore_unreadable: "
                                           "'Image/PNG' is not a content type"),
    ({"attachment_seconds": 0}, "settings.content_rules.attachment_seconds: must be greater "
                                "than 0"),
    ({"attachment_max_mb": -1}, "settings.content_rules.attachment_max_mb: must be greater "
                                "than 0"),
])
def test_bad_reading_settings_name_their_key(tmp_path, settings, expected):
    from siegel.config import ConfigError, config_from_mapping
    from siegel.manager import PluginRegistry

    data = {"settings": {"content_rules": settings},
            "tenants": {"t": {"name": "T", "domains": ["t.example"], "plugin_set": "baseline",
                              "plugins": ["content_rules"]}}}
    with pytest.raises(ConfigError) as info:
        config_from_mapping(data, PluginRegistry.load(), source="siegel.toml", base_dir=tmp_path)
    assert any(expected in problem for problem in info.value.problems), info.value.problems


def test_the_extra_readings_do_not_fill_the_text_limit_of_ordinary_mail():
    """The plausible readings (charsets, base64, quoted-printable) are made only where a part
    may be mislabelled: 4 MB of ordinary text with a long word in every line, or an HTML mail
    with a large inline picture, stay within the text limit and count as read."""
    import os

    from siegel import mime
    from siegel.model import parse_email

    text = ("Grüße aus dem Bürgerbüro zur Datenschutzgrundverordnungsanpassung\n" * 60000)
    picture = base64.encodebytes(os.urandom(1_500_000))
    for raw in (single("text/plain; charset=utf-8", text.encode(), encoding="8bit"),
                single("text/html; charset=utf-8", b'<p>Hallo</p><img src="data:image/png;base64,'
                       + picture + b'">')):
        reading = mime.read_message(parse_email(raw))
        assert not reading.unreadable, reading.unreadable
        assert len(reading.text) < 2 * len(raw)
