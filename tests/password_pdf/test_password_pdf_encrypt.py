"""Encryption: what qpdf, poppler and pyHanko see in the files, and the key derivation."""

from __future__ import annotations

import io
import re
import secrets
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from password_pdf_helpers import ATTACHMENTS, PASSWORD, make_message, run
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.crypt import AuthStatus
from pyhanko.pdf_utils.crypt import _saslprep as pyhanko_saslprep
from pyhanko.pdf_utils.crypt import standard as pyhanko_standard
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import copy_into_new_writer
from reportlab.pdfgen.canvas import Canvas

from siegel.plugins.password_pdf import (
    Letterhead,
    PasswordRejected,
    RecipientKey,
    derive_recipient_key,
    encrypt_pdf,
    render_encrypted,
    render_message,
    verify_password,
)
from siegel.plugins.password_pdf import encrypt as encrypt_module
from siegel.plugins.password_pdf.encrypt import MAX_PASSWORD_BYTES

ACTION_KEY = re.compile(rb"/(JavaScript|JS|OpenAction|AA)(?=[\s/<>\[\]()%]|$)")


def decrypted_qdf(path: Path, tmp_path: Path, password: str = PASSWORD) -> bytes:
    out = tmp_path / f"{path.stem}-qdf.pdf"
    run("qpdf", "--qdf", "--object-streams=disable", f"--password={password}", path, out)
    return out.read_bytes()


def encrypt_dict(data: bytes) -> generic.DictionaryObject:
    reader = PdfFileReader(io.BytesIO(data))
    assert reader.encrypted
    return reader.encrypt_dict


def file_key(data: bytes, password: str = PASSWORD) -> bytes:
    reader = PdfFileReader(io.BytesIO(data))
    assert reader.decrypt(password).status == AuthStatus.USER
    return reader.security_handler.get_file_encryption_key()


# ------------------------------------------------------------------------- qpdf


def test_qpdf_shows_revision_6_and_aesv3_everywhere(encrypted_pdf: Path) -> None:
    out = run("qpdf", "--show-encryption", f"--password={PASSWORD}", encrypted_pdf).stdout
    lines = set(out.splitlines())
    assert "R = 6" in lines
    assert "Supplied password is user password" in lines
    assert "stream encryption method: AESv3" in lines
    assert "string encryption method: AESv3" in lines
    assert "file encryption method: AESv3" in lines
    # The recipient may print and copy; nobody got owner rights with their password.
    assert "print high resolution: allowed" in lines
    assert "extract for any purpose: allowed" in lines
    assert "modify anything: not allowed" in lines


def test_qpdf_check_passes(encrypted_pdf: Path) -> None:
    result = run("qpdf", "--check", f"--password={PASSWORD}", encrypted_pdf)
    assert "PDF Version: 2.0" in result.stdout
    assert "No syntax or stream encoding errors found" in result.stdout


@pytest.mark.parametrize("password", ["WRONG", "", PASSWORD.upper(), PASSWORD[:-1]])
def test_wrong_password_is_refused(encrypted_pdf: Path, tmp_path: Path, password: str) -> None:
    result = run(
        "qpdf",
        "--decrypt",
        f"--password={password}",
        encrypted_pdf,
        tmp_path / "x.pdf",
        check=False,
    )
    assert result.returncode == 2
    assert "invalid password" in result.stderr
    assert not (tmp_path / "x.pdf").exists()


def test_poppler_refuses_wrong_password(encrypted_pdf: Path) -> None:
    result = run("pdftotext", "-upw", "WRONG", encrypted_pdf, "-", check=False)
    assert result.returncode != 0
    assert "Müller" not in result.stdout


def test_encryption_dictionary_is_r6_aesv3_with_metadata_encrypted(encrypted_pdf: Path) -> None:
    entries = encrypt_dict(encrypted_pdf.read_bytes())
    assert entries["/Filter"] == "/Standard"
    assert (entries["/V"], entries["/R"]) == (5, 6)
    assert entries["/EncryptMetadata"] is True or entries[
        "/EncryptMetadata"
    ] == generic.BooleanObject(True)
    assert entries["/StmF"] == "/StdCF" and entries["/StrF"] == "/StdCF"
    assert entries.get("/EFF", "/StdCF") == "/StdCF"
    assert entries["/CF"]["/StdCF"]["/CFM"] == "/AESV3"
    assert all(len(entries[k].original_bytes) == 48 for k in ("/U", "/O"))
    assert all(len(entries[k].original_bytes) == 32 for k in ("/UE", "/OE"))


# ------------------------------------------------------------ one key, many PDFs


def test_one_recipient_key_opens_many_pdfs_with_different_file_keys(
    letterhead: Letterhead, recipient_key: RecipientKey, write_pdf: Callable[[bytes, str], Path]
) -> None:
    first = render_encrypted(make_message(), letterhead=letterhead, key=recipient_key)
    second = encrypt_pdf(
        render_message(make_message("Ein anderer Text."), letterhead=letterhead), recipient_key
    )
    for name, data in (("first.pdf", first), ("second.pdf", second)):
        run("qpdf", "--check", f"--password={PASSWORD}", write_pdf(data, name))

    one, two = encrypt_dict(first), encrypt_dict(second)
    assert one["/U"].original_bytes == two["/U"].original_bytes == recipient_key.u_entry
    assert one["/UE"].original_bytes != two["/UE"].original_bytes
    assert one["/O"].original_bytes != two["/O"].original_bytes  # fresh owner password
    assert file_key(first) != file_key(second)


def test_ue_is_the_file_key_encrypted_under_the_stored_ue_key(
    encrypted_pdf: Path, recipient_key: RecipientKey
) -> None:
    data = encrypted_pdf.read_bytes()
    ue = encrypt_dict(data)["/UE"].original_bytes
    decryptor = Cipher(algorithms.AES(recipient_key.ue_key), modes.CBC(bytes(16))).decryptor()
    assert decryptor.update(ue) + decryptor.finalize() == file_key(data)


def test_owner_password_is_not_the_user_password_nor_empty(encrypted_pdf: Path) -> None:
    data = encrypted_pdf.read_bytes()
    for attempt, expected in ((PASSWORD, AuthStatus.USER), ("", AuthStatus.FAILED)):
        reader = PdfFileReader(io.BytesIO(data))
        assert reader.decrypt(attempt).status == expected


# ---------------------------------------------------------------- confidentiality


def _encodings(text: str) -> list[bytes]:
    forms = [text.encode("utf-8"), text.encode("utf-16-be")]
    if all(ord(ch) < 256 for ch in text):
        forms.append(text.encode("latin-1"))  # what PDFDocEncoding uses for these letters
    return forms


@pytest.mark.parametrize(
    "secret",
    [
        "Gebührenbescheid",
        "Sondernutzung",
        "Ordnungsamt",
        "Quittungsnummer 4711",
        "Straßenreinigung",
        "Bescheid_Müller",
        "Lageplan",
        "Заявление",
        "joerg.mueller",
        "Willy-Brandt-Platz",
    ],
)
def test_raw_file_holds_no_plaintext(encrypted_pdf: Path, secret: str) -> None:
    raw = encrypted_pdf.read_bytes()
    for form in _encodings(secret):
        assert form not in raw


def test_raw_file_holds_no_plaintext_attachment_bytes_or_metadata(encrypted_pdf: Path) -> None:
    raw = encrypted_pdf.read_bytes()
    for _, _, data in ATTACHMENTS:
        assert data[:64] not in raw
    for marker in (b"xmpmeta", b"ReportLab", b"DejaVu Sans", b"(de-DE)"):
        assert marker not in raw


def test_decrypted_file_really_holds_the_text(encrypted_pdf: Path, tmp_path: Path) -> None:
    """Counter-check for the test above: the words are there once decrypted."""
    text = run("pdftotext", "-upw", PASSWORD, encrypted_pdf, "-").stdout
    assert "Sondernutzung" in text and "Quittungsnummer 4711" in text


# ------------------------------------------------------------------ no actions


def test_rendered_pdf_has_no_javascript_or_actions(encrypted_pdf: Path, tmp_path: Path) -> None:
    qdf = decrypted_qdf(encrypted_pdf, tmp_path)
    assert b"/Type /Catalog" in qdf  # really decrypted and uncompressed
    assert ACTION_KEY.findall(qdf) == []


def test_html_mail_with_script_gives_text_and_no_actions(
    letterhead: Letterhead,
    recipient_key: RecipientKey,
    write_pdf: Callable[[bytes, str], Path],
    tmp_path: Path,
) -> None:
    message = make_message(attachments=False)
    message.set_content(
        "<html><head><script>app.alert('pwned');this.print()</script>"
        "<style>p{color:red}</style></head><body onload=\"alert('onload')\">"
        '<p>Guten Tag, <a href="javascript:alert(1)">hier klicken</a>.</p></body></html>',
        subtype="html",
    )
    path = write_pdf(render_encrypted(message, letterhead=letterhead, key=recipient_key), "h.pdf")
    text = run("pdftotext", "-upw", PASSWORD, path, "-").stdout
    assert "Guten Tag, hier klicken." in text
    for dropped in ("pwned", "alert", "print", "color", "javascript"):
        assert dropped not in text
    qdf = decrypted_qdf(path, tmp_path)
    assert ACTION_KEY.findall(qdf) == []
    assert b"/URI" not in qdf and b"/Annots" not in qdf  # no links at all


def _pdf_with_actions() -> bytes:
    buffer = io.BytesIO()
    canvas = Canvas(buffer)
    canvas.drawString(72, 720, "Hallo")
    canvas.showPage()
    canvas.save()
    writer = copy_into_new_writer(PdfFileReader(io.BytesIO(buffer.getvalue())))
    js = generic.DictionaryObject(
        {
            generic.NameObject("/S"): generic.NameObject("/JavaScript"),
            generic.NameObject("/JS"): generic.TextStringObject("app.alert('x')"),
        }
    )
    writer.root["/OpenAction"] = writer.add_object(js)
    writer.root["/AA"] = generic.DictionaryObject({generic.NameObject("/WC"): js})
    writer.root["/Names"] = generic.DictionaryObject(
        {
            generic.NameObject("/JavaScript"): generic.DictionaryObject(
                {
                    generic.NameObject("/Names"): generic.ArrayObject(
                        [generic.TextStringObject("a"), js]
                    )
                }
            )
        }
    )
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    page["/AA"] = generic.DictionaryObject({generic.NameObject("/O"): js})
    page["/Annots"] = generic.ArrayObject(
        [
            generic.DictionaryObject(
                {
                    generic.NameObject("/Type"): generic.NameObject("/Annot"),
                    generic.NameObject("/Subtype"): generic.NameObject("/Link"),
                    generic.NameObject("/Rect"): generic.ArrayObject(
                        [generic.NumberObject(n) for n in (0, 0, 10, 10)]
                    ),
                    generic.NameObject("/A"): js,
                }
            )
        ]
    )
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_encrypt_pdf_strips_actions_from_foreign_pdfs(
    recipient_key: RecipientKey, write_pdf: Callable[[bytes, str], Path], tmp_path: Path
) -> None:
    plain = write_pdf(_pdf_with_actions(), "actions.pdf")
    before = decrypted_qdf(plain, tmp_path)
    assert {m.decode() for m in ACTION_KEY.findall(before)} == {
        "JavaScript",
        "JS",
        "OpenAction",
        "AA",
    }

    encrypted = write_pdf(encrypt_pdf(plain.read_bytes(), recipient_key), "encrypted.pdf")
    after = decrypted_qdf(encrypted, tmp_path)
    assert b"(Hallo)" in after
    assert ACTION_KEY.findall(after) == []


def test_encrypt_pdf_rejects_encrypted_or_broken_input(
    encrypted_pdf: Path, recipient_key: RecipientKey
) -> None:
    with pytest.raises(ValueError, match="already encrypted"):
        encrypt_pdf(encrypted_pdf.read_bytes(), recipient_key)
    with pytest.raises(ValueError, match="not a readable PDF"):
        encrypt_pdf(b"not a pdf at all", recipient_key)


# --------------------------------------------------------------- key derivation


def test_hash_matches_pyhankos_reference_implementation() -> None:
    # pyHanko's private helpers serve only as an independent reference here.
    for _ in range(5):
        password = secrets.token_bytes(secrets.randbelow(127) + 1)
        salt = secrets.token_bytes(8)
        u_entry = secrets.token_bytes(48)
        assert encrypt_module._hash_2b(password, salt) == pyhanko_standard._r6_hash_algo(
            password, salt
        )
        assert encrypt_module._hash_2b(password, salt, u_entry) == pyhanko_standard._r6_hash_algo(
            password, salt, u_entry
        )


@pytest.mark.parametrize(
    "password",
    ["Passwort", "Grüße €", "Mu\u0308ller-Straße", "пароль 2025", "\u05e9\u05dc\u05d5\u05dd"],
)
def test_saslprep_matches_pyhanko(password: str) -> None:
    assert encrypt_module._saslprep(password) == pyhanko_saslprep.saslprep(password)


def test_recipient_key_is_what_the_reader_validates(recipient_key: RecipientKey) -> None:
    pw = PASSWORD.encode("utf-8")
    hash_, validation_salt, key_salt = (
        recipient_key.u_entry[:32],
        recipient_key.u_entry[32:40],
        recipient_key.u_entry[40:],
    )
    assert pyhanko_standard._r6_hash_algo(pw, validation_salt) == hash_
    assert pyhanko_standard._r6_hash_algo(pw, key_salt) == recipient_key.ue_key


def test_each_derivation_uses_fresh_salts() -> None:
    one, two = derive_recipient_key("gleiches Passwort"), derive_recipient_key("gleiches Passwort")
    assert one.u_entry != two.u_entry and one.ue_key != two.ue_key


def test_verify_password(recipient_key: RecipientKey) -> None:
    assert verify_password(recipient_key, PASSWORD)
    assert not verify_password(recipient_key, PASSWORD + "x")
    assert not verify_password(recipient_key, "")


def test_decomposed_umlauts_are_the_same_password() -> None:
    key = derive_recipient_key(unicodedata.normalize("NFD", "Müller-Straße"))
    assert verify_password(key, "Müller-Straße")


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("", "empty"),
        ("\u00ad\u200b", "empty"),  # only characters SASLprep maps to nothing
        ("ﬁsch-Passwort", "treat differently"),  # ligature: NFKC changes it
        ("Passwort\u00a0mit Leerzeichen", "treat differently"),  # non-ASCII space
        ("Pass\u0007wort", "may not contain"),  # control character
        ("abc\u05d0", "right-to-left"),  # mixed direction
    ],
)
def test_unusable_passwords_are_rejected(password: str, reason: str) -> None:
    with pytest.raises(PasswordRejected, match=reason):
        derive_recipient_key(password)


@pytest.mark.parametrize("password", ["a" * 32, "ä" * 14 + "€!", "€" * 10 + "ab"])
def test_longest_accepted_password_opens_in_qpdf_and_poppler(
    letterhead: Letterhead, write_pdf: Callable[[bytes, str], Path], password: str
) -> None:
    assert len(password.encode()) == MAX_PASSWORD_BYTES
    key = derive_recipient_key(password)
    message = make_message(attachments=False)
    path = write_pdf(render_encrypted(message, letterhead=letterhead, key=key), "long.pdf")
    run("qpdf", "--check", f"--password={password}", path)
    assert "Sondernutzung" in run("pdftotext", "-upw", password, path, "-").stdout


@pytest.mark.parametrize("password", ["a" * 33, "ä" * 17])
def test_longer_passwords_are_rejected(password: str) -> None:
    with pytest.raises(PasswordRejected, match="over 32 bytes"):
        derive_recipient_key(password)


def test_recipient_key_validates_and_hides_its_bytes(recipient_key: RecipientKey) -> None:
    with pytest.raises(ValueError, match="48 bytes"):
        RecipientKey(u_entry=b"x" * 47, ue_key=bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        RecipientKey(u_entry=bytes(48), ue_key="x" * 32)  # type: ignore[arg-type]
    assert recipient_key.ue_key.hex() not in repr(recipient_key)
    assert repr(recipient_key.ue_key) not in repr(recipient_key)
