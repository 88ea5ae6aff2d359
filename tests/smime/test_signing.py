"""Signature verification: chain validation, tampering and policy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from smime_pki import NOW, OpenSSL, Pki, key_usage, make_certificate, write_identity

from siegel.plugins.smime import (
    ChainValidationError,
    ContentCipher,
    KeyMismatchError,
    MalformedError,
    PolicyError,
    SignatureMismatchError,
    SignOptions,
    VerificationError,
    sign,
    verify,
)

CONTENT = b"Content-Type: text/plain\r\n\r\nZustellung des Bescheids\r\n"


def _flip(der: bytes, offset: int) -> bytes:
    changed = bytearray(der)
    changed[offset] ^= 0x01
    return bytes(changed)


def test_verified_signature_reports_signer_time_and_chain(pki: Pki) -> None:
    when = dt.datetime(2026, 3, 1, 9, 30, 15, 999, tzinfo=dt.UTC)
    der = sign(CONTENT, pki.p256.key, pki.p256.cert, [pki.intermediate.cert], signing_time=when)
    verified = verify(der, CONTENT, [pki.root.cert])
    assert verified.signer == pki.p256.cert
    assert verified.signing_time == when.replace(microsecond=0)
    assert verified.chain == (pki.p256.cert, pki.intermediate.cert, pki.root.cert)
    assert verified.content == CONTENT


def test_changed_signed_attribute_breaks_the_signature(pki: Pki) -> None:
    when = dt.datetime(2026, 3, 1, 9, 30, 15, tzinfo=dt.UTC)
    der = sign(CONTENT, pki.rsa.key, pki.rsa.cert, [pki.intermediate.cert], signing_time=when)
    utc_time = b"260301093015Z"
    tampered = der.replace(utc_time, b"260301093016Z")
    assert tampered != der
    with pytest.raises(SignatureMismatchError, match="does not verify") as caught:
        verify(tampered, CONTENT, [pki.root.cert])
    assert caught.value.where == "SignedData.signerInfos[0].signature"


def test_changed_signature_value_is_rejected(pki: Pki) -> None:
    der = sign(CONTENT, pki.p384.key, pki.p384.cert, [pki.intermediate.cert])
    signer_info = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    signature = signer_info["signature"].native
    with pytest.raises(SignatureMismatchError):
        verify(_flip(der, der.index(signature) + 20), CONTENT, [pki.root.cert])


def test_changed_content_is_rejected_with_the_digest_location(pki: Pki) -> None:
    der = sign(CONTENT, pki.rsa.key, pki.rsa.cert, [pki.intermediate.cert])
    with pytest.raises(SignatureMismatchError, match="line endings were not canonical CRLF"):
        verify(der, CONTENT.replace(b"\r\n", b"\n"), [pki.root.cert])
    with pytest.raises(SignatureMismatchError) as caught:
        verify(der, CONTENT + b" ", [pki.root.cert])
    assert caught.value.where == "SignedData.signerInfos[0].signedAttrs.messageDigest"


def test_untrusted_root_fails_chain_validation(pki: Pki, tmp_path: Path) -> None:
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_root = make_certificate(
        subject="some other root",
        key=other_key,
        issuer=None,
        issuer_key=other_key,
        ca=True,
        key_usage=key_usage(key_cert_sign=True),
    )
    der = sign(CONTENT, pki.rsa.key, pki.rsa.cert, [pki.intermediate.cert])
    with pytest.raises(ChainValidationError, match="does not chain to a trust root") as caught:
        verify(der, CONTENT, [other_root])
    assert caught.value.where == "SignedData.signerInfos[0].sid"


def test_missing_intermediate_fails_chain_validation(pki: Pki) -> None:
    der = sign(CONTENT, pki.rsa.key, pki.rsa.cert)  # no chain included
    with pytest.raises(ChainValidationError):
        verify(der, CONTENT, [pki.root.cert])
    assert verify(der, CONTENT, [pki.root.cert, pki.intermediate.cert]).signer == pki.rsa.cert


@pytest.mark.parametrize("days", [60, -10], ids=["expired", "not-yet-valid"])
def test_certificate_outside_its_validity_fails(pki: Pki, days: int) -> None:
    der = sign(CONTENT, pki.rsa.key, pki.rsa.cert, [pki.intermediate.cert])
    with pytest.raises(ChainValidationError, match="does not chain"):
        verify(der, CONTENT, [pki.root.cert], at=NOW + dt.timedelta(days=days))


def test_signer_without_email_protection_is_rejected(pki: Pki) -> None:
    server_cert = make_certificate(
        subject="tls server",
        key=pki.p256.key,
        issuer=pki.intermediate.cert,
        issuer_key=pki.intermediate.key,
        ca=False,
        key_usage=key_usage(digital_signature=True),
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    der = sign(CONTENT, pki.p256.key, server_cert, [pki.intermediate.cert])
    with pytest.raises(ChainValidationError, match="emailProtection"):
        verify(der, CONTENT, [pki.root.cert])


def test_signer_without_digital_signature_usage_is_rejected(pki: Pki) -> None:
    encryption_only = make_certificate(
        subject="encryption only",
        key=pki.p256.key,
        issuer=pki.intermediate.cert,
        issuer_key=pki.intermediate.key,
        ca=False,
        key_usage=key_usage(key_agreement=True),
    )
    der = sign(CONTENT, pki.p256.key, encryption_only, [pki.intermediate.cert])
    with pytest.raises(ChainValidationError, match="digitalSignature"):
        verify(der, CONTENT, [pki.root.cert])


def test_short_rsa_signing_key_is_refused_unless_allowed(pki: Pki) -> None:
    with pytest.raises(PolicyError, match="2048 bits; at least 3000"):
        sign(CONTENT, pki.rsa2048.key, pki.rsa2048.cert)
    der = sign(
        CONTENT,
        pki.rsa2048.key,
        pki.rsa2048.cert,
        [pki.intermediate.cert],
        options=SignOptions(min_rsa_bits=2048),
    )
    assert verify(der, CONTENT, [pki.root.cert]).signer == pki.rsa2048.cert


def test_signing_key_must_match_the_certificate(pki: Pki) -> None:
    with pytest.raises(KeyMismatchError):
        sign(CONTENT, pki.p256.key, pki.p384.cert)


def test_signature_without_signer_certificate_is_reported(
    pki: Pki, openssl: OpenSSL, tmp_path: Path
) -> None:
    (tmp_path / "content").write_bytes(CONTENT)
    der = openssl(
        "cms", "-sign", "-binary", "-nocerts", "-in", tmp_path / "content", "-outform", "DER",
        "-signer", pki.rsa.cert_path, "-inkey", pki.rsa.key_path,
    )  # fmt: skip
    with pytest.raises(VerificationError, match=r"signer certificate .* is not included"):
        verify(der, CONTENT, [pki.root.cert])


def test_detached_signature_needs_its_content(pki: Pki) -> None:
    der = sign(CONTENT, pki.rsa.key, pki.rsa.cert, [pki.intermediate.cert])
    with pytest.raises(MalformedError, match="pass the signed content"):
        verify(der, None, [pki.root.cert])


def test_opaque_openssl_signature_verifies_its_encapsulated_content(
    pki: Pki, openssl: OpenSSL, tmp_path: Path
) -> None:
    (tmp_path / "content").write_bytes(CONTENT)
    der = openssl(
        "cms", "-sign", "-binary", "-nodetach", "-in", tmp_path / "content", "-outform", "DER",
        "-signer", pki.p256.cert_path, "-inkey", pki.p256.key_path, "-certfile", pki.chain_path,
    )  # fmt: skip
    assert verify(der, None, [pki.root.cert]).content == CONTENT
    with pytest.raises(MalformedError, match="detached content was given too"):
        verify(der, CONTENT, [pki.root.cert])


def test_second_signer_is_used_when_the_first_is_untrusted(
    pki: Pki, openssl: OpenSSL, tmp_path: Path
) -> None:
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger_cert = make_certificate(
        subject="self-signed stranger",
        key=stranger_key,
        issuer=None,
        issuer_key=stranger_key,
        ca=False,
        key_usage=key_usage(digital_signature=True),
    )
    stranger = write_identity(tmp_path, "stranger", stranger_key, stranger_cert)
    (tmp_path / "content").write_bytes(CONTENT)
    der = openssl(
        "cms", "-sign", "-binary", "-in", tmp_path / "content", "-outform", "DER",
        "-signer", stranger.cert_path, "-inkey", stranger.key_path,
        "-signer", pki.p384.cert_path, "-inkey", pki.p384.key_path,
        "-certfile", pki.chain_path,
    )  # fmt: skip
    assert verify(der, CONTENT, [pki.root.cert]).signer == pki.p384.cert
    with pytest.raises(ChainValidationError, match="no SignerInfo verified"):
        verify(der, CONTENT, [pki.p256.cert])  # trusts neither signer


def test_verify_needs_trust_roots(pki: Pki) -> None:
    der = sign(CONTENT, pki.p256.key, pki.p256.cert)
    with pytest.raises(ValueError, match="at least one trust root"):
        verify(der, CONTENT, [])


def test_capabilities_attribute_can_be_left_out(pki: Pki) -> None:
    der = sign(CONTENT, pki.p256.key, pki.p256.cert, options=SignOptions(capabilities=None))
    verified = verify(der, CONTENT, [pki.root.cert, pki.intermediate.cert])
    assert verified.capabilities.entries == ()
    assert verified.capabilities.choose_content_cipher() is ContentCipher.AES256_CBC


def test_brainpool_ca_is_beyond_the_path_validation(pki: Pki) -> None:
    """Known limitation: cryptography's verifier only accepts NIST-curve and RSA CA keys.

    Brainpool end-entity keys work (see the interop tests); a brainpool *CA* does not. If this
    test starts failing, cryptography has lifted the restriction: update the module docstring.
    """
    ca_key = ec.generate_private_key(ec.BrainpoolP384R1())
    ca_cert = make_certificate(
        subject="brainpool root",
        key=ca_key,
        issuer=None,
        issuer_key=ca_key,
        ca=True,
        key_usage=key_usage(key_cert_sign=True),
    )
    leaf_cert = make_certificate(
        subject="leaf under brainpool",
        key=pki.p256.key,
        issuer=ca_cert,
        issuer_key=ca_key,
        ca=False,
        key_usage=key_usage(digital_signature=True),
    )
    der = sign(CONTENT, pki.p256.key, leaf_cert)
    with pytest.raises(ChainValidationError, match="Forbidden public key algorithm"):
        verify(der, CONTENT, [ca_cert])
