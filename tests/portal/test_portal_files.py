"""Uploads are judged by their bytes, not their names; downloads are saved, never rendered."""

from __future__ import annotations

import io

import pytest
from starlette.datastructures import Headers, UploadFile

from siegel.portal import (
    UploadLimits,
    UploadRefused,
    download_response,
    read_uploads,
    safe_filename,
)

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20


def upload(name: str, content: bytes, claimed: str = "application/pdf") -> UploadFile:
    return UploadFile(io.BytesIO(content), filename=name,
                      headers=Headers({"content-type": claimed}))


async def test_files_are_recognised_by_content_whatever_they_claim() -> None:
    [found] = await read_uploads([upload("bild.pdf", PNG)], UploadLimits())
    assert (found.filename, found.content_type, found.content) == ("bild.pdf", "image/png", PNG)
    with pytest.raises(UploadRefused) as refused:
        await read_uploads([upload("rechnung.pdf", b"<html><script>x</script>")], UploadLimits())
    assert "rechnung.pdf" in refused.value.text.de


async def test_limits_on_count_size_and_type() -> None:
    with pytest.raises(UploadRefused, match="at most 1 files"):
        await read_uploads([upload("a.pdf", PDF), upload("b.pdf", PDF)], UploadLimits(max_files=1))
    with pytest.raises(UploadRefused, match="larger than 1 KB"):
        await read_uploads([upload("a.pdf", PDF + b"x" * 2000)], UploadLimits(max_bytes=1024))
    with pytest.raises(UploadRefused, match=r"not an allowed file \(PDF\)"):
        await read_uploads([upload("a.png", PNG)], UploadLimits(types=("application/pdf",)))
    with pytest.raises(ValueError, match="no content check"):
        UploadLimits(types=("text/html",))
    assert await read_uploads(["not a file", upload("", b"")], UploadLimits()) == []


@pytest.mark.parametrize(("name", "expected"), [
    ("../../etc/passwd", "passwd"), ("C:\\Users\\x\\bericht.pdf", "bericht.pdf"),
    ("a\r\nContent-Type: text\x00x.pdf", "a_Content-Type_ text_x.pdf"), ("...", "anhang"),
    ("Überweisung «März».pdf", "Überweisung «März».pdf"),
])
def test_file_names_lose_paths_and_dangerous_characters(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


def test_downloads_are_attachments_and_unsafe_types_become_octet_streams() -> None:
    response = download_response(b"<svg onload=alert(1)>", 'bild"; x=.svg', "image/svg+xml")
    assert response.media_type == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="bild_ x_.svg"; ')
    assert "filename*=UTF-8''bild_%20x%3D.svg" in disposition
    kept = download_response(PDF, "Bescheid März.pdf", "application/pdf; name=x")
    assert kept.media_type == "application/pdf"
    assert kept.headers["content-disposition"] == (
        "attachment; filename=\"Bescheid Marz.pdf\"; filename*=UTF-8''Bescheid%20M%C3%A4rz.pdf")
