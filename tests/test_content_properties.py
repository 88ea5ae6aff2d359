"""Property: a customer number in any readable part, with any transfer encoding and charset, in any
structure (mixed, alternative, related, attached messages), is in the text the content rules
search; and reading never raises, whatever the structure. Through a real pipeline, with PDF and
office attachments under any label, such a message never reaches the citizen."""

from __future__ import annotations

import asyncio
import base64
import quopri

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from content_samples import CUSTOMER, RULES, docx, odt, pdf, xlsx, zipped
from siegel import Level, RecipientState, mime
from siegel.model import parse_email

KINDS = ["text/plain", "text/csv", "text/html", "text/enriched", "text/x-unbekannt", None,
         "application/json", "text/calendar", "text/markdown"]
CHARSETS = ["utf-8", "iso-8859-1", "iso-8859-15", "windows-1252", "utf-16", "koi8-r", "us-ascii",
            "utf-7", None]
ENCODINGS = ["7bit", "8bit", "quoted-printable", "base64", None]
CONFIG = {"settings": {"recipient_scope": {"external": "plain"}, **RULES}}
FILLER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz äöüß.,;\n", max_size=60)


def _wrapped(kind: str | None, text: str, split: int) -> str:
    if kind == "text/html":
        return f"<p>{text[:split]}<b>{text[split:]}</b></p>"
    if kind == "text/enriched":
        return f"<bold>{text[:split]}</bold>{text[split:]}"
    return text


@st.composite
def leaf(draw: st.DrawFn, carries: bool) -> bytes:
    kind = draw(st.sampled_from(KINDS))
    charset = draw(st.sampled_from(CHARSETS))
    encoding = draw(st.sampled_from(ENCODINGS))
    before, after = draw(FILLER), draw(FILLER)
    number = _wrapped(kind, CUSTOMER, draw(st.integers(1, len(CUSTOMER) - 1))) if carries else ""
    text = f"{before} {number} {after}".replace("\n", "\r\n")
    body = text.encode(charset or "us-ascii", "replace" if charset in (None, "us-ascii",
                                                                      "koi8-r") else "strict")
    if charset == "utf-16" and encoding not in ("base64",):
        encoding = "base64"  # UTF-16 has no line structure: only base64 carries it
    if encoding in ("7bit", None) and not body.isascii():
        encoding = "8bit"
    if encoding == "base64":
        body = base64.encodebytes(body).replace(b"\n", b"\r\n")
    elif encoding == "quoted-printable":
        body = quopri.encodestring(body).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    headers = []
    if kind is not None:
        headers.append(f"Content-Type: {kind}" + (f"; charset={charset}" if charset else ""))
    if encoding is not None:
        headers.append(f"Content-Transfer-Encoding: {encoding}")
    if draw(st.booleans()):
        headers.append("Content-Disposition: attachment; filename=teil.txt")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


@st.composite
def entity(draw: st.DrawFn, carries: bool, depth: int = 0) -> bytes:
    shape = draw(st.sampled_from(["leaf", "multipart", "message"] if depth < 3 else ["leaf"]))
    if shape == "leaf":
        return draw(leaf(carries))
    if shape == "message":
        inner = draw(entity(carries, depth + 1))
        subject = draw(FILLER).replace("\n", " ")
        return (b"Content-Type: message/rfc822\r\n\r\nFrom: a@example.org\r\nSubject: "
                + subject.encode("ascii", "replace") + b"\r\nMIME-Version: 1.0\r\n" + inner)
    count = draw(st.integers(1, 3))
    which = draw(st.integers(0, count - 1))
    boundary = f"b{depth}{draw(st.integers(0, 10**6))}"
    subtype = draw(st.sampled_from(["mixed", "alternative", "related", "x-unbekannt"]))
    children = [draw(entity(carries and index == which, depth + 1)) for index in range(count)]
    body = b"".join(f"--{boundary}\r\n".encode() + child + b"\r\n" for child in children)
    return (f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()
            + body + f"--{boundary}--\r\n".encode())


def message(root: bytes) -> bytes:
    return b"From: sb@behoerde.example\r\nTo: b@example.net\r\nSubject: x\r\nMIME-Version: 1.0\r\n" \
        + root


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entity(True))
def test_a_customer_number_in_any_readable_part_is_read(root):
    parsed = parse_email(message(root))
    reading = mime.read_message(parsed)
    assert CUSTOMER in reading.text, (message(root), reading)
    assert not reading.unreadable, reading.unreadable


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from([b"", b"Content-Type: multipart/mixed; "
                                                   b"boundary=x\r\n\r\n--x\r\n"]))
def test_reading_never_raises(data, prefix):
    reading = mime.read_message(parse_email(message(prefix + data)))
    assert isinstance(reading.text, str)


DOCUMENTS = {"pdf": lambda: pdf(CUSTOMER), "docx": lambda: docx(CUSTOMER),
             "xlsx": lambda: xlsx(CUSTOMER), "odt": lambda: odt(CUSTOMER),
             "zip": lambda: zipped("akte.pdf", pdf(CUSTOMER))}
LABELS = ["application/octet-stream", "application/pdf", "application/zip", "image/png",
          "application/vnd.oasis.opendocument.text"]


@st.composite
def document_leaf(draw: st.DrawFn) -> bytes:
    data = DOCUMENTS[draw(st.sampled_from(sorted(DOCUMENTS)))]()
    label = draw(st.sampled_from(LABELS))
    name = draw(st.sampled_from(["anlage", "bescheid.pdf", "brief.docx", "x.bin"]))
    return (f"Content-Type: {label}\r\nContent-Transfer-Encoding: base64\r\n"
            f'Content-Disposition: attachment; filename="{name}"\r\n\r\n').encode() \
        + base64.encodebytes(data).replace(b"\n", b"\r\n")


@st.composite
def carrying_message(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        root = draw(entity(True))
    else:
        filler = draw(entity(False))
        boundary = "outer-boundary"
        root = (f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n--{boundary}\r\n'
                .encode() + filler + f"\r\n--{boundary}\r\n".encode() + draw(document_leaf())
                + f"\r\n--{boundary}--\r\n".encode())
    return message(root)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw=carrying_message())
def test_through_the_pipeline_a_carried_number_never_leaves_plain(siegel_harness, raw):
    async def run() -> tuple[object, list[object]]:
        async with siegel_harness(config=CONFIG) as harness:
            message_id = await harness.send(raw, mail_from="sb@behoerde.example",
                                            rcpt_to=["b@example.net"])
            await harness.process()
            [record] = await harness.store.recipients(message_id)
            return record, [m for m in harness.sink.to("b@example.net")]

    record, delivered = asyncio.run(run())
    assert record.state is RecipientState.QUARANTINED, record.reasons
    assert record.level is not None and record.level >= Level.PROTECT
    assert delivered == []
    assert any("kundennummer" in r for r in record.reasons), record.reasons
