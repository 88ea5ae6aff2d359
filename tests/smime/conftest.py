"""Fixtures of the S/MIME tests: the session PKI and runners for the real openssl binary."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from smime_pki import OPENSSL, OpenSSL, OpenSSLFails, Pki, build_pki


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
