"""The recipients' mail programs as the tests run them: NSS's ``cmsutil`` (Thunderbird's library)
and GnuPG's ``gpgsm`` (GpgOL, Kleopatra), each with a throwaway database/home per test.

Both are driven non-interactively:

* NSS: ``certutil -N --empty-password`` creates an empty database; ``pk12util -W`` imports the
  recipient's key; the root gets trust ``C,C,C`` (a CA for e-mail). ``cmsutil -D -u 4`` verifies
  for certUsageEmailSigner (exit status 0 even for a bad signature, so the status line is read).
* gpgsm: ``--batch --pinentry-mode loopback --passphrase-fd 0`` (the PKCS#12 and agent passphrase
  come from stdin, no pinentry); ``gpgsm.conf`` sets ``disable-crl-checks`` (the test CA
  publishes no CRL, and gpgsm would ask dirmngr for one) and ``disable-policy-checks`` (our test
  certificates carry no policies); the root is trusted through ``trustlist.txt`` with the
  ``relax`` flag. The home is a short directory under /tmp because gpg-agent's socket path must
  fit into 108 bytes; its agent is stopped with ``gpgconf --kill`` for that home only.
* gpgsm 2.2 reads PKCS#12 only with the old PBE (3DES/SHA-1) that the tests use for the test key,
  and crashes importing an EC key: EC recipients are measured as "cannot decrypt".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

CMSUTIL = shutil.which("cmsutil")
CERTUTIL = shutil.which("certutil")
PK12UTIL = shutil.which("pk12util")
GPGSM = shutil.which("gpgsm")
GPGCONF = shutil.which("gpgconf")
P12_PASSWORD = "test"


def legacy_p12(key: object, certificate: x509.Certificate, chain: list[x509.Certificate]) -> bytes:
    """PKCS#12 with PBE-SHA1-3DES: gpgsm 2.2 cannot read the PBES2/AES that is the default now."""
    encryption = (serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(2048)
                  .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                  .hmac_hash(hashes.SHA1()).build(P12_PASSWORD.encode()))
    return pkcs12.serialize_key_and_certificates(b"recipient", key, certificate,  # type: ignore[arg-type]
                                                 chain, encryption)


def _run(args: list[str], *, input: bytes | None = None, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[bytes]:
    # No terminal: a program that would prompt fails at once instead of waiting.
    return subprocess.run(args, input=input if input is not None else b"", capture_output=True,
                          env=env, timeout=30)


class Nss:
    """An NSS database in ``directory`` holding one recipient's key and trusting ``root``."""

    def __init__(self, directory: Path, root: x509.Certificate) -> None:
        assert CMSUTIL and CERTUTIL and PK12UTIL, "libnss3-tools is missing (.ci/system-packages)"
        self.directory = directory
        self.db = f"sql:{directory}"
        if (directory / "cert9.db").exists():
            return
        directory.mkdir(parents=True, exist_ok=True)
        _check(_run([CERTUTIL, "-N", "-d", self.db, "--empty-password"]))
        root_pem = directory / "root.pem"
        root_pem.write_bytes(root.public_bytes(serialization.Encoding.PEM))
        _check(_run([CERTUTIL, "-A", "-d", self.db, "-n", "root", "-t", "C,C,C", "-i",
                     str(root_pem)]))

    def import_identity(self, p12: bytes) -> None:
        path = self.directory / "identity.p12"
        path.write_bytes(p12)
        _check(_run([PK12UTIL, "-i", str(path), "-d", self.db, "-W", P12_PASSWORD, "-K", ""]))

    def decrypt(self, der: bytes) -> subprocess.CompletedProcess[bytes]:
        """``cmsutil -D``: stdout is the content when the exit status is 0."""
        path = self.directory / "in.p7m"
        path.write_bytes(der)
        return _run([CMSUTIL, "-D", "-i", str(path), "-d", self.db, "-p", ""])

    def verify(self, signature: bytes, content: bytes) -> str:
        """``cmsutil -D -c content -u 4``; returns the signer status (``GoodSignature`` if good)."""
        (self.directory / "sig.p7s").write_bytes(signature)
        (self.directory / "content").write_bytes(content)
        result = _run([CMSUTIL, "-D", "-i", str(self.directory / "sig.p7s"), "-c",
                       str(self.directory / "content"), "-d", self.db, "-u", "4", "-n", "-h", "2"])
        for line in result.stdout.decode(errors="replace").split():
            if line.startswith("signer0.status="):
                return line.split("=", 1)[1].rstrip(";")
        return f"exit {result.returncode}: {result.stderr.decode(errors='replace')[:300]}"

    def sign(self, content: bytes, nickname: str) -> bytes:
        """A detached signature with signing time and SMIMECapabilities, as Thunderbird makes."""
        (self.directory / "content").write_bytes(content)
        result = _check(_run([CMSUTIL, "-S", "-G", "-P", "-T", "-N", nickname, "-i",
                              str(self.directory / "content"), "-d", self.db, "-p", ""]))
        return result.stdout

    def encrypt(self, content: bytes, recipient: x509.Certificate) -> bytes:
        """EnvelopedData for ``recipient`` (cmsutil's choice of algorithms)."""
        pem = self.directory / "recipient.pem"
        pem.write_bytes(recipient.public_bytes(serialization.Encoding.PEM))
        _check(_run([CERTUTIL, "-A", "-d", self.db, "-n", "peer", "-t", ",,", "-i",
                     str(pem)]))
        (self.directory / "content").write_bytes(content)
        return _check(_run([CMSUTIL, "-E", "-r", "peer", "-u", "5", "-i",
                            str(self.directory / "content"), "-d", self.db, "-p", ""])).stdout


class Gpgsm:
    """A gpgsm home trusting ``root``; use :func:`gpgsm_home` to get one that is cleaned up."""

    def __init__(self, home: Path, root: x509.Certificate) -> None:
        assert GPGSM and GPGCONF, "gpgsm is missing (.ci/system-packages)"
        self.home = home
        self.env = {**os.environ, "GNUPGHOME": str(home)}
        (home / "gpgsm.conf").write_text("disable-crl-checks\ndisable-policy-checks\n")
        (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
        root_pem = home / "root.pem"
        root_pem.write_bytes(root.public_bytes(serialization.Encoding.PEM))
        _check(self._gpgsm("--import", str(root_pem)))
        fingerprint = root.fingerprint(hashes.SHA1()).hex().upper()
        (home / "trustlist.txt").write_text(f"{fingerprint} S relax\n")

    def _gpgsm(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        assert GPGSM
        return _run([GPGSM, "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0",
                     *args], input=input if input is not None else P12_PASSWORD.encode() + b"\n",
                    env=self.env)

    def import_identity(self, p12: bytes) -> subprocess.CompletedProcess[bytes]:
        path = self.home / "identity.p12"
        path.write_bytes(p12)
        return self._gpgsm("--import", str(path))

    def import_certificate(self, certificate: x509.Certificate) -> None:
        path = self.home / "cert.pem"
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _check(self._gpgsm("--import", str(path)))

    def decrypt(self, der: bytes) -> subprocess.CompletedProcess[bytes]:
        path = self.home / "in.p7m"
        path.write_bytes(der)
        return self._gpgsm("--decrypt", str(path))

    def verify(self, signature: bytes, content: bytes) -> subprocess.CompletedProcess[bytes]:
        """Exit status 0 and ``GOODSIG`` and ``TRUST_FULLY`` on the status channel when good."""
        (self.home / "sig.p7s").write_bytes(signature)
        (self.home / "content").write_bytes(content)
        return self._gpgsm("--status-fd", "1", "--verify", str(self.home / "sig.p7s"),
                           str(self.home / "content"))

    def verified(self, signature: bytes, content: bytes) -> bool:
        result = self.verify(signature, content)
        status = result.stdout.decode(errors="replace")
        return result.returncode == 0 and "GOODSIG" in status and "TRUST_FULLY" in status

    def sign(self, content: bytes, signer: str) -> bytes:
        (self.home / "content").write_bytes(content)
        return _check(self._gpgsm("--include-certs", "-1", "-u", signer, "--detach-sign",
                                  str(self.home / "content"))).stdout

    def encrypt(self, content: bytes, recipient: str) -> bytes:
        (self.home / "content").write_bytes(content)
        return _check(self._gpgsm("-r", recipient, "--encrypt", str(self.home / "content"))).stdout


@contextmanager
def gpgsm_home(root: x509.Certificate) -> Iterator[Gpgsm]:
    """A throwaway gpgsm home (short path for the agent's socket); its agent stopped after."""
    home = Path(tempfile.mkdtemp(prefix="siegel-gpgsm-"))
    home.chmod(0o700)
    try:
        yield Gpgsm(home, root)
    finally:
        assert GPGCONF
        _run([GPGCONF, "--kill", "gpg-agent"], env={**os.environ, "GNUPGHOME": str(home)})
        shutil.rmtree(home, ignore_errors=True)


def _check(result: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, result.args))} failed ({result.returncode}):\n"
                             f"{result.stderr.decode(errors='replace')}")
    return result
