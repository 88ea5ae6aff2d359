"""S/MIME entities: openssl smime/cms read what we build, we read what openssl builds."""

from __future__ import annotations

import base64
import email.policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from smime_pki import OpenSSL, Pki

from siegel.plugins.smime import (
    ContentCipher,
    Digest,
    EncryptOptions,
    IntegrityError,
    MalformedError,
    SignatureMismatchError,
    SignaturePadding,
    SignOptions,
    assemble_message,
    body_part,
    canonicalize,
    decrypt_entity,
    encrypt_entity,
    entity_bytes,
    sign_and_encrypt_entity,
    sign_entity,
    unwrap,
    verify_signed_entity,
)


def _parse(raw: bytes) -> EmailMessage:
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Poststelle <poststelle@behoerde.example>"
    message["To"] = "buerger@example.org"
    message["Subject"] = "Ihr Bescheid vom 1. März"
    message.set_content("Sehr geehrte Damen und Herren,\n\nanbei der Bescheid.\n\n-- \nGruß\n")
    message.add_attachment(
        b"%PDF-1.7 " + bytes(range(256)), maintype="application", subtype="pdf",
        filename="bescheid.pdf",
    )  # fmt: skip
    return message


# `openssl smime` uses the PKCS#7 code, which cannot verify RSASSA-PSS (not even openssl's own
# PSS signatures); `openssl cms` can. So PSS is checked with cms only.
SIGNED_MESSAGE_VARIANTS = [
    pytest.param("rsa", SignOptions(), ("cms",), id="rsa-pss"),
    pytest.param(
        "rsa",
        SignOptions(rsa_padding=SignaturePadding.RSASSA_PKCS1_V15),
        ("cms", "smime"),
        id="rsa-pkcs1v15",
    ),
    pytest.param("p256", SignOptions(), ("cms", "smime"), id="ecdsa-p256"),
]


@pytest.mark.parametrize(("name", "options", "tools"), SIGNED_MESSAGE_VARIANTS)
def test_openssl_verifies_our_multipart_signed_message(
    pki: Pki,
    openssl: OpenSSL,
    tmp_path: Path,
    name: str,
    options: SignOptions,
    tools: tuple[str, ...],
) -> None:
    identity = pki.by_name(name)
    message = _message()
    part = body_part(message)
    entity = sign_entity(
        part, identity.key, identity.cert, [pki.intermediate.cert], options=options
    )
    full = assemble_message(message, entity)
    path = tmp_path / "signed.eml"
    path.write_bytes(full)

    assert b"\n" not in full.replace(b"\r\n", b"")  # canonical CRLF only
    assert b'protocol="application/pkcs7-signature"' in full
    assert b"micalg=sha-256" in full
    assert _parse(full)["Subject"] == "Ihr Bescheid vom 1. März"
    for tool in tools:
        out = openssl(tool, "-verify", "-in", path, "-CAfile", pki.root_path)
        assert canonicalize(out) == entity_bytes(part)

    verified = verify_signed_entity(full, [pki.root.cert])
    assert verified.content == entity_bytes(part)
    assert verified.signature.signer == identity.cert


def test_micalg_follows_the_digest(pki: Pki, openssl: OpenSSL, tmp_path: Path) -> None:
    entity = sign_entity(
        body_part(_message()), pki.p384.key, pki.p384.cert, [pki.intermediate.cert],
        options=SignOptions(digest=Digest.SHA384),
    )  # fmt: skip
    assert b"micalg=sha-384" in entity
    (tmp_path / "signed.eml").write_bytes(entity)
    openssl("cms", "-verify", "-in", tmp_path / "signed.eml", "-CAfile", pki.root_path)


def test_message_stored_with_lf_line_endings_still_verifies(pki: Pki) -> None:
    entity = sign_entity(
        body_part(_message()), pki.p256.key, pki.p256.cert, [pki.intermediate.cert]
    )
    lf_only = entity.replace(b"\r\n", b"\n")
    assert verify_signed_entity(lf_only, [pki.root.cert]).signature.signer == pki.p256.cert


def test_changed_byte_in_signed_part_is_rejected(pki: Pki) -> None:
    entity = sign_entity(body_part(_message()), pki.rsa.key, pki.rsa.cert, [pki.intermediate.cert])
    start = entity.index(b"Content-Type: application/pdf")
    tampered = entity[:start] + entity[start:].replace(b"base64", b"BASE64", 1)
    with pytest.raises(SignatureMismatchError, match="message digest"):
        verify_signed_entity(tampered, [pki.root.cert])


@pytest.mark.parametrize(
    ("cipher", "smime_type"),
    [
        (ContentCipher.AES256_GCM, b"smime-type=authEnveloped-data"),
        (ContentCipher.AES256_CBC, b"smime-type=enveloped-data"),
    ],
)
def test_openssl_opens_our_signed_and_encrypted_message(
    pki: Pki, openssl: OpenSSL, tmp_path: Path, cipher: ContentCipher, smime_type: bytes
) -> None:
    message = _message()
    part = body_part(message)
    entity = sign_and_encrypt_entity(
        part, pki.rsa.key, pki.rsa.cert, [pki.p256.cert, pki.rsa.cert],
        [pki.intermediate.cert], encrypt_options=EncryptOptions(content_cipher=cipher),
    )  # fmt: skip
    assert smime_type in entity
    assert b'name="smime.p7m"' in entity
    path = tmp_path / "encrypted.eml"
    path.write_bytes(assemble_message(message, entity))

    decrypted = openssl(
        "cms", "-decrypt", "-in", path, "-recip", pki.p256.cert_path, "-inkey", pki.p256.key_path
    )
    (tmp_path / "decrypted.eml").write_bytes(decrypted)
    out = openssl("cms", "-verify", "-in", tmp_path / "decrypted.eml", "-CAfile", pki.root_path)
    assert canonicalize(out) == entity_bytes(part)

    result = unwrap(path.read_bytes(), private_key=pki.rsa.key, certificate=pki.rsa.cert,
                    trust_roots=[pki.root.cert])  # fmt: skip
    assert [envelope.authenticated for envelope in result.envelopes] == [cipher.authenticated]
    assert result.signature is not None and result.signature.signer == pki.rsa.cert
    assert result.message().get_content_type() == "multipart/mixed"
    attachment = next(result.message().iter_attachments())
    assert attachment.get_content() == b"%PDF-1.7 " + bytes(range(256))


def test_we_unwrap_openssl_signed_then_encrypted_message(
    pki: Pki, openssl: OpenSSL, tmp_path: Path
) -> None:
    inner = entity_bytes(body_part(_message()))
    (tmp_path / "inner.eml").write_bytes(inner)
    signed = openssl(
        "cms", "-sign", "-in", tmp_path / "inner.eml", "-signer", pki.p384.cert_path,
        "-inkey", pki.p384.key_path, "-certfile", pki.chain_path, "-md", "sha384",
    )  # fmt: skip
    (tmp_path / "signed.eml").write_bytes(signed)
    encrypted = openssl(
        "cms", "-encrypt", "-aes-256-gcm", "-in", tmp_path / "signed.eml",
        "-recip", pki.rsa.cert_path, "-keyopt", "rsa_padding_mode:oaep",
        "-keyopt", "rsa_oaep_md:sha256",
    )  # fmt: skip
    assert b"application/pkcs7-mime" in encrypted

    result = unwrap(encrypted, private_key=pki.rsa.key, certificate=pki.rsa.cert,
                    trust_roots=[pki.root.cert])  # fmt: skip

    assert result.entity == inner
    assert result.envelopes[0].key_management == "ktri rsaesOaep(sha256)"
    assert result.signature is not None
    assert result.signature.signer == pki.p384.cert
    assert result.signature.digest == "sha384"


def test_we_unwrap_openssl_opaque_signed_data(pki: Pki, openssl: OpenSSL, tmp_path: Path) -> None:
    inner = entity_bytes(body_part(_message()))
    (tmp_path / "inner.eml").write_bytes(inner)
    opaque = openssl(
        "smime", "-sign", "-nodetach", "-in", tmp_path / "inner.eml",
        "-signer", pki.rsa.cert_path, "-inkey", pki.rsa.key_path, "-certfile", pki.chain_path,
    )  # fmt: skip
    assert b"smime-type=signed-data" in opaque
    result = unwrap(opaque, trust_roots=[pki.root.cert])
    assert result.entity == inner
    assert not result.encrypted


def test_flipped_bit_in_encrypted_entity_fails(pki: Pki) -> None:
    entity = encrypt_entity(body_part(_message()), [pki.p256.cert])
    header, _, body = entity.partition(b"\r\n\r\n")
    der = bytearray(base64.b64decode(body))
    der[-30] ^= 0x01
    tampered = header + b"\r\n\r\n" + base64.encodebytes(bytes(der))
    with pytest.raises(IntegrityError):
        decrypt_entity(tampered, pki.p256.key, pki.p256.cert)


def test_plain_message_passes_through_unwrap(pki: Pki) -> None:
    raw = _message().as_bytes()
    result = unwrap(raw, trust_roots=[pki.root.cert])
    assert result.entity == raw
    assert result.envelopes == () and result.signatures == ()


def test_encrypted_layer_without_key_is_reported(pki: Pki) -> None:
    entity = encrypt_entity(body_part(_message()), [pki.p256.cert])
    with pytest.raises(ValueError, match="layer 0 is encrypted; pass private_key"):
        unwrap(entity)


def test_multipart_signed_without_preamble_verifies(
    pki: Pki, openssl: OpenSSL, tmp_path: Path
) -> None:
    entity = sign_entity(
        body_part(_message()), pki.p256.key, pki.p256.cert, [pki.intermediate.cert]
    )
    preamble = b"This is a cryptographically signed message in MIME format.\r\n\r\n"
    assert preamble in entity
    bare = entity.replace(preamble, b"", 1)  # the body now starts with the first delimiter
    (tmp_path / "bare.eml").write_bytes(bare)
    openssl("cms", "-verify", "-in", tmp_path / "bare.eml", "-CAfile", pki.root_path)
    assert verify_signed_entity(bare, [pki.root.cert]).signature.signer == pki.p256.cert


def test_truncated_multipart_signed_is_malformed(pki: Pki) -> None:
    entity = sign_entity(body_part(_message()), pki.p256.key, pki.p256.cert)
    truncated = entity[: entity.rindex(b"--\r\n") - 10]
    with pytest.raises(MalformedError, match="exactly two body parts") as caught:
        verify_signed_entity(truncated, [pki.root.cert])
    assert caught.value.where == "multipart/signed"
