"""The attachment-text worker: ``python -m siegel.extract_worker MEMORY_BYTES``.

Started by :mod:`siegel.extract`, never by hand (see :mod:`siegel.worker` for the framing). A
request is two frames: ``max_chars`` pickled, then the bytes of one attachment as they are; the
answer is ``(text, problems)``:
the text a recipient could read in it, and problem codes (:data:`siegel.mime.UNREADABLE`) for what
could not be read. The input is untrusted: the parent kills this process when it takes too long,
and it limits its own memory.

What it reads, found by the content (the sender chooses the declared type and name):

- PDF with pypdf (pure Python, the most used PDF library): page text, document information, form
  field values and embedded files. Encrypted (unless the empty password opens it), broken, or
  with pages but no text at all (a scan) counts as unreadable.
- Office Open XML (docx/xlsx/pptx) and OpenDocument (odt/ods/odp) read as what they are: zip
  archives of XML. Every XML part is read (body, headers, footers, comments, notes, shared strings,
  cells, metadata) with the standard library's expat parser; a library per format (python-docx,
  openpyxl, python-pptx, odfpy) would be four dependencies that each read less (python-docx skips
  headers and text boxes) and that we would still have to keep within our limits. Documents with
  a DTD are refused (no entity expansion). Pictures inside documents are not read.
- Zip archives: each member as above, two levels deep, within the size limit; an encrypted
  member is unreadable.
- RTF (control words removed) and anything that decodes as text.
- Everything else (pictures, legacy binary Office files, unknown binaries) cannot be read.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
import sys
import zipfile
from typing import IO
from xml.etree.ElementTree import ParseError, XMLParser

from siegel.readings import encoded_readings
from siegel.worker import limit_memory, read_frame, worker_streams, write_frame

#: Uncompressed bytes that one archive may expand to before it counts as unreadable.
MAX_UNPACKED_BYTES = 200 * 1024 * 1024
MAX_ARCHIVE_MEMBERS = 1000
MAX_DEPTH = 3

_XML_BREAK_AFTER = frozenset({
    "p", "h", "tc", "tr", "c", "si", "row", "table-cell", "table-row", "list-item", "note",
    "comment", "annotation", "title", "subject", "description", "creator", "keyword",
})
# Parts of an office document that hold text: its XML, and the HTML, RTF or text that Word keeps
# as it was pasted (altChunk).
_OFFICE_TEXT_MEMBERS = (".xml", ".htm", ".html", ".mht", ".mhtml", ".txt", ".rtf", ".csv")
_XML_SPACE_AT = frozenset({"tab", "br", "cr", "s", "line-break", "space"})


class _Problems(list[str]):
    def add(self, code: str) -> None:
        if code not in self:
            self.append(code)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


class _XmlText:
    """Character data in document order; paragraph-like elements end a line, so that words in
    separate runs of one paragraph stay joined (``<w:t>123A</w:t><w:t>456789</w:t>``)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def start(self, tag: str, _attrib: dict[str, str]) -> None:
        if _local(tag) in _XML_SPACE_AT:
            self.parts.append(" ")

    def end(self, tag: str) -> None:
        if _local(tag) in _XML_BREAK_AFTER:
            self.parts.append("\n")

    def data(self, data: str) -> None:
        self.parts.append(data)

    def close(self) -> str:
        return "".join(self.parts)


def _xml_text(data: bytes) -> str:
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ValueError("a document type declaration")
    target = _XmlText()
    parser = XMLParser(target=target)  # noqa: S314 (no DTD: checked above; expat, no fetching)
    parser.feed(data)
    return str(parser.close())


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list[int]) -> bytes:
    if info.file_size > budget[0]:
        raise _TooLarge
    with archive.open(info) as member:
        data = member.read(budget[0] + 1)
    if len(data) > budget[0]:
        raise _TooLarge
    budget[0] -= len(data)
    return data


class _TooLarge(Exception):
    pass


def _zip_text(data: bytes, problems: _Problems, depth: int, budget: list[int]) -> str:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        problems.add("damaged")
        return ""
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if len(infos) > MAX_ARCHIVE_MEMBERS:
            problems.add("too-large")
            return ""
        names = {info.filename for info in infos}
        office = "[Content_Types].xml" in names or "mimetype" in names
        texts: list[str] = []
        for info in infos:
            if info.flag_bits & 0x1:
                problems.add("encrypted")
                continue
            name = info.filename.lower()
            if not office:
                texts.append(info.filename)  # the recipient sees the members' names
            elif not (name.endswith(_OFFICE_TEXT_MEMBERS) or "/embeddings/" in name
                      or name.startswith("object")):
                continue  # pictures, fonts, thumbnails, binary parts of a document
            try:
                member = _read_member(archive, info, budget)
            except _TooLarge:
                problems.add("too-large")
                return "\n".join(texts)
            except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError):
                problems.add("damaged")
                continue
            if office and name.endswith(".xml"):
                try:
                    texts.append(_xml_text(member))
                except (ParseError, ValueError):
                    problems.add("damaged")
            elif office and not (name.endswith(_OFFICE_TEXT_MEMBERS)
                                 or member.startswith((b"%PDF", b"PK\x03\x04"))):
                continue  # an embedded OLE object or picture inside a document
            else:
                texts.append(_text(member, problems, depth + 1, budget))
        return "\n".join(texts)


def _pdf_text(data: bytes, problems: _Problems, depth: int, budget: list[int]) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            problems.add("encrypted")
            return ""
        texts = [page.extract_text() or "" for page in reader.pages]
        has_pages = bool(texts)
        page_text = "".join(texts).strip()
        if reader.metadata is not None:
            texts += [str(value) for value in reader.metadata.values()]
        for field in (reader.get_fields() or {}).values():
            value = field.get("/V")
            if value is not None:
                texts.append(str(value))
        for name, contents in reader.attachments.items():
            texts.append(name)
            for content in contents:
                texts.append(_text(content, problems, depth + 1, budget))
    except (PyPdfError, ValueError, TypeError, KeyError, AttributeError, IndexError,
            AssertionError, RecursionError, ZeroDivisionError, OSError):
        problems.add("damaged")
        return ""
    if has_pages and not page_text:
        problems.add("no-text-layer")
    return "\n".join(texts)


_RTF_CONTROL = re.compile(r"\\'([0-9a-fA-F]{2})|\\[a-zA-Z]+-?\d* ?|\\[^a-zA-Z]|[{}]")


def _rtf_text(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return bytes([int(match.group(1), 16)]).decode("cp1252", "replace")
        token = match.group()
        if token.startswith(("\\par", "\\line", "\\tab", "\\cell", "\\row")):
            return "\n"
        return ""
    return _RTF_CONTROL.sub(replace, text)


def _decoded(data: bytes) -> str | None:
    """``data`` as text, or None when it is not text."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    head = data[:8192]
    if b"\x00" in head:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Not UTF-8: text in a legacy 8-bit charset has few control characters.
    controls = sum(1 for byte in head if byte < 32 and byte not in b"\t\r\n\f\x0b\x1a")
    return data.decode("cp1252", "replace") if controls <= len(head) // 100 else None


def _text(data: bytes, problems: _Problems, depth: int, budget: list[int]) -> str:
    if depth > MAX_DEPTH:
        problems.add("too-deep")
        return ""
    if data[:1024].lstrip().startswith(b"%PDF") or b"%PDF-" in data[:1024]:
        return _pdf_text(data, problems, depth, budget)
    if data.startswith(b"PK\x03\x04"):
        return _zip_text(data, problems, depth, budget)
    text = _decoded(data)
    if text is None:
        problems.add("not-text")
        return ""
    # Text that is still base64 or quoted-printable (a mislabelled part) is read decoded too.
    for reading in encoded_readings(data):
        text += "\n" + (_decoded(reading) or reading.decode("cp1252", "replace"))
    if "-----BEGIN PGP MESSAGE-----" in text:
        problems.add("encrypted")
    if text.lstrip().startswith("{\\rtf"):
        return _rtf_text(text)
    return text


def extract(data: bytes, max_chars: int) -> tuple[str, list[str]]:
    """The readable text of an attachment and what could not be read (problem codes)."""
    problems = _Problems()
    try:
        text = _text(data, problems, 0, [MAX_UNPACKED_BYTES])
    except MemoryError:
        return "", ["too-large"]
    except RecursionError:
        return "", ["damaged"]
    if len(text) > max_chars:
        problems.add("too-much-text")
        text = text[:max_chars]
    return text, list(problems)


def _warm_up() -> None:
    import pypdf  # noqa: F401 (loaded once, before the first attachment)


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    _warm_up()
    write_frame(answers, pickle.dumps(("ready", None)))
    while (payload := read_frame(requests)) is not None:
        max_chars = pickle.loads(payload)  # noqa: S301 (our parent)
        data = read_frame(requests)
        if data is None:
            break
        answer = extract(data, max_chars)
        del data
        write_frame(answers, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


def main() -> None:
    memory = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    # Library warnings (pypdf's about a damaged file) name no content, but do not need to be seen.
    logging.basicConfig(level=logging.ERROR)
    requests, answers = worker_streams()
    limit_memory(memory)
    serve(requests, answers)


if __name__ == "__main__":
    main()
