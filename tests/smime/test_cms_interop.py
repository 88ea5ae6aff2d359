"""CMS interoperability with the real openssl binary as the independent implementation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from asn1crypto import cms
from smime_pki import OpenSSL, OpenSSLFails, Pki

from siegel.plugins.smime import (
    ContentCipher,
    Digest,
    EncryptOptions,
    PolicyError,
    RsaKeyTransport,
    SignatureMismatchError,
    SignaturePadding,
    SignOptions,
    UnsupportedError,
    decrypt,
    encrypt,
    open_envelope,
    sign,
    verify,
)

CONTENT = (
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Sehr geehrte Damen und Herren,=0D=0Aanbei der Bescheid.\r\n" + bytes(range(256))
)

AES256_OIDS = {"2.16.840.1.101.3.4.1.46", "2.16.840.1.101.3.4.1.42"}


def _openssl_decrypt(openssl: OpenSSL, pki: Pki, name: str, der_path: Path) -> bytes:
    identity = pki.by_name(name)
    return openssl(
        "cms", "-decrypt", "-binary", "-inform", "DER", "-in", der_path,
        "-recip", identity.cert_path, "-inkey", identity.key_path,
    )  # fmt: skip


# --- our encryption, openssl decrypts -------------------------------------------------------------

ENCRYPT_VARIANTS = [
    pytest.param("rsa", EncryptOptions(), "aes256-GCM", id="rsa-gcm-oaep"),
    pytest.param(
        "rsa",
        EncryptOptions(rsa_key_transport=RsaKeyTransport.RSAES_PKCS1_V15, allow_rsa_pkcs1v15=True),
        "aes256-GCM",
        id="rsa-gcm-pkcs1v15",
    ),
    pytest.param(
        "rsa",
        EncryptOptions(content_cipher=ContentCipher.AES256_CBC),
        "aes256-CBC",
        id="rsa-cbc-oaep",
    ),
    pytest.param(
        "rsa",
        EncryptOptions(
            content_cipher=ContentCipher.AES256_CBC,
            rsa_key_transport=RsaKeyTransport.RSAES_PKCS1_V15,
            allow_rsa_pkcs1v15=True,
        ),
        "aes256-CBC",
        id="rsa-cbc-pkcs1v15",
    ),
    pytest.param("p256", EncryptOptions(), "aes256-GCM", id="p256-gcm"),
    pytest.param(
        "p256",
        EncryptOptions(content_cipher=ContentCipher.AES256_CBC),
        "aes256-CBC",
        id="p256-cbc",
    ),
    pytest.param("p384", EncryptOptions(), "aes256-GCM", id="p384-gcm"),
    pytest.param(
        "p384",
        EncryptOptions(content_cipher=ContentCipher.AES256_CBC, ecdh_kdf_digest=Digest.SHA384),
        "aes256-CBC",
        id="p384-cbc-sha384kdf",
    ),
    pytest.param(
        "p521", EncryptOptions(ecdh_kdf_digest=Digest.SHA512), "aes256-GCM", id="p521-gcm-sha512kdf"
    ),
    pytest.param("brainpool", EncryptOptions(), "aes256-GCM", id="brainpoolP256r1-gcm"),
    pytest.param(
        "rsa",
        EncryptOptions(content_cipher=ContentCipher.AES128_GCM, allow_aes128=True),
        "aes128-GCM",
        id="rsa-aes128-gcm-allowed",
    ),
    pytest.param("rsa2048", EncryptOptions(min_rsa_bits=2048), "aes256-GCM", id="rsa2048-allowed"),
]


@pytest.mark.parametrize(("name", "options", "cipher_name"), ENCRYPT_VARIANTS)
def test_openssl_decrypts_what_we_encrypt(
    pki: Pki,
    openssl: OpenSSL,
    tmp_path: Path,
    name: str,
    options: EncryptOptions,
    cipher_name: str,
) -> None:
    der = encrypt(CONTENT, [pki.by_name(name).cert], options=options)
    path = tmp_path / "message.p7m"
    path.write_bytes(der)

    assert _openssl_decrypt(openssl, pki, name, path) == CONTENT
    # and we read our own output the same way
    opened = open_envelope(der, pki.by_name(name).key, pki.by_name(name).cert)
    assert opened.content == CONTENT
    assert opened.content_cipher == cipher_name
    assert opened.authenticated == options.content_cipher.authenticated


def test_one_message_for_rsa_and_ec_recipients(pki: Pki, openssl: OpenSSL, tmp_path: Path) -> None:
    names = ["rsa", "p256", "p384"]
    der = encrypt(CONTENT, [pki.by_name(name).cert for name in names])
    path = tmp_path / "message.p7m"
    path.write_bytes(der)
    for name in names:
        assert _openssl_decrypt(openssl, pki, name, path) == CONTENT
        assert decrypt(der, pki.by_name(name).key, pki.by_name(name).cert) == CONTENT


def test_we_never_produce_3des_or_rc2(pki: Pki) -> None:
    """Every content cipher we can be asked for is AES; the enum has no legacy member."""
    produced = set()
    for cipher in ContentCipher:
        options = EncryptOptions(content_cipher=cipher, allow_aes128=True)
        info = cms.ContentInfo.load(encrypt(b"x", [pki.rsa.cert, pki.p256.cert], options=options))
        body = info["content"]
        encrypted = (
            body["auth_encrypted_content_info"]
            if info["content_type"].native == "authenticated_enveloped_data"
            else body["encrypted_content_info"]
        )
        produced.add(encrypted["content_encryption_algorithm"]["algorithm"].dotted)
        for recipient_info in body["recipient_infos"]:
            if recipient_info.name == "kari":
                wrap = recipient_info.chosen["key_encryption_algorithm"]["parameters"]
                assert wrap.parse(cms.KeyEncryptionAlgorithm)["algorithm"].native == ("aes256_wrap")
    assert produced == {cipher.oid for cipher in ContentCipher}
    assert all(oid.startswith("2.16.840.1.101.3.4.1.") for oid in produced)


# --- openssl encrypts, we decrypt ---------------------------------------------------------------

OPENSSL_ENCRYPT_VARIANTS = [
    pytest.param(
        "rsa",
        ["-aes-256-gcm", "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"],
        "ktri rsaesOaep(sha256)",
        id="rsa-gcm-oaep-sha256",
    ),
    pytest.param(
        "rsa",
        ["-aes-256-gcm", "-keyopt", "rsa_padding_mode:oaep"],
        "ktri rsaesOaep(sha1)",
        id="rsa-gcm-oaep-sha1",
    ),
    pytest.param("rsa", ["-aes-256-gcm"], "ktri rsaEncryption(PKCS#1 v1.5)", id="rsa-gcm-pkcs1v15"),
    pytest.param("rsa", ["-aes-256-cbc"], "ktri rsaEncryption(PKCS#1 v1.5)", id="rsa-cbc-pkcs1v15"),
    pytest.param(
        "rsa",
        ["-aes-256-cbc", "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"],
        "ktri rsaesOaep(sha256)",
        id="rsa-cbc-oaep-sha256",
    ),
    pytest.param(
        "rsa",
        ["-aes-256-gcm", "-keyid"],
        "ktri rsaEncryption(PKCS#1 v1.5)",
        id="rsa-by-subject-key-id",
    ),
    pytest.param(
        "p256", ["-aes-256-gcm"], "kari dhSinglePass-stdDH-sha1kdf aes256-wrap", id="p256-gcm"
    ),
    pytest.param(
        "p256", ["-aes-256-cbc"], "kari dhSinglePass-stdDH-sha1kdf aes256-wrap", id="p256-cbc"
    ),
    pytest.param(
        "p384",
        ["-aes-256-gcm", "-keyopt", "ecdh_kdf_md:sha384"],
        "kari dhSinglePass-stdDH-sha384kdf aes256-wrap",
        id="p384-gcm-sha384kdf",
    ),
    pytest.param(
        "p384",
        ["-aes-128-cbc", "-keyid", "-aes128-wrap"],
        "kari dhSinglePass-stdDH-sha1kdf aes128-wrap",
        id="p384-cbc-keyid-aes128wrap",
    ),
    pytest.param(
        "brainpool",
        ["-aes-256-gcm", "-keyopt", "ecdh_kdf_md:sha256"],
        "kari dhSinglePass-stdDH-sha256kdf aes256-wrap",
        id="brainpoolP256r1-gcm",
    ),
    pytest.param(
        "p256",
        ["-aes-256-gcm", "-stream"],
        "kari dhSinglePass-stdDH-sha1kdf aes256-wrap",
        id="p256-gcm-streamed-ber",
    ),
]


@pytest.mark.parametrize(("name", "arguments", "key_management"), OPENSSL_ENCRYPT_VARIANTS)
def test_we_decrypt_what_openssl_encrypts(
    pki: Pki,
    openssl: OpenSSL,
    tmp_path: Path,
    name: str,
    arguments: list[str],
    key_management: str,
) -> None:
    identity = pki.by_name(name)
    plain = tmp_path / "plain"
    plain.write_bytes(CONTENT)
    der = openssl(
        "cms", "-encrypt", "-binary", "-in", plain, "-outform", "DER",
        "-recip", identity.cert_path, *arguments,  # -keyopt applies to the preceding -recip
    )  # fmt: skip

    opened = open_envelope(der, identity.key, identity.cert)

    assert opened.content == CONTENT
    assert opened.key_management == key_management
    assert opened.authenticated == ("gcm" in arguments[0])


def test_openssl_3des_message_is_refused_clearly(
    pki: Pki, openssl: OpenSSL, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(CONTENT)
    der = openssl(
        "cms", "-encrypt", "-binary", "-in", plain, "-outform", "DER", "-des3",
        "-recip", pki.rsa.cert_path,
    )  # fmt: skip
    with pytest.raises(UnsupportedError, match="des-ede3-cbc is not supported") as caught:
        decrypt(der, pki.rsa.key, pki.rsa.cert)
    assert caught.value.where == "EnvelopedData.encryptedContentInfo.contentEncryptionAlgorithm"


# --- our signatures, openssl verifies -----------------------------------------------------------

SIGN_VARIANTS = [
    pytest.param("rsa", SignOptions(), "rsassa_pss", id="rsa-pss-sha256"),
    pytest.param(
        "rsa",
        SignOptions(rsa_padding=SignaturePadding.RSASSA_PKCS1_V15, digest=Digest.SHA512),
        "rsassa_pkcs1v15",
        id="rsa-pkcs1v15-sha512",
    ),
    pytest.param("rsa", SignOptions(digest=Digest.SHA384), "rsassa_pss", id="rsa-pss-sha384"),
    pytest.param("p256", SignOptions(), "ecdsa", id="ecdsa-p256-sha256"),
    pytest.param("p384", SignOptions(digest=Digest.SHA384), "ecdsa", id="ecdsa-p384-sha384"),
    pytest.param("p521", SignOptions(digest=Digest.SHA512), "ecdsa", id="ecdsa-p521-sha512"),
    pytest.param("brainpool", SignOptions(), "ecdsa", id="ecdsa-brainpoolP256r1"),
]


@pytest.mark.parametrize(("name", "options", "scheme"), SIGN_VARIANTS)
def test_openssl_verifies_what_we_sign(
    pki: Pki, openssl: OpenSSL, tmp_path: Path, name: str, options: SignOptions, scheme: str
) -> None:
    identity = pki.by_name(name)
    der = sign(CONTENT, identity.key, identity.cert, [pki.intermediate.cert], options=options)
    (tmp_path / "sig.p7s").write_bytes(der)
    (tmp_path / "content").write_bytes(CONTENT)

    out = openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "sig.p7s",
        "-content", tmp_path / "content", "-CAfile", pki.root_path,
    )  # fmt: skip

    assert out == CONTENT
    verified = verify(der, CONTENT, [pki.root.cert])
    assert verified.signature_algorithm == scheme
    assert verified.digest == options.digest.asn1_name
    assert verified.chain == (identity.cert, pki.intermediate.cert, pki.root.cert)
    assert verified.capabilities.announces_aes256_gcm
    assert verified.signer_emails == (f"{name}@behoerde.example",)


def test_openssl_rejects_our_signature_over_changed_content(
    pki: Pki, openssl_fails: OpenSSLFails, tmp_path: Path
) -> None:
    der = sign(CONTENT, pki.rsa.key, pki.rsa.cert, [pki.intermediate.cert])
    (tmp_path / "sig.p7s").write_bytes(der)
    (tmp_path / "content").write_bytes(CONTENT.replace(b"Bescheid", b"Beschied"))
    result = openssl_fails(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "sig.p7s",
        "-content", tmp_path / "content", "-CAfile", pki.root_path,
    )  # fmt: skip
    assert b"content verify error" in result.stderr


# --- openssl signs, we verify -------------------------------------------------------------------

OPENSSL_SIGN_VARIANTS = [
    pytest.param("rsa", ["-md", "sha256"], "rsassa_pkcs1v15", id="rsa-pkcs1v15-sha256"),
    pytest.param(
        "rsa",
        ["-md", "sha256", "-keyopt", "rsa_padding_mode:pss"],
        "rsassa_pss",
        id="rsa-pss-sha256",
    ),
    pytest.param(
        "rsa",
        ["-md", "sha512", "-keyopt", "rsa_padding_mode:pss", "-keyopt", "rsa_pss_saltlen:32"],
        "rsassa_pss",
        id="rsa-pss-sha512-salt32",
    ),
    pytest.param("p256", ["-md", "sha256"], "ecdsa", id="ecdsa-p256"),
    pytest.param("p384", ["-md", "sha384", "-noattr"], "ecdsa", id="ecdsa-p384-no-attributes"),
]


@pytest.mark.parametrize(("name", "arguments", "scheme"), OPENSSL_SIGN_VARIANTS)
def test_we_verify_what_openssl_signs_and_reject_a_changed_byte(
    pki: Pki,
    openssl: OpenSSL,
    tmp_path: Path,
    name: str,
    arguments: list[str],
    scheme: str,
) -> None:
    identity = pki.by_name(name)
    (tmp_path / "content").write_bytes(CONTENT)
    der = openssl(
        "cms", "-sign", "-binary", "-in", tmp_path / "content", "-outform", "DER",
        "-signer", identity.cert_path, "-inkey", identity.key_path,
        "-certfile", pki.chain_path, *arguments,
    )  # fmt: skip

    verified = verify(der, CONTENT, [pki.root.cert])
    assert verified.signer == identity.cert
    assert verified.signature_algorithm == scheme
    if "-noattr" in arguments:
        assert verified.signing_time is None
        assert verified.capabilities.entries == ()
    else:
        assert verified.signing_time is not None
        assert abs(verified.signing_time - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
        # openssl 3.0 announces CBC ciphers but not GCM: a sender must fall back to CBC
        assert verified.capabilities.announces_aes256_cbc
        assert not verified.capabilities.announces_aes256_gcm
        assert verified.capabilities.choose_content_cipher() is ContentCipher.AES256_CBC

    changed = bytearray(CONTENT)
    changed[100] ^= 0x01
    with pytest.raises(SignatureMismatchError) as caught:
        verify(der, bytes(changed), [pki.root.cert])
    assert caught.value.where.startswith("SignedData.signerInfos[0]")


def test_openssl_sha1_signature_is_refused(pki: Pki, openssl: OpenSSL, tmp_path: Path) -> None:
    (tmp_path / "content").write_bytes(CONTENT)
    der = openssl(
        "cms", "-sign", "-binary", "-in", tmp_path / "content", "-outform", "DER", "-md", "sha1",
        "-signer", pki.rsa.cert_path, "-inkey", pki.rsa.key_path, "-certfile", pki.chain_path,
    )  # fmt: skip
    with pytest.raises(PolicyError, match="sha1 signatures are refused"):
        verify(der, CONTENT, [pki.root.cert])
