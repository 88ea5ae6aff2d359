"""Fixtures of the S/MIME tests: the session PKI and runners for the real openssl binary."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from smime_pki import (
    OPENSSL,
    OpenSSL,
    OpenSSLFails,
    Pki,
    build_pki,
    key_usage,
    make_certificate,
    write_identity,
)

LAWYER = "anwalt@kanzlei.example"
OFFICE = "beratung@verein.example"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Root CA (RSA 3072), intermediate (P-384) and RSA/EC end entities, generated once."""
    return build_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def openssl() -> OpenSSL:
    """Run ``openssl`` with the given arguments; returns stdout, fails the test on exit != 0."""

    def run(*args: str | Path, input: bytes | None = None) -> bytes:
        try:
            result = subprocess.run(
                [OPENSSL, *map(str, args)], check=True, capture_output=True, input=input
            )
        except subprocess.CalledProcessError as exc:
            pytest.fail(
                f"openssl {' '.join(map(str, args))} failed ({exc.returncode}):\n"
                f"{exc.stderr.decode(errors='replace')}"
            )
        return result.stdout

    return run


@pytest.fixture(scope="session")
def openssl_fails() -> OpenSSLFails:
    """Run ``openssl`` expecting failure; returns the completed process."""

    def run(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run([OPENSSL, *map(str, args)], capture_output=True)
        assert result.returncode != 0, f"openssl {' '.join(map(str, args))} unexpectedly succeeded"
        return result

    return run


@pytest.fixture(scope="module")
def parties(pki: Pki, tmp_path_factory: pytest.TempPathFactory):
    """External recipients (RSA 3072 and P-256) and the tenant's own identity with its chain."""
    folder = tmp_path_factory.mktemp("parties")

    def leaf(name: str, email: str, key, *, not_after=None):
        usage = (key_usage(digital_signature=True, key_encipherment=True)
                 if isinstance(key, rsa.RSAPrivateKey)
                 else key_usage(digital_signature=True, key_agreement=True))
        cert = make_certificate(subject=name, key=key, issuer=pki.intermediate.cert,
                                issuer_key=pki.intermediate.key, ca=False, key_usage=usage,
                                email=email, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION],
                                not_after=not_after)
        return write_identity(folder, name, key, cert)

    lawyer = leaf("lawyer", LAWYER, rsa.generate_private_key(public_exponent=65537, key_size=3072))
    office = leaf("office", OFFICE, ec.generate_private_key(ec.SECP256R1()))
    expired = leaf("expired", "alt@kanzlei.example", ec.generate_private_key(ec.SECP256R1()),
                   not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    tenant_chain = folder / "tenant-chain.pem"
    tenant_chain.write_bytes(pki.rsa.cert_path.read_bytes() + pki.intermediate.cert_path.read_bytes())
    return {"lawyer": lawyer, "office": office, "expired": expired, "tenant_chain": tenant_chain}
