"""The encrypted embedded files: attachments written into the PDF a megabyte at a time.

Each attachment travels inside the PDF (EmbeddedFiles name tree and ``/AF``) with its original
name, MIME type and exact bytes, encrypted with the document's AES-256 crypt filter as it is
written, so a large attachment is never held unencrypted in the output.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import unicodedata
import zlib
from collections.abc import Sequence
from typing import Final

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pyhanko.pdf_utils import embed, generic
from pyhanko.pdf_utils.crypt.api import SecurityHandler
from pyhanko.pdf_utils.crypt.filter_mixins import AESCryptFilterMixin
from pyhanko.pdf_utils.misc import PdfWriteError
from pyhanko.pdf_utils.writer import PdfFileWriter

from .message_parts import Attachment, unique_name


def _pdfdoc_key(name: str) -> bytes:
    """The bytes a PDF text string holds for ``name``; name trees sort by these."""
    try:
        return bytes(generic.encode_pdfdocencoding(name))  # type: ignore[no-untyped-call]
    except UnicodeEncodeError:
        return b"\xfe\xff" + name.encode("utf-16-be")


def _legacy_name(name: str) -> str:
    """``/F`` must be PDFDocEncoding-safe for old readers; ``/UF`` carries the real name."""
    try:
        generic.encode_pdfdocencoding(name)  # type: ignore[no-untyped-call]
    except UnicodeEncodeError:
        # "Müller" -> "Muller", letters without an ASCII base -> "_"; the extension stays.
        return "".join(
            ch if " " <= ch <= "~" else "" if unicodedata.combining(ch) else "_"
            for ch in unicodedata.normalize("NFKD", name)
        )
    return name


def _worth_compressing(data: bytes) -> bool:
    sample = data[: 64 * 1024]
    return len(zlib.compress(sample, 1)) < 0.9 * len(sample)


_WRITE_CHUNK_BYTES: Final = 1024 * 1024
_AES_BLOCK_BYTES: Final = 16


class _EmbeddedFile(embed.EmbeddedFileObject):
    """An embedded file that is encrypted piece by piece as it is written, then let go.

    pyHanko encrypts a stream in one piece: it pads the data (a copy), encrypts it (a copy) and
    puts the IV in front (a copy) before writing, and its writer lives on in reference cycles
    holding the data. This object writes the same bytes for the AES-256 crypt filter (a random
    16-byte IV, then AES-256-CBC with PKCS#7 padding, ISO 32000-2 section 7.6.3) a megabyte at a
    time, and drops the content once written. The content is held Flate-compressed when that
    makes it smaller. It can be written once.
    """

    def __init__(self, writer: PdfFileWriter, attachment: Attachment) -> None:
        super().__init__(pdf_writer=writer, mime_type=attachment.mime_type)
        data = attachment.data
        # pyHanko is untyped: its object constructors are untyped calls.
        self["/Params"] = generic.DictionaryObject({  # type: ignore[no-untyped-call]
            generic.NameObject("/Size"): generic.NumberObject(len(data)),  # type: ignore[no-untyped-call]
            generic.NameObject("/CheckSum"): generic.ByteStringObject(
                hashlib.md5(data, usedforsecurity=False).digest()),
        })
        if _worth_compressing(data):
            data = zlib.compress(data)
            self["/Filter"] = generic.NameObject("/FlateDecode")
        self._content: bytes | None = data

    def write_to_stream(
        self,
        stream: io.BytesIO,
        handler: SecurityHandler | None = None,
        container_ref: generic.Reference | None = None,
    ) -> None:
        content, self._content = self._content, None
        if content is None:
            raise PdfWriteError("an embedded file of siegel's renderer can be written only once")
        key = None if handler is None or container_ref is None else _aes256_key(
            handler, container_ref)
        length = len(content)
        if key is not None:
            length = _AES_BLOCK_BYTES + (length // _AES_BLOCK_BYTES + 1) * _AES_BLOCK_BYTES
        self["/Length"] = generic.NumberObject(length)  # type: ignore[no-untyped-call]
        generic.DictionaryObject.write_to_stream(self, stream, handler, container_ref)
        del self["/Length"]
        stream.write(b"\nstream\n")
        if key is None:
            stream.write(content)
        else:
            iv = secrets.token_bytes(_AES_BLOCK_BYTES)
            encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
            padder = padding.PKCS7(8 * _AES_BLOCK_BYTES).padder()
            stream.write(iv)
            view = memoryview(content)
            for start in range(0, len(view), _WRITE_CHUNK_BYTES):
                stream.write(encryptor.update(padder.update(view[start:start + _WRITE_CHUNK_BYTES])))
            stream.write(encryptor.update(padder.finalize()) + encryptor.finalize())
        stream.write(b"\nendstream")


def _aes256_key(handler: SecurityHandler, container_ref: generic.Reference) -> bytes:
    """The key of the AES-256 filter that encrypts embedded files; refuses any other setup
    rather than writing an embedded file unencrypted or differently from the other streams."""
    config = handler.crypt_filter_config
    crypt_filter = handler.get_stream_filter()
    own_filter = config.embedded_file_filter_name  # None: embedded files use the stream filter
    if (
        (own_filter is not None and own_filter != config.stream_filter_name)
        or not isinstance(crypt_filter, AESCryptFilterMixin)
        or crypt_filter.keylen != 32
    ):
        raise PdfWriteError("siegel's renderer embeds files only in AES-256 encrypted documents")
    key = crypt_filter.derive_object_key(container_ref.idnum, container_ref.generation)
    assert isinstance(key, bytes)
    return key


def embed_attachments(writer: PdfFileWriter, attachments: Sequence[Attachment]) -> None:
    taken: set[str] = set()
    specs = []
    for attachment in attachments:
        legacy = unique_name(_legacy_name(attachment.filename), taken)
        specs.append((legacy, attachment))
    # The EmbeddedFiles name tree must be sorted by key; embed_file appends in call order.
    for legacy, attachment in sorted(specs, key=lambda item: _pdfdoc_key(item[0])):
        stream = _EmbeddedFile(writer, attachment)
        embed.embed_file(
            writer,
            embed.FileSpec(
                file_spec_string=legacy,
                file_name=attachment.filename,
                embedded_data=stream,
                af_relationship=generic.NameObject("/Unspecified"),
            ),
        )
    # Open the attachment panel: the citizen should see the files without searching.
    writer.root["/PageMode"] = generic.NameObject("/UseAttachments")
    writer.update_root()  # type: ignore[no-untyped-call]  # pyHanko is untyped
