"""Enveloping: policy refusals, tamper detection and precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import cms
from smime_pki import OpenSSL, OpenSSLFails, Pki, key_usage, make_certificate

from siegel.plugins.smime import (
    CertificateError,
    ContentCipher,
    EncryptOptions,
    IntegrityError,
    KeyMismatchError,
    MalformedError,
    NoMatchingRecipientError,
    PolicyError,
    RsaKeyTransport,
    UnsupportedError,
    decrypt,
    encrypt,
    sign,
)

CONTENT = b"Content-Type: text/plain\r\n\r\nVertraulicher Bescheid, Az. 4711/2026\r\n"


def _flip(der: bytes, offset: int) -> bytes:
    changed = bytearray(der)
    changed[offset] ^= 0x01
    return bytes(changed)


def _ciphertext_and_tag(der: bytes) -> tuple[bytes, bytes]:
    body = cms.ContentInfo.load(der)["content"]
    return body["auth_encrypted_content_info"]["encrypted_content"].native, body["mac"].native


# --- AES-GCM integrity ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rsa", "p256"])
def test_flipped_ciphertext_bit_fails_with_integrity_error(
    pki: Pki, openssl_fails: OpenSSLFails, tmp_path: Path, name: str
) -> None:
    identity = pki.by_name(name)
    der = encrypt(CONTENT, [identity.cert])
    ciphertext, _ = _ciphertext_and_tag(der)
    tampered = _flip(der, der.index(ciphertext) + len(ciphertext) // 2)

    with pytest.raises(IntegrityError, match="AES-GCM authentication failed") as caught:
        decrypt(tampered, identity.key, identity.cert)
    assert caught.value.where == "AuthEnvelopedData.mac"

    # openssl agrees that the message is broken (the flip really hit the ciphertext)
    (tmp_path / "tampered.p7m").write_bytes(tampered)
    openssl_fails(
        "cms", "-decrypt", "-inform", "DER", "-in", tmp_path / "tampered.p7m",
        "-recip", identity.cert_path, "-inkey", identity.key_path,
    )  # fmt: skip


def test_flipped_tag_bit_fails_with_integrity_error(pki: Pki) -> None:
    der = encrypt(CONTENT, [pki.rsa.cert])
    _, tag = _ciphertext_and_tag(der)
    assert der.endswith(tag)  # the mac is the last field of AuthEnvelopedData
    for offset in (len(der) - 1, len(der) - len(tag)):
        with pytest.raises(IntegrityError, match="modified in transit"):
            decrypt(_flip(der, offset), pki.rsa.key, pki.rsa.cert)


def test_flipped_bit_in_openssl_gcm_message_fails(
    pki: Pki, openssl: OpenSSL, tmp_path: Path
) -> None:
    (tmp_path / "plain").write_bytes(CONTENT)
    der = openssl(
        "cms", "-encrypt", "-binary", "-aes-256-gcm", "-in", tmp_path / "plain",
        "-outform", "DER", "-recip", pki.p384.cert_path,
    )  # fmt: skip
    ciphertext, _ = _ciphertext_and_tag(der)
    assert decrypt(der, pki.p384.key, pki.p384.cert) == CONTENT
    with pytest.raises(IntegrityError):
        decrypt(_flip(der, der.index(ciphertext)), pki.p384.key, pki.p384.cert)


def test_corrupted_pkcs1v15_key_fails_only_at_the_tag(pki: Pki) -> None:
    """RFC 3218: a bad PKCS#1 v1.5 block continues with a random key, so no padding oracle."""
    options = EncryptOptions(
        rsa_key_transport=RsaKeyTransport.RSAES_PKCS1_V15, allow_rsa_pkcs1v15=True
    )
    der = encrypt(CONTENT, [pki.rsa.cert], options=options)
    ktri = cms.ContentInfo.load(der)["content"]["recipient_infos"][0].chosen
    encrypted_key = ktri["encrypted_key"].native
    tampered = _flip(der, der.index(encrypted_key) + 10)
    with pytest.raises(IntegrityError) as caught:
        decrypt(tampered, pki.rsa.key, pki.rsa.cert)
    assert caught.value.where == "AuthEnvelopedData.mac"


def test_flipped_wrapped_key_bit_fails_for_ec_recipient(pki: Pki) -> None:
    der = encrypt(CONTENT, [pki.p256.cert])
    kari = cms.ContentInfo.load(der)["content"]["recipient_infos"][0].chosen
    wrapped = kari["recipient_encrypted_keys"][0]["encrypted_key"].native
    with pytest.raises(IntegrityError, match="AES key unwrap failed") as caught:
        decrypt(_flip(der, der.index(wrapped)), pki.p256.key, pki.p256.cert)
    assert caught.value.where == (
        "AuthEnvelopedData.recipientInfos[0].kari.recipientEncryptedKeys[0].encryptedKey"
    )


# --- policy ---------------------------------------------------------------------------------------


def test_rsa_2048_recipient_is_refused_unless_allowed(pki: Pki) -> None:
    with pytest.raises(PolicyError, match="2048-bit RSA key; at least 3000") as caught:
        encrypt(CONTENT, [pki.rsa.cert, pki.rsa2048.cert])
    assert caught.value.where == "recipients[1]"

    allowed = encrypt(CONTENT, [pki.rsa2048.cert], options=EncryptOptions(min_rsa_bits=2048))
    assert decrypt(allowed, pki.rsa2048.key, pki.rsa2048.cert) == CONTENT


def test_min_rsa_bits_cannot_go_below_2048() -> None:
    with pytest.raises(PolicyError, match="below 2048"):
        EncryptOptions(min_rsa_bits=1024)


@pytest.mark.parametrize("cipher", [ContentCipher.AES128_GCM, ContentCipher.AES128_CBC])
def test_aes128_is_refused_unless_allowed(pki: Pki, cipher: ContentCipher) -> None:
    with pytest.raises(PolicyError, match="use AES-256 or set allow_aes128=True") as caught:
        EncryptOptions(content_cipher=cipher)
    assert caught.value.where == "EncryptOptions.content_cipher"

    options = EncryptOptions(content_cipher=cipher, allow_aes128=True)
    assert decrypt(encrypt(CONTENT, [pki.p256.cert], options=options), pki.p256.key, pki.p256.cert)


def test_pkcs1v15_key_transport_is_refused_unless_allowed() -> None:
    with pytest.raises(PolicyError, match="allow_rsa_pkcs1v15=True"):
        EncryptOptions(rsa_key_transport=RsaKeyTransport.RSAES_PKCS1_V15)


def test_recipient_without_key_encipherment_usage_is_refused(pki: Pki) -> None:
    signing_only = make_certificate(
        subject="signing only",
        key=pki.rsa.key,
        issuer=pki.intermediate.cert,
        issuer_key=pki.intermediate.key,
        ca=False,
        key_usage=key_usage(digital_signature=True),
    )
    with pytest.raises(CertificateError, match="does not permit key encipherment"):
        encrypt(CONTENT, [signing_only])


def test_encrypt_needs_a_recipient() -> None:
    with pytest.raises(ValueError, match="at least one recipient"):
        encrypt(CONTENT, [])


# --- decryption errors ----------------------------------------------------------------------------


def test_message_for_someone_else_names_its_recipients(pki: Pki) -> None:
    der = encrypt(CONTENT, [pki.p256.cert])
    with pytest.raises(NoMatchingRecipientError) as caught:
        decrypt(der, pki.p384.key, pki.p384.cert)
    message = str(caught.value)
    assert "not encrypted for" in message
    assert f"serial {pki.p256.cert.serial_number:#x}" in message
    assert caught.value.where == "AuthEnvelopedData.recipientInfos"


def test_key_that_does_not_belong_to_the_certificate_is_refused(pki: Pki) -> None:
    der = encrypt(CONTENT, [pki.p256.cert])
    with pytest.raises(KeyMismatchError, match="does not belong"):
        decrypt(der, pki.p384.key, pki.p256.cert)


def test_garbage_is_malformed(pki: Pki) -> None:
    with pytest.raises(MalformedError, match="not a DER CMS ContentInfo") as caught:
        decrypt(b"\x30\x03\x02\x01", pki.rsa.key, pki.rsa.cert)
    assert caught.value.where == "ContentInfo"


def test_signed_data_is_not_an_envelope(pki: Pki) -> None:
    signed = sign(CONTENT, pki.rsa.key, pki.rsa.cert)
    with pytest.raises(UnsupportedError, match="is not an enveloped message"):
        decrypt(signed, pki.rsa.key, pki.rsa.cert)
