"""The tenant's optional PAdES signature: poppler's pdfsig verifies it in the encrypted PDF, a
changed byte breaks it, and broken signing settings are refused at load time."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from password_pdf_helpers import ATTACHMENTS, PASSWORD, make_message, run, sha256

from siegel import RecipientState, SettingError
from siegel.plugins.password_pdf import Letterhead, RecipientKey, render_encrypted
from siegel.plugins.password_pdf.signing import PdfSigning
from siegel.plugins.password_pdf.workflow import PasswordPdfSettings, Workflow
from siegel.testing import make_message as make_raw_message

TENANT = "Landkreis Göttingen – Jobcenter"


def _key_and_certificate(kind: str, folder: Path, name: str = TENANT) -> tuple[Path, Path]:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa.generate_private_key(65537, 3072) if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1()))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256()))
    key_file, certificate_file = folder / f"{kind}-{name[:3]}.key", folder / f"{kind}-{name[:3]}.pem"
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_file, certificate_file


def _pdfsig(pdf: Path) -> str:
    result = run("pdfsig", "-upw", PASSWORD, pdf, check=False)
    return result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_the_signature_verifies_in_the_encrypted_pdf(
        kind: str, tmp_path: Path, letterhead: Letterhead, recipient_key: RecipientKey) -> None:
    key_file, certificate_file = _key_and_certificate(kind, tmp_path)
    signing = PdfSigning.load(certificate_file.read_bytes(), key_file.read_bytes())
    pdf = tmp_path / "signed.pdf"
    pdf.write_bytes(render_encrypted(make_message(), letterhead=letterhead, key=recipient_key,
                                     signing=signing))

    shown = _pdfsig(pdf)
    assert "Signature Validation: Signature is Valid." in shown, shown
    assert "Total document signed" in shown
    assert "ETSI.CAdES.detached" in shown  # PAdES
    assert f"Signer Certificate Common Name: {TENANT}" in shown
    encryption = run("qpdf", f"--password={PASSWORD}", "--show-encryption", pdf).stdout
    for expected in ("R = 6", "stream encryption method: AESv3",
                     "string encryption method: AESv3", "file encryption method: AESv3"):
        assert expected in encryption
    assert run("qpdf", "--check", pdf, check=False).returncode != 0  # no password, no content
    detached = tmp_path / "detached"
    detached.mkdir()
    run("pdfdetach", "-upw", PASSWORD, "-saveall", "-o", detached, pdf)
    assert {p.name: sha256(p.read_bytes()) for p in detached.iterdir()} == {
        name: sha256(data) for name, _, data in ATTACHMENTS}


def test_a_changed_byte_breaks_the_signature(
        tmp_path: Path, letterhead: Letterhead, recipient_key: RecipientKey) -> None:
    key_file, certificate_file = _key_and_certificate("ec", tmp_path)
    data = bytearray(render_encrypted(
        make_message(), letterhead=letterhead, key=recipient_key,
        signing=PdfSigning.load(certificate_file.read_bytes(), key_file.read_bytes())))
    # A byte inside the first stream, which the signature covers.
    position = data.index(b"stream\n") + 40
    data[position] ^= 0x01
    pdf = tmp_path / "changed.pdf"
    pdf.write_bytes(bytes(data))
    assert "Signature is Valid" not in _pdfsig(pdf)


def _refused(**settings: str) -> tuple[str, str]:
    with pytest.raises(SettingError) as info:
        PasswordPdfSettings(**settings)  # type: ignore[arg-type]
    return info.value.key, str(info.value)


def test_signing_settings_are_checked_when_the_config_is_loaded(tmp_path: Path) -> None:
    key_file, certificate_file = _key_and_certificate("ec", tmp_path)
    other_key, _ = _key_and_certificate("ec", tmp_path, name="Andere Behörde")
    missing = tmp_path / "missing.pem"
    assert _refused(signing_certificate=str(certificate_file), signing_key=str(other_key)) == (
        "signing_key", "does not belong to the first certificate in signing_certificate")
    assert _refused(signing_certificate=str(certificate_file)) == (
        "signing_certificate", "signing_certificate and signing_key go together")
    key, problem = _refused(signing_certificate=str(key_file), signing_key=str(key_file))
    assert (key, problem.split(" (")[0]) == ("signing_certificate", "no PEM certificate")
    assert _refused(signing_certificate=str(missing), signing_key=str(key_file)) == (
        "signing_certificate", f"{missing}: cannot read: No such file or directory")
    settings = PasswordPdfSettings(signing_certificate=str(certificate_file),
                                   signing_key=str(key_file))
    assert settings.signing is not None
    assert "Göttingen" in settings.signing.subject
    assert PasswordPdfSettings().signing is None


async def test_the_gateway_signs_every_pdf_it_delivers(siegel_harness, tmp_path: Path) -> None:
    key_file, certificate_file = _key_and_certificate("rsa", tmp_path)
    config = {"tenants": {"test": {"plugin_set": "district", "domains": ["behoerde.example"],
                                   "name": TENANT}},
              "portal": {"public_base_url": "https://post.behoerde.example"},
              "settings": {"password_pdf": {"signing_certificate": str(certificate_file),
                                            "signing_key": str(key_file)}}}
    async with siegel_harness(config=config) as harness:
        message_id = await harness.send(make_raw_message(
            to="buerger@example.net", subject="Ihr Bescheid",
            body="Ihre Kundennummer 123A456789: anbei der Bescheid.\n"))
        await harness.process()
        [invitation] = harness.sink.to("buerger@example.net")
        token = re.search(r"/register/(\S+)", invitation.parsed.get_body(("plain",))
                          .get_content()).group(1)
        workflow = Workflow(harness.runtime, harness.config.tenants["test"])
        assert (await workflow.register(token, PASSWORD))[1] == []
        await harness.process()
        assert (await harness.states(message_id))["buerger@example.net"] \
            is RecipientState.DELIVERED
    [carrier] = [m for m in harness.sink.to("buerger@example.net")
                 if m.parsed.get("X-Siegel-Protection")]
    [part] = [p for p in carrier.parsed.iter_attachments() if p.get_filename() == "nachricht.pdf"]
    pdf = tmp_path / "delivered.pdf"
    pdf.write_bytes(part.get_content())
    shown = _pdfsig(pdf)
    assert "Signature Validation: Signature is Valid." in shown, shown
    assert f"Signer Certificate Common Name: {TENANT}" in shown
