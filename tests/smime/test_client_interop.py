"""What the recipients' programs read (issue 15), measured with the real programs: OpenSSL 3
(``openssl cms``), NSS (``cmsutil``, Thunderbird's library) and GnuPG (``gpgsm``, behind GpgOL and
Kleopatra).

The tables below are the measurement; docs/smime-interop.rst shows the same table. When a newer
NSS or gpgsm reads more, the matrix test fails and names the cell: update both, and reconsider
the ``interoperable`` profile (plugins/smime/profiles.py).

Every gpgsm and NSS run gets its own throwaway home/database (see mail_clients.py for the flags).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import subprocess
from pathlib import Path

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from mail_clients import Nss, gpgsm_home, legacy_p12
from smime_pki import OPENSSL, PrivateKey, key_usage, make_certificate, write_identity

from siegel import RecipientState
from siegel.clock import FrozenClock
from siegel.plugins.smime import (
    ContentCipher,
    EncryptOptions,
    RsaKeyTransport,
    SignaturePadding,
    SignOptions,
    encrypt,
    sign,
    unwrap,
)
from siegel.plugins.smime.plugin import directory_for
from siegel.testing import make_message

TENANT = "stadt@behoerde.example"
RSA_RECIPIENT = "rsa@partner.example"
EC_RECIPIENT = "ec@partner.example"
MARKER = "Kundennummer 123A456789"
CONTENT = b"Content-Type: text/plain; charset=utf-8\r\n\r\nHallo aus dem Test\r\n"
PROGRAMS = ("openssl", "nss", "gpgsm")


@attrs.frozen
class Party:
    address: str
    key: PrivateKey
    cert: x509.Certificate
    cert_path: Path
    key_path: Path


@attrs.frozen
class ClientPki:
    """An RSA root issuing every certificate directly with SHA-256: gpgsm 2.2 refuses a chain
    through the main test PKI's P-384 intermediate ("a 256 bit hash is not valid for a 384 bit
    ECC key")."""

    root: x509.Certificate
    root_path: Path
    tenant: Party
    rsa: Party
    ec: Party


@pytest.fixture(scope="module")
def client_pki(tmp_path_factory: pytest.TempPathFactory) -> ClientPki:
    folder = tmp_path_factory.mktemp("client-pki")
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    root = make_certificate(subject="client test root", key=root_key, issuer=None,
                            issuer_key=root_key, ca=True, key_usage=key_usage(key_cert_sign=True))
    write_identity(folder, "root", root_key, root)

    def party(name: str, address: str, key: PrivateKey) -> Party:
        usage = (key_usage(digital_signature=True, key_encipherment=True)
                 if isinstance(key, rsa.RSAPrivateKey)
                 else key_usage(digital_signature=True, key_agreement=True))
        cert = make_certificate(subject=f"{name} user", key=key, issuer=root, issuer_key=root_key,
                                ca=False, key_usage=usage, email=address,
                                eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION])
        written = write_identity(folder, name, key, cert)
        return Party(address, key, cert, written.cert_path, written.key_path)

    return ClientPki(
        root=root, root_path=folder / "root.pem",
        tenant=party("tenant", TENANT, rsa.generate_private_key(public_exponent=65537,
                                                                key_size=3072)),
        rsa=party("rsa", RSA_RECIPIENT, rsa.generate_private_key(public_exponent=65537,
                                                                 key_size=3072)),
        ec=party("ec", EC_RECIPIENT, ec.generate_private_key(ec.SECP256R1())))


def _openssl(*args: str | Path, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([OPENSSL, *map(str, args)], input=input, capture_output=True,
                          timeout=60)


def decrypts(program: str, der: bytes, party: Party, pki: ClientPki, tmp_path: Path) -> bytes | None:
    """The content ``program`` gets out of ``der`` with ``party``'s key, or None if it fails."""
    if program == "openssl":
        (tmp_path / "in.der").write_bytes(der)
        result = _openssl("cms", "-decrypt", "-binary", "-inform", "DER", "-in",
                          tmp_path / "in.der", "-recip", party.cert_path, "-inkey", party.key_path)
        return result.stdout if result.returncode == 0 else None
    p12 = legacy_p12(party.key, party.cert, [])
    if program == "nss":
        nss = Nss(tmp_path / "nss", pki.root)
        nss.import_identity(p12)
        result = nss.decrypt(der)
        return result.stdout if result.returncode == 0 else None
    with gpgsm_home(pki.root) as gpgsm:
        gpgsm.import_identity(p12)  # crashes for EC keys in gpgsm 2.2: then it cannot decrypt
        result = gpgsm.decrypt(der)
        return result.stdout if result.returncode == 0 else None


def verifies(program: str, signature: bytes, content: bytes, pki: ClientPki, tmp_path: Path
             ) -> bool:
    if program == "openssl":
        (tmp_path / "sig.der").write_bytes(signature)
        (tmp_path / "content").write_bytes(content)
        result = _openssl("cms", "-verify", "-binary", "-inform", "DER", "-in",
                          tmp_path / "sig.der", "-content", tmp_path / "content", "-CAfile",
                          pki.root_path, "-purpose", "smimesign", "-out", tmp_path / "out")
        return result.returncode == 0
    if program == "nss":
        return Nss(tmp_path / "nss", pki.root).verify(signature, content) == "GoodSignature"
    with gpgsm_home(pki.root) as gpgsm:
        return gpgsm.verified(signature, content)


# --- the measured table -----------------------------------------------------------------------

#: (key, content cipher, key management) -> which programs decrypt it. Measured with OpenSSL
#: 3.0.x, NSS 3.87 and gpgsm 2.2.40 (Debian 12).
DECRYPT_TABLE: dict[tuple[str, ContentCipher, RsaKeyTransport | None], dict[str, bool]] = {
    ("rsa", ContentCipher.AES256_GCM, RsaKeyTransport.RSAES_OAEP_SHA256):
        {"openssl": True, "nss": False, "gpgsm": False},
    ("rsa", ContentCipher.AES256_GCM, RsaKeyTransport.RSAES_PKCS1_V15):
        {"openssl": True, "nss": False, "gpgsm": False},
    ("rsa", ContentCipher.AES256_CBC, RsaKeyTransport.RSAES_OAEP_SHA256):
        {"openssl": True, "nss": False, "gpgsm": False},
    ("rsa", ContentCipher.AES256_CBC, RsaKeyTransport.RSAES_PKCS1_V15):
        {"openssl": True, "nss": True, "gpgsm": True},
    ("ec", ContentCipher.AES256_GCM, None): {"openssl": True, "nss": False, "gpgsm": False},
    ("ec", ContentCipher.AES256_CBC, None): {"openssl": True, "nss": False, "gpgsm": False},
}

#: Signature scheme of the signer's key -> which programs verify it.
VERIFY_TABLE: dict[str, dict[str, bool]] = {
    "rsa-pss": {"openssl": True, "nss": True, "gpgsm": True},
    "rsa-pkcs1v15": {"openssl": True, "nss": True, "gpgsm": True},
    "ecdsa-p256": {"openssl": True, "nss": True, "gpgsm": True},
}


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("combination", list(DECRYPT_TABLE), ids=lambda c: "-".join(
    (c[0], c[1].value, c[2].value if c[2] else "ecdh")))
def test_decryption_matrix(client_pki: ClientPki, tmp_path: Path, combination, program: str
                           ) -> None:
    kind, cipher, transport = combination
    party = client_pki.rsa if kind == "rsa" else client_pki.ec
    der = encrypt(CONTENT, [party.cert], options=EncryptOptions(
        content_cipher=cipher, rsa_key_transport=transport or RsaKeyTransport.RSAES_OAEP_SHA256,
        allow_rsa_pkcs1v15=True))
    result = decrypts(program, der, party, client_pki, tmp_path)
    expected = DECRYPT_TABLE[combination][program]
    assert (result == CONTENT) is expected, (
        f"{program} {'now decrypts' if result else 'no longer decrypts'} {combination}: update "
        "DECRYPT_TABLE and docs/smime-interop.rst")


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("scheme", list(VERIFY_TABLE))
def test_signature_matrix(client_pki: ClientPki, tmp_path: Path, scheme: str, program: str
                          ) -> None:
    signer = client_pki.ec if scheme.startswith("ecdsa") else client_pki.rsa
    padding = (SignaturePadding.RSASSA_PKCS1_V15 if scheme == "rsa-pkcs1v15"
               else SignaturePadding.RSASSA_PSS)
    signature = sign(CONTENT, signer.key, signer.cert, options=SignOptions(rsa_padding=padding))
    assert verifies(program, signature, CONTENT, client_pki, tmp_path) is VERIFY_TABLE[scheme][
        program], f"{program} changed for {scheme}: update VERIFY_TABLE and the docs"
    # The same check refuses a changed content, so a "good" above means something.
    assert not verifies(program, signature, CONTENT + b"x", client_pki, tmp_path)


# --- the gateway's output per profile -----------------------------------------------------------

GCM_OAEP = ("2.16.840.1.101.3.4.1.46", "2.16.840.1.101.3.4.1.42", "1.2.840.113549.1.1.7")


def gateway_config(pki: ClientPki, **smime: object) -> dict[str, object]:
    return {"tenants": {"test": {
        "plugin_set": "city", "domains": ["behoerde.example"],
        "settings": {"smime": {"certificate": str(pki.tenant.cert_path),
                               "private_key": str(pki.tenant.key_path),
                               "trust_anchors": [str(pki.root_path)], "revocation": "off",
                               **smime}}}}}


def now() -> FrozenClock:
    return FrozenClock(dt.datetime.now(dt.UTC))


def split_signed(entity: bytes) -> tuple[bytes, bytes]:
    """The signed content and the DER signature of a multipart/signed entity, byte for byte."""
    header, _, body = entity.partition(b"\r\n\r\n")
    match = re.search(rb'boundary="([^"]+)"', header)
    assert match, header
    delimiter = b"\r\n--" + match.group(1)
    parts = (b"\r\n" + body).split(delimiter)
    content = parts[1].removeprefix(b"\r\n")
    signature_part = parts[2].removeprefix(b"\r\n")
    return content, base64.b64decode(signature_part.partition(b"\r\n\r\n")[2])


async def send_protected(harness, pki: ClientPki, party: Party, *, capabilities=None):
    settings = harness.config.tenants["test"].settings["smime"]
    directory = directory_for(harness.runtime, "test", settings)
    await directory.add_certificates([party.cert], source="import")
    if capabilities is not None:
        [entry] = await directory.entries(party.address)
        await directory.update(entry, capabilities=capabilities)
    message_id = await harness.send(make_message(to=party.address, subject="Bescheid",
                                                 body=f"{MARKER}\n"))
    await harness.process()
    [record] = await harness.store.recipients(message_id)
    return record


# profile, recipient key, announced capabilities -> the programs that must read the result
# (None: S/MIME declines and the password PDF serves).
PROFILE_CASES = [
    pytest.param("interoperable", "rsa", None, ("openssl", "nss", "gpgsm"),
                 id="interoperable-rsa-unknown"),
    pytest.param("interoperable", "ec", None, None, id="interoperable-ec-unknown"),
    pytest.param("interoperable", "ec", GCM_OAEP[:2], ("openssl",), id="interoperable-ec-gcm"),
    pytest.param("interoperable", "rsa", GCM_OAEP, ("openssl",), id="interoperable-rsa-gcm"),
    pytest.param("strict", "rsa", GCM_OAEP, ("openssl",), id="strict-rsa-gcm"),
    pytest.param("strict", "ec", GCM_OAEP[:2], ("openssl",), id="strict-ec-gcm"),
    pytest.param("strict", "rsa", None, None, id="strict-rsa-unknown"),
    pytest.param("strict", "ec", None, None, id="strict-ec-unknown"),
    pytest.param("strict", "rsa", ("2.16.840.1.101.3.4.1.42",), None, id="strict-rsa-no-oaep"),
]


@pytest.mark.parametrize(("profile", "kind", "capabilities", "readers"), PROFILE_CASES)
async def test_each_profile_is_read_where_it_promises(
        siegel_harness, client_pki: ClientPki, tmp_path: Path, profile: str, kind: str,
        capabilities, readers) -> None:
    party = client_pki.rsa if kind == "rsa" else client_pki.ec
    async with siegel_harness(config=gateway_config(client_pki, profile=profile),
                              clock=now()) as harness:
        record = await send_protected(harness, client_pki, party, capabilities=capabilities)
    if readers is None:
        assert record.state is RecipientState.HELD and record.method == "password_pdf"
        assert any("smime: " in reason and f"'{profile}'" in reason
                   for reason in record.reasons), record.reasons
        for mail in harness.sink.to(party.address):  # only the password PDF's invitation
            assert MARKER.encode() not in mail.raw
            assert mail.parsed.get_content_type() != "application/pkcs7-mime"
        return
    assert record.state is RecipientState.DELIVERED and record.method == "smime", record.reasons
    assert any("algorithms: AES-256-" in reason for reason in record.reasons), record.reasons
    [mail] = harness.sink.to(party.address)
    assert MARKER.encode() not in mail.raw
    der = mail.parsed.get_payload(decode=True)
    for program in readers:
        folder = tmp_path / program
        folder.mkdir()
        inner = decrypts(program, der, party, client_pki, folder)
        assert inner is not None, f"{program} cannot decrypt the {profile} output for {kind}"
        content, signature = split_signed(inner)
        assert MARKER.encode() in content
        assert verifies(program, signature, content, client_pki, folder), (
            f"{program} does not verify the signature of the {profile} output")


async def test_the_city_uses_strict_and_keeps_why_smime_was_skipped(
        siegel_harness, client_pki: ClientPki) -> None:
    """issue 9: why S/MIME was skipped is kept with the copy (``siegel queue show`` prints the
    reasons), not only said by ``siegel explain``."""
    async with siegel_harness(config=gateway_config(client_pki), clock=now()) as harness:
        record = await send_protected(harness, client_pki, client_pki.rsa)
    assert record.method == "password_pdf"
    [skipped] = [reason for reason in record.reasons if reason.startswith("smime: ")]
    assert "profile 'strict'" in skipped and "rsa user" in skipped


# --- mail made by the recipients' programs, read by siegel ---------------------------------------


def test_nss_made_mail_decrypts_and_verifies_in_siegel(client_pki: ClientPki, tmp_path: Path
                                                       ) -> None:
    nss = Nss(tmp_path / "nss", client_pki.root)
    nss.import_identity(legacy_p12(client_pki.rsa.key, client_pki.rsa.cert, []))
    inner = CONTENT
    signature = nss.sign(inner, "recipient")
    signed = _multipart_signed(inner, signature)
    enveloped = nss.encrypt(signed, client_pki.tenant.cert)
    raw = _pkcs7_mime(enveloped)
    result = unwrap(raw, private_key=client_pki.tenant.key, certificate=client_pki.tenant.cert,
                    trust_roots=[client_pki.root], at=dt.datetime.now(dt.UTC))
    assert result.encrypted and result.signature is not None
    assert result.entity == CONTENT
    assert result.signature.signer == client_pki.rsa.cert
    assert "aes" in result.envelopes[0].content_cipher.lower()
    # Thunderbird's SMIMECapabilities: CBC only, no RSAES-OAEP (so 'strict' declines, see above).
    assert result.signature.capabilities is not None
    names = [entry.name for entry in result.signature.capabilities.entries]
    assert "aes256-CBC" in names and "rsaesOaep" not in names and "aes256-GCM" not in names


def test_gpgsm_made_mail_decrypts_and_verifies_in_siegel(client_pki: ClientPki) -> None:
    with gpgsm_home(client_pki.root) as gpgsm:
        gpgsm.import_identity(legacy_p12(client_pki.rsa.key, client_pki.rsa.cert, []))
        gpgsm.import_certificate(client_pki.tenant.cert)
        signature = gpgsm.sign(CONTENT, RSA_RECIPIENT)
        enveloped = gpgsm.encrypt(_multipart_signed(CONTENT, signature), TENANT)
    result = unwrap(_pkcs7_mime(enveloped), private_key=client_pki.tenant.key,
                    certificate=client_pki.tenant.cert, trust_roots=[client_pki.root],
                    at=dt.datetime.now(dt.UTC))
    assert result.encrypted and result.signature is not None
    assert result.entity == CONTENT and result.signature.signer == client_pki.rsa.cert


def test_tampered_nss_signature_is_refused_by_siegel(client_pki: ClientPki, tmp_path: Path
                                                     ) -> None:
    from siegel.plugins.smime import SmimeError

    nss = Nss(tmp_path / "nss", client_pki.root)
    nss.import_identity(legacy_p12(client_pki.rsa.key, client_pki.rsa.cert, []))
    signature = nss.sign(CONTENT, "recipient")
    forged = _multipart_signed(CONTENT.replace(b"Hallo", b"Hallx"), signature)
    with pytest.raises(SmimeError):
        unwrap(forged, trust_roots=[client_pki.root], at=dt.datetime.now(dt.UTC))


def _multipart_signed(content: bytes, signature: bytes) -> bytes:
    boundary = b"----client-boundary-7f3a"
    encoded = base64.encodebytes(signature).replace(b"\n", b"\r\n")
    return (b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
            b'micalg=sha-256; boundary="' + boundary + b'"\r\n\r\n'
            b"--" + boundary + b"\r\n" + content + b"\r\n--" + boundary + b"\r\n"
            b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded
            + b"\r\n--" + boundary + b"--\r\n")


def _pkcs7_mime(der: bytes) -> bytes:
    return (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(der).replace(b"\n", b"\r\n"))


# --- a real Thunderbird message ------------------------------------------------------------------

THUNDERBIRD_SAMPLE = Path(__file__).parent / "data" / "mimekit" / "thunderbird-signed.txt"
"""Signed by Thunderbird 24.1.0 in 2013 (SHA-1); from MimeKit's test data, MIT licence: see
data/mimekit/README.md for the source and data/mimekit/LICENSE."""


def test_real_thunderbird_sample_is_read_and_its_sha1_signature_refused_precisely() -> None:
    """siegel finds the signed part of a real Thunderbird message byte for byte (the digest the
    signature carries matches it) and refuses the signature only for its SHA-1, by name."""
    import hashlib

    from asn1crypto import cms

    from siegel.plugins.smime import PolicyError, canonicalize

    raw = THUNDERBIRD_SAMPLE.read_bytes()
    with pytest.raises(PolicyError, match=r"digestAlgorithm: sha1 signatures are refused"):
        unwrap(raw, trust_roots=[client_pki_root_placeholder()],
               at=dt.datetime(2013, 11, 2, 20, 28, tzinfo=dt.UTC))
    content, signature = split_signed(canonicalize(raw))
    signer_info = cms.ContentInfo.load(signature)["content"]["signer_infos"][0]
    [digest] = [attribute["values"][0].native for attribute in signer_info["signed_attrs"]
                if attribute["type"].native == "message_digest"]
    assert hashlib.sha1(content).digest() == digest  # the bytes Thunderbird signed


def client_pki_root_placeholder() -> x509.Certificate:
    """Any certificate: the SHA-1 refusal comes before any chain is built."""
    key = ec.generate_private_key(ec.SECP256R1())
    return make_certificate(subject="unused root", key=key, issuer=None, issuer_key=key, ca=True,
                            key_usage=key_usage(key_cert_sign=True))
