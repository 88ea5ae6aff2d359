"""Files that cross the portal: uploads checked by their content, downloads that never render.

Uploads (a reply's attachments) are recognised by their first bytes (:data:`FILE_SIGNATURES`),
never by the name or the type the browser claims: a ``.pdf`` that is an HTML page is refused.
Downloads (a message's attachments) are always saved, never shown in the portal's origin:
``Content-Disposition: attachment`` with an RFC 6266 file name (an ASCII fallback and the UTF-8
name), ``X-Content-Type-Options: nosniff``, and ``application/octet-stream`` unless the type is
one a browser cannot run (:data:`SAFE_DOWNLOAD_TYPES`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from urllib.parse import quote

import attrs
from starlette.datastructures import UploadFile
from starlette.responses import Response

from siegel.model import Text

#: Attachments the clerk's side can open safely; recognised by their first bytes.
FILE_SIGNATURES: Mapping[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
}
#: Types a download keeps; everything else is sent as ``application/octet-stream``. None of
#: these can run script in the portal's origin (SVG, HTML and XML can, so they are not here).
SAFE_DOWNLOAD_TYPES = frozenset({*FILE_SIGNATURES, "image/gif", "text/plain", "text/csv"})
MAX_FILE_NAME = 120
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|;]+')


@attrs.frozen(kw_only=True)
class UploadLimits:
    """What a form accepts as attachments."""

    max_files: int = 5
    #: Largest single file; the whole request is also capped by ``max_form_bytes``.
    max_bytes: int = 1024 * 1024
    #: Content types accepted, each a key of :data:`FILE_SIGNATURES`.
    types: tuple[str, ...] = tuple(FILE_SIGNATURES)

    def __attrs_post_init__(self) -> None:
        unknown = [t for t in self.types if t not in FILE_SIGNATURES]
        if unknown:
            raise ValueError(f"no content check for file types {', '.join(unknown)}; "
                             f"known: {', '.join(FILE_SIGNATURES)}")


@attrs.frozen(kw_only=True)
class Upload:
    filename: str
    content_type: str
    content: bytes = attrs.field(repr=False)


class UploadRefused(ValueError):
    """An upload the limits do not allow; ``text`` says why, in both languages."""

    def __init__(self, text: Text) -> None:
        super().__init__(text.en)
        self.text = text


def safe_filename(name: str | None, default: str = "anhang") -> str:
    """A file name without a path, control characters or characters Windows refuses."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE_NAME.sub("_", unicodedata.normalize("NFC", base)).strip(" .")
    return base[:MAX_FILE_NAME] or default


def content_type_of(content: bytes, allowed: Iterable[str] = FILE_SIGNATURES) -> str | None:
    """The allowed type whose signature ``content`` starts with, or ``None``."""
    return next((kind for kind in allowed
                 if any(content.startswith(magic) for magic in FILE_SIGNATURES[kind])), None)


async def read_uploads(uploads: Iterable[object], limits: UploadLimits) -> list[Upload]:
    """The chosen files of a form's file field, checked by content and size.

    Raises :class:`UploadRefused` for the first file (or count) the limits do not allow.
    """
    files = [u for u in uploads if isinstance(u, UploadFile) and u.filename]
    if len(files) > limits.max_files:
        raise UploadRefused(Text(de=f"Bitte wählen Sie höchstens {limits.max_files} Dateien.",
                                 en=f"Please choose at most {limits.max_files} files."))
    found = []
    for upload in files:
        name = safe_filename(upload.filename)
        content = await upload.read(limits.max_bytes + 1)
        if len(content) > limits.max_bytes:
            kb = limits.max_bytes // 1024
            raise UploadRefused(Text(de=f"Die Datei {name} ist größer als {kb} KB.",
                                     en=f"The file {name} is larger than {kb} KB."))
        kind = content_type_of(content, limits.types)
        if kind is None:
            names = ", ".join(t.split("/")[-1].upper() for t in limits.types)
            raise UploadRefused(Text(de=f"Die Datei {name} ist keine erlaubte Datei ({names}).",
                                     en=f"The file {name} is not an allowed file ({names})."))
        found.append(Upload(filename=name, content_type=kind, content=content))
    return found


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name as RFC 5987 ``filename*``."""
    name = safe_filename(filename)
    fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", fallback).strip() or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def download_response(content: bytes, filename: str, content_type: str | None) -> Response:
    """A response the browser saves and never renders, whatever ``content`` holds."""
    kind = (content_type or "").split(";")[0].strip().lower()
    media_type = kind if kind in SAFE_DOWNLOAD_TYPES else "application/octet-stream"
    return Response(content, media_type=media_type, headers={
        "content-disposition": content_disposition(filename),
        "x-content-type-options": "nosniff",
    })
