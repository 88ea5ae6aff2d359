"""S/MIME sign + encrypt throughput: siegel's CMS/MIME path against the bare primitives.

Run by hand (not in CI; only the ratio means something on a shared machine):

    python bench/smime_throughput.py [--seconds 3]

For a 3 KB and a 1 MB message, both in this one process:

* baseline: the bare cryptographic operations of one sign-then-encrypt, with `cryptography`
  alone: SHA-256 of the content, an RSA-PSS signature (3072-bit key), AES-256-GCM over the signed
  content, RSA-OAEP-SHA-256 wrap of the content key for the recipient (3072-bit key);
* siegel: ``sign_and_encrypt_entity`` (CMS SignedData and AuthEnvelopedData with asn1crypto,
  MIME multipart/signed and application/pkcs7-mime, canonical CRLF, base64);
* siegel interoperable: the same with the ``interoperable`` profile's algorithms (EnvelopedData
  with AES-256-CBC, RSAES-PKCS1-v1_5), what a recipient of unknown capabilities gets.

Prints operations per second and the ratio siegel/baseline (1.0 would mean no overhead at all).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from siegel.plugins.smime import (
    ContentCipher,
    EncryptOptions,
    RsaKeyTransport,
    sign_and_encrypt_entity,
)

INTEROPERABLE = EncryptOptions(content_cipher=ContentCipher.AES256_CBC,
                               rsa_key_transport=RsaKeyTransport.RSAES_PKCS1_V15,
                               allow_rsa_pkcs1v15=True)


def certificate(key: rsa.RSAPrivateKey, email: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, email)])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=True, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .sign(key, hashes.SHA256()))


def rate(operation: Callable[[], object], seconds: float) -> float:
    operation()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        operation()
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args()
    signer_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    recipient_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    signer = certificate(signer_key, "poststelle@behoerde.example")
    recipient = certificate(recipient_key, "anwalt@kanzlei.example")
    recipient_public = recipient_key.public_key()

    for label, size in (("3 KB", 3 * 1024), ("1 MB", 1024 * 1024)):
        body = (os.urandom(size // 2).hex()[:size]).encode()
        entity = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body

        def bare(entity: bytes = entity) -> bytes:
            digest = hashes.Hash(hashes.SHA256())
            digest.update(entity)
            signature = signer_key.sign(
                digest.finalize(), padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                _prehashed())
            key, nonce = AESGCM.generate_key(bit_length=256), os.urandom(12)
            ciphertext = AESGCM(key).encrypt(nonce, entity + signature, None)
            recipient_public.encrypt(key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                       algorithm=hashes.SHA256(), label=None))
            return ciphertext

        def ours(entity: bytes = entity) -> bytes:
            return sign_and_encrypt_entity(entity, signer_key, signer, [recipient])

        def interoperable(entity: bytes = entity) -> bytes:
            return sign_and_encrypt_entity(entity, signer_key, signer, [recipient],
                                           encrypt_options=INTEROPERABLE)

        baseline = rate(bare, args.seconds)
        siegel = rate(ours, args.seconds)
        cbc = rate(interoperable, args.seconds)
        print(f"{label}: bare primitives {baseline:8.1f}/s, siegel {siegel:8.1f}/s, "
              f"ratio {siegel / baseline:.2f}; interoperable (CBC, PKCS#1 v1.5) {cbc:8.1f}/s")


def _prehashed() -> object:
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    return Prehashed(hashes.SHA256())


if __name__ == "__main__":
    main()
