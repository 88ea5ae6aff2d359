"""The S/MIME certificate directory: imports, selection with reasons, chains, CRL and OCSP.

Everything is real: a throwaway PKI made with `cryptography`, an SQLite store with an encrypted
content key, and a local HTTP server (127.0.0.1 only) that serves CRLs and answers OCSP requests
built and signed with ``cryptography.x509.ocsp``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from siegel import Address, ConfigError
from siegel.clock import FrozenClock
from siegel.config import config_from_mapping
from siegel.crypto import ContentCipher, create_key_file
from siegel.manager import PluginRegistry
from siegel.plugins.smime.capabilities import Capability, SmimeCapabilities
from siegel.plugins.smime.cert_files import ImportFailure
from siegel.plugins.smime.certificates import fingerprint
from siegel.plugins.smime.directory import (
    CERTIFICATES_NAMESPACE,
    INTERMEDIATES_NAMESPACE,
    CertificateDirectory,
    harvest,
)
from siegel.plugins.smime.policy import DirectoryPolicy, SmimeDirectorySettings, policy_from_settings
from siegel.plugins.smime.records import Refusal, Selection
from siegel.sqlite_store import SQLiteStore
from siegel.state import PluginState

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
AES256_GCM = "2.16.840.1.101.3.4.1.46"
AES256_CBC = "2.16.840.1.101.3.4.1.42"


# --- a PKI and a CRL/OCSP server ------------------------------------------------------------------


def name(common_name: str, email: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "siegel directory test"),
                  x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if email:
        attributes.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    return x509.Name(attributes)


def usage(*, signature: bool = True, encipherment: bool = False, agreement: bool = False,
          cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=signature, content_commitment=False,
                         key_encipherment=encipherment, data_encipherment=False,
                         key_agreement=agreement, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def issue(
    subject: x509.Name,
    key: Key,
    issuer: tuple[x509.Certificate, Key] | None,
    *,
    ca: bool = False,
    emails: list[str] | None = None,
    key_usage: x509.KeyUsage | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
    not_before: dt.datetime = NOW - 10 * DAY,
    not_after: dt.datetime = NOW + 365 * DAY,
    crl_url: str | None = None,
    ocsp_url: str | None = None,
    authority_key_id: bool = True,
) -> x509.Certificate:
    issuer_name = issuer[0].subject if issuer else subject
    signing_key = issuer[1] if issuer else key
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        key_usage = key_usage or usage(signature=False, cert_sign=True)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if issuer is not None and authority_key_id:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), False)
    if emails is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(e) for e in emails]), False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), False)
    if crl_url:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), False)
    if ocsp_url:
        builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))]),
            False)
    return builder.sign(signing_key, hashes.SHA256())


def make_crl(issuer: x509.Certificate, key: Key, revoked: dict[int, tuple[dt.datetime, x509.ReasonFlags]],
             *, last_update: dt.datetime = NOW - dt.timedelta(hours=1),
             next_update: dt.datetime = NOW + 7 * DAY) -> x509.CertificateRevocationList:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
               .last_update(last_update).next_update(next_update))
    for serial, (when, reason) in revoked.items():
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
            .add_extension(x509.CRLReason(reason), False).build())
    return builder.sign(key, hashes.SHA256())


class Responder:
    """A real OCSP responder: answers for the root's and the intermediate's certificates."""

    def __init__(self) -> None:
        self.cas: list[tuple[x509.Certificate, Key]] = []
        self.known: set[int] = set()
        self.revoked: dict[int, tuple[dt.datetime, x509.ReasonFlags]] = {}
        self.mode = "issuer"
        self.delegate: tuple[x509.Certificate, Key] | None = None
        self.rogue: tuple[x509.Certificate, Key] | None = None

    def answer(self, body: bytes) -> bytes:
        request = ocsp.load_der_ocsp_request(body)
        for ca, ca_key in self.cas:  # noqa: B007 (used after the loop)
            key_hash = x509.SubjectKeyIdentifier.from_public_key(ca.public_key()).digest
            if request.issuer_key_hash == key_hash:
                break
        else:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(serialization.Encoding.DER)
        serial = request.serial_number
        status, revoked_at, reason = ocsp.OCSPCertStatus.GOOD, None, None
        if serial in self.revoked:
            status = ocsp.OCSPCertStatus.REVOKED
            revoked_at, reason = self.revoked[serial]
        elif serial not in self.known:
            status = ocsp.OCSPCertStatus.UNKNOWN
        this_update, next_update = NOW - dt.timedelta(hours=1), NOW + DAY
        if self.mode == "stale":
            this_update, next_update = NOW - 3 * DAY, NOW - 2 * DAY
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            request.issuer_name_hash, request.issuer_key_hash, serial, request.hash_algorithm,
            status, this_update, next_update, revoked_at, reason)
        for extension in request.extensions:
            if isinstance(extension.value, x509.OCSPNonce):
                nonce = x509.OCSPNonce(b"\x00" * 16) if self.mode == "replay" else extension.value
                builder = builder.add_extension(nonce, critical=False)
        signer, signer_key = ca, ca_key
        certificates: list[x509.Certificate] = []
        if self.mode in ("delegated", "rogue") and self.delegate and ca is self.cas[1][0]:
            signer, signer_key = self.delegate if self.mode == "delegated" else self.rogue  # type: ignore[misc]
            certificates = [signer]
        encoding = ocsp.OCSPResponderEncoding.HASH
        if self.mode == "forged":
            # Claims to be the issuer (by name), signed with some other key.
            signer_key = ec.generate_private_key(ec.SECP256R1())
            signer = issue(ca.subject, signer_key, None, ca=True)
            encoding = ocsp.OCSPResponderEncoding.NAME
        builder = builder.responder_id(encoding, signer)
        if certificates:
            builder = builder.certificates(certificates)
        return builder.sign(signer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class Server:
    """HTTP on 127.0.0.1: GET /NAME.crl serves a CRL, POST /ocsp asks the responder."""

    def __init__(self) -> None:
        self.crls: dict[str, bytes] = {}
        self.overrides: dict[str, bytes] = {}
        self.hits: dict[str, int] = {}
        self.responder = Responder()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                body = server.overrides.get(self.path, server.crls.get(self.path))
                if body is None:
                    self._send(404, b"not found", "text/plain")
                else:
                    self._send(200, body, "application/pkix-crl")

            def do_POST(self) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self._send(200, server.responder.answer(body), "application/ocsp-response")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def dead_url(path: str) -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


@attrs.frozen
class DirectoryPki:
    server: Server
    root: x509.Certificate
    root_key: Key
    intermediate: x509.Certificate
    intermediate_key: Key
    old_intermediate: x509.Certificate
    other_root: x509.Certificate
    other_intermediate: x509.Certificate
    rsa_key: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey
    leaves: dict[str, x509.Certificate]
    root_crl: x509.CertificateRevocationList
    intermediate_crl: x509.CertificateRevocationList
    revoked_at: dt.datetime

    def __getitem__(self, leaf: str) -> x509.Certificate:
        return self.leaves[leaf]


def build_test_pki(server: Server) -> DirectoryPki:
    base = server.base
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = issue(name("Test Root CA"), root_key, None, ca=True, not_before=NOW - 1000 * DAY,
                 not_after=NOW + 3000 * DAY)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = issue(name("Test Mail CA"), inter_key, (root, root_key), ca=True,
                         crl_url=f"{base}/root.crl", ocsp_url=f"{base}/ocsp",
                         not_before=NOW - 500 * DAY, not_after=NOW + 2000 * DAY)
    old_intermediate = issue(name("Test Mail CA"), inter_key, (root, root_key), ca=True,
                             not_before=NOW - 900 * DAY, not_after=NOW - 100 * DAY)
    other_root_key = ec.generate_private_key(ec.SECP256R1())
    other_root = issue(name("Other Root CA"), other_root_key, None, ca=True)
    other_inter_key = ec.generate_private_key(ec.SECP256R1())
    other_intermediate = issue(name("Other Mail CA"), other_inter_key, (other_root, other_root_key),
                               ca=True)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    by_ca = (intermediate, inter_key)
    dead = dead_url("/ocsp")
    urls = {"crl_url": f"{base}/intermediate.crl", "ocsp_url": f"{base}/ocsp"}
    rsa_use = usage(encipherment=True)
    ec_use = usage(agreement=True)
    email = [ExtendedKeyUsageOID.EMAIL_PROTECTION]

    def leaf(cn: str, address: str | None, key: Key, **options: Any) -> x509.Certificate:
        options.setdefault("key_usage", rsa_use if isinstance(key, rsa.RSAPrivateKey) else ec_use)
        options.setdefault("eku", email)
        for option, value in urls.items():
            options.setdefault(option, value)
        return issue(name(cn, options.pop("subject_email", None)), key,
                     options.pop("issuer", by_ca),
                     emails=options.pop("emails", [address] if address else None), **options)

    leaves = {
        "rsa": leaf("RSA User", "rsa@example.net", rsa_key),
        "ec": leaf("EC User", "ec@example.net", ec_key),
        "weak": leaf("Weak User", "weak@example.net", weak_key),
        "expired": leaf("Expired User", "expired@example.net", ec_key,
                        not_before=NOW - 400 * DAY, not_after=NOW - 2 * DAY),
        "notyet": leaf("Future User", "notyet@example.net", ec_key,
                       not_before=NOW + 3 * DAY, not_after=NOW + 300 * DAY),
        "wrong": leaf("Wrong User", None, ec_key, emails=["other@example.net"],
                      subject_email="wrong@example.net"),
        "legacy": leaf("Legacy User", None, ec_key, emails=None,
                       subject_email="Legacy@Example.NET"),
        "noke": leaf("Signing Only", "noke@example.net", rsa_key,
                     key_usage=usage(signature=True)),
        "noka": leaf("EC Signing Only", "noka@example.net", ec_key,
                     key_usage=usage(signature=True)),
        "server": leaf("Server Only", "server@example.net", ec_key,
                       eku=[ExtendedKeyUsageOID.SERVER_AUTH]),
        "any_eku": leaf("Any EKU", "any@example.net", ec_key,
                        eku=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]),
        "untrusted": leaf("Untrusted User", "untrusted@example.net", ec_key,
                          issuer=(other_intermediate, other_inter_key)),
        "revoked_crl": leaf("Revoked CRL", "revoked-crl@example.net", ec_key,
                            ocsp_url=None),
        "revoked_ocsp": leaf("Revoked OCSP", "revoked-ocsp@example.net", ec_key),
        "unknown_ocsp": leaf("Unknown OCSP", "unknown@example.net", ec_key),
        "dead": leaf("Dead Responder", "dead@example.net", ec_key, ocsp_url=dead,
                     crl_url=dead_url("/intermediate.crl")),
        "local": leaf("Local CRL", "local@example.net", ec_key, ocsp_url=None, crl_url=None),
        "local_revoked": leaf("Local Revoked", "local-revoked@example.net", ec_key,
                              ocsp_url=None, crl_url=None),
        "multi_old": leaf("Multi Old", "multi@example.net", ec_key,
                          not_before=NOW - 30 * DAY, not_after=NOW + 300 * DAY),
        "multi_short": leaf("Multi Short", "multi@example.net", ec_key,
                            not_before=NOW - 5 * DAY, not_after=NOW + 100 * DAY),
        "multi_long": leaf("Multi Long", "multi@example.net", ec_key,
                           not_before=NOW - 5 * DAY, not_after=NOW + 200 * DAY),
        "two": leaf("Two Addresses", None, ec_key,
                    emails=["first@example.net", "second@example.org"]),
        "alice": leaf("Alice", "alice@example.net", rsa_key),
        "forged": leaf("Forged User", "forged@example.net", ec_key, authority_key_id=False,
                       issuer=(intermediate, ec.generate_private_key(ec.SECP256R1()))),
        "self_signed": issue(name("Self Signed"), ec_key, None, emails=["self@example.net"],
                             key_usage=ec_use, eku=email),
    }
    revoked_at = NOW - 2 * DAY
    intermediate_crl = make_crl(intermediate, inter_key, {
        leaves["revoked_crl"].serial_number: (revoked_at, x509.ReasonFlags.key_compromise),
        leaves["local_revoked"].serial_number: (revoked_at, x509.ReasonFlags.key_compromise),
    })
    root_crl = make_crl(root, root_key, {})
    server.crls["/intermediate.crl"] = intermediate_crl.public_bytes(serialization.Encoding.DER)
    server.crls["/root.crl"] = root_crl.public_bytes(serialization.Encoding.DER)
    responder = server.responder
    responder.cas = [(root, root_key), (intermediate, inter_key)]
    responder.known = {c.serial_number for c in (intermediate, *leaves.values())
                       } - {leaves["unknown_ocsp"].serial_number}
    responder.revoked = {leaves["revoked_ocsp"].serial_number:
                         (NOW - 3 * DAY, x509.ReasonFlags.superseded)}
    delegate_key = ec.generate_private_key(ec.SECP256R1())
    responder.delegate = (issue(name("Test OCSP Responder"), delegate_key, by_ca,
                                key_usage=usage(signature=True),
                                eku=[ExtendedKeyUsageOID.OCSP_SIGNING]), delegate_key)
    responder.rogue = (issue(name("Rogue OCSP Responder"), delegate_key, by_ca,
                             key_usage=usage(signature=True),
                             eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION]), delegate_key)
    return DirectoryPki(server=server, root=root, root_key=root_key, intermediate=intermediate,
                   intermediate_key=inter_key, old_intermediate=old_intermediate,
                   other_root=other_root, other_intermediate=other_intermediate,
                   rsa_key=rsa_key, ec_key=ec_key, leaves=leaves, root_crl=root_crl,
                   intermediate_crl=intermediate_crl, revoked_at=revoked_at)


@pytest.fixture(scope="session")
def http_server() -> Iterator[Server]:
    server = Server()
    yield server
    server.close()


@pytest.fixture(scope="session")
def pki(http_server: Server) -> DirectoryPki:
    return build_test_pki(http_server)


@pytest.fixture(autouse=True)
def _reset_server(pki: DirectoryPki) -> Iterator[None]:
    yield
    pki.server.overrides.clear()
    pki.server.responder.mode = "issuer"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    create_key_file(tmp_path / "store.key")
    database = SQLiteStore(tmp_path / "siegel.db", ContentCipher.from_key_file(tmp_path / "store.key"))
    await database.open()
    yield database
    await database.close()


MakeDirectory = Callable[..., CertificateDirectory]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def make_directory(store: SQLiteStore, clock: FrozenClock, pki: DirectoryPki) -> MakeDirectory:
    """A directory on the test's store; keyword arguments override the policy."""

    def make(**policy: Any) -> CertificateDirectory:
        policy.setdefault("trust_anchors", [pki.root])
        policy.setdefault("revocation", "crl-or-ocsp")
        policy.setdefault("revocation_timeout_seconds", 5.0)
        return CertificateDirectory(PluginState(store, CERTIFICATES_NAMESPACE, clock),
                                    PluginState(store, INTERMEDIATES_NAMESPACE, clock), clock,
                                    DirectoryPolicy(**policy))

    return make


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


async def add(directory: CertificateDirectory, pki: DirectoryPki, *leaves: str) -> None:
    await directory.add_certificates([pki.intermediate, *(pki[leaf] for leaf in leaves)],
                                     source="test")


def only_refusal(selection: Selection) -> Refusal:
    assert selection.best is None, selection.reason.en
    assert len(selection.refused) == 1, selection.reason.en
    return selection.refused[0]


# --- importing ------------------------------------------------------------------------------------


def _p12(pki: DirectoryPki, password: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    return pkcs12.serialize_key_and_certificates(
        b"alice", pki.rsa_key, pki["alice"], [pki.intermediate, pki.root], encryption)


FORMATS: dict[str, Callable[[DirectoryPki], bytes]] = {
    "pem": lambda pki: pem(pki["alice"], pki.intermediate),
    "der": lambda pki: pki["alice"].public_bytes(serialization.Encoding.DER),
    "pkcs7-pem": lambda pki: pkcs7.serialize_certificates(
        [pki["alice"], pki.intermediate], serialization.Encoding.PEM),
    "pkcs7-der": lambda pki: pkcs7.serialize_certificates(
        [pki["alice"], pki.intermediate, pki.root], serialization.Encoding.DER),
    "pkcs12": lambda pki: _p12(pki, b"geheim"),
    "pkcs12-no-password": lambda pki: _p12(pki, None),
}


@pytest.mark.parametrize("kind", list(FORMATS))
async def test_every_format_imports_into_the_store_and_is_selected(
        kind: str, pki: DirectoryPki, make_directory: MakeDirectory, store: SQLiteStore,
        tmp_path: Path) -> None:
    directory = make_directory()
    path = tmp_path / f"alice.{kind}"
    path.write_bytes(FORMATS[kind](pki))
    report = await directory.import_file(path, password=b"geheim" if kind == "pkcs12" else None)
    assert [(e.address, e.fingerprint) for e in report.added] == [
        ("alice@example.net", fingerprint(pki["alice"]))]
    if kind == "der":
        assert report.intermediates == ()
        selection = await directory.find_usable("alice@example.net")
        assert only_refusal(selection).codes == ("untrusted",)
        assert 'issuer "CN=Test Mail CA,O=siegel directory test"' in selection.reason.en
        await directory.add_certificates([pki.intermediate], source="test")
    else:
        assert report.intermediates == ("CN=Test Mail CA,O=siegel directory test",)
    if kind in ("pkcs7-der", "pkcs12", "pkcs12-no-password"):
        assert any("root certificate not imported" in note for note in report.skipped)
    if kind.startswith("pkcs12"):
        assert any("private key was not imported" in note for note in report.skipped)

    selection = await directory.find_usable("Alice@EXAMPLE.net")
    assert selection.best is not None, selection.reason.en
    assert selection.best.fingerprint == fingerprint(pki["alice"])
    assert [fingerprint(c) for c in selection.best.chain] == [
        fingerprint(pki["alice"]), fingerprint(pki.intermediate), fingerprint(pki.root)]
    assert selection.availability().available

    record = await store.state_get(CERTIFICATES_NAMESPACE,
                                   f"alice@example.net/{fingerprint(pki['alice'])}")
    assert record is not None
    data = json.loads(record.value)
    assert data["source"] == f"import:alice.{kind}"
    assert data["added_at"] == NOW.isoformat()
    assert x509.load_der_x509_certificate(base64.b64decode(data["der"])) == pki["alice"]
    assert data["capabilities"] is None and data["last_used"] is None

    again = await directory.import_file(path, password=b"geheim" if kind == "pkcs12" else None)
    assert again.added == () and len(again.present) == 1


async def test_the_directory_keys_addresses_like_the_core(
        pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    """One rule keys addresses everywhere (:attr:`siegel.Address.key`): needless quotes around the
    local part and its case do not hide a recipient's certificate."""
    directory = make_directory()
    await directory.add_certificates([pki.intermediate, pki["alice"]], source="test")
    for spelling in ('"alice"@example.net', '"Alice"@EXAMPLE.net', "ALICE@example.net"):
        assert Address.parse(spelling).key == "alice@example.net"
        selection = await directory.find_usable(spelling)
        assert selection.address == "alice@example.net"
        assert selection.best is not None, selection.reason.en
        assert selection.best.fingerprint == fingerprint(pki["alice"])
        assert [e.fingerprint for e in await directory.entries(spelling)] == [
            fingerprint(pki["alice"])]


async def test_pkcs12_password_problems_and_garbage_are_import_failures(
        pki: DirectoryPki, make_directory: MakeDirectory, tmp_path: Path) -> None:
    directory = make_directory()
    path = tmp_path / "alice.p12"
    path.write_bytes(_p12(pki, b"geheim"))
    with pytest.raises(ImportFailure, match="needs a password"):
        await directory.import_file(path)
    with pytest.raises(ImportFailure, match="wrong password"):
        await directory.import_file(path, password=b"falsch")
    (tmp_path / "junk.pem").write_bytes(b"hello")
    with pytest.raises(ImportFailure, match=r"junk\.pem: not a certificate file"):
        await directory.import_file(tmp_path / "junk.pem")
    (tmp_path / "key.pem").write_bytes(pki.ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(ImportFailure, match="no certificate in this PEM file"):
        await directory.import_file(tmp_path / "key.pem")
    with pytest.raises(ImportFailure, match="cannot read"):
        await directory.import_file(tmp_path / "missing.pem")
    assert await directory.entries() == []


async def test_a_certificate_naming_two_addresses_is_filed_under_each(
        pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    directory = make_directory()
    await add(directory, pki, "two")
    assert [e.address for e in await directory.entries()] == [
        "first@example.net", "second@example.org"]
    for address in ("first@example.net", "second@example.org"):
        assert (await directory.find_usable(address)).best is not None


# --- selection and reasons ------------------------------------------------------------------------


async def test_good_rsa_and_ec_certificates_are_usable(
        pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    directory = make_directory()
    await add(directory, pki, "rsa", "ec", "any_eku", "legacy")
    for address, leaf in (("rsa@example.net", "rsa"), ("ec@example.net", "ec"),
                          ("any@example.net", "any_eku"), ("legacy@example.net", "legacy")):
        selection = await directory.find_usable(address)
        assert selection.best is not None, selection.reason.en
        assert selection.best.fingerprint == fingerprint(pki[leaf])
        assert selection.refused == ()
        assert selection.reason.en.startswith(f"S/MIME certificate {fingerprint(pki[leaf])[:16]}")
        assert "gültig bis" in selection.reason.de


async def test_the_newest_certificate_wins_then_the_longest_validity(
        pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    directory = make_directory()
    await add(directory, pki, "multi_old", "multi_short", "multi_long")
    selection = await directory.find_usable("multi@example.net")
    assert [u.fingerprint for u in selection.usable] == [
        fingerprint(pki["multi_long"]), fingerprint(pki["multi_short"]),
        fingerprint(pki["multi_old"])]


REFUSALS = [
    ("expired", "expired@example.net", "expired",
     "expired since " + (NOW - 2 * DAY).strftime("%Y-%m-%d %H:%M UTC"), "abgelaufen seit"),
    ("notyet", "notyet@example.net", "not-yet-valid",
     "not valid before " + (NOW + 3 * DAY).strftime("%Y-%m-%d %H:%M UTC"), "erst ab"),
    ("wrong", "wrong@example.net", "wrong-address",
     "wrong@example.net appears only in the subject's emailAddress", "nennt other@example.net"),
    ("noke", "noke@example.net", "no-key-encipherment",
     "keyUsage does not permit key encipherment", "keyEncipherment"),
    ("noka", "noka@example.net", "no-key-agreement",
     "keyUsage does not permit key agreement", "keyAgreement"),
    ("server", "server@example.net", "no-email-protection",
     "extendedKeyUsage lacks emailProtection (has serverAuth)", "ohne emailProtection"),
    ("weak", "weak@example.net", "weak-key", "RSA key 2048 bits below minimum 3000",
     "RSA-Schlüssel mit 2048 Bit unter dem Minimum von 3000 Bit"),
    ("forged", "forged@example.net", "untrusted",
     'untrusted chain: the signature of "CN=Forged User,O=siegel directory test" does not verify '
     'with the key of "CN=Test Mail CA,O=siegel directory test"', "passt nicht zu"),
    ("untrusted", "untrusted@example.net", "untrusted",
     'untrusted chain: issuer "CN=Other Mail CA,O=siegel directory test" of '
     '"CN=Untrusted User,O=siegel directory test" is missing', "Zertifikatskette nicht"),
]


@pytest.mark.parametrize(("leaf", "address", "code", "english", "german"), REFUSALS,
                         ids=[r[0] for r in REFUSALS])
async def test_each_bad_certificate_is_refused_with_its_reason(
        leaf: str, address: str, code: str, english: str, german: str, pki: DirectoryPki,
        make_directory: MakeDirectory) -> None:
    directory = make_directory()
    await add(directory, pki, leaf, "rsa")
    selection = await directory.find_usable(address)
    refusal = only_refusal(selection)
    assert refusal.codes == (code,)
    assert refusal.fingerprint == fingerprint(pki[leaf])
    assert english in refusal.reason.en
    assert german in refusal.reason.de
    assert english in selection.reason.en and not selection.availability().available
    assert selection.reason.en.startswith(f"no usable S/MIME certificate for {address}: ")


async def test_weak_rsa_is_allowed_only_when_the_policy_says_so(
        pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    directory = make_directory(allow_rsa_below_minimum=True)
    await add(directory, pki, "weak")
    assert (await directory.find_usable("weak@example.net")).best is not None
    strict = make_directory(minimum_rsa_bits=4096)
    refusal = only_refusal(await strict.find_usable("weak@example.net"))
    assert "RSA key 2048 bits below minimum 4096" in refusal.reason.en
    await add(strict, pki, "rsa")
    assert "RSA key 3072 bits below minimum 4096" in only_refusal(
        await strict.find_usable("rsa@example.net")).reason.en


async def test_curves_outside_the_policy_are_refused(
        pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    directory = make_directory(allowed_curves=frozenset({"secp384r1"}))
    await add(directory, pki, "ec")
    refusal = only_refusal(await directory.find_usable("ec@example.net"))
    assert refusal.codes == ("unsupported-key",)
    assert "elliptic curve secp256r1 is not allowed" in refusal.reason.en


async def test_harvest_ignores_ca_certificates_and_needs_an_aware_time(
        pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    directory = make_directory()
    assert await harvest(directory, pki.intermediate, [pki.root], [AES256_GCM], NOW) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        await harvest(directory, pki["ec"], [], [AES256_GCM], NOW.replace(tzinfo=None))
    assert await directory.entries() == []


async def test_several_problems_are_all_named(pki: DirectoryPki, make_directory: MakeDirectory,
                                              clock: FrozenClock) -> None:
    directory = make_directory()
    await add(directory, pki, "noke")
    clock.advance(days=400)
    refusal = only_refusal(await directory.find_usable("noke@example.net"))
    assert refusal.codes == ("expired", "no-key-encipherment")


async def test_chains_name_the_missing_or_untrusted_link(
        pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    directory = make_directory()
    await directory.add_certificates([pki["untrusted"], pki.other_intermediate, pki.other_root],
                                     source="test")
    refusal = only_refusal(await directory.find_usable("untrusted@example.net"))
    assert ('issuer "CN=Other Root CA,O=siegel directory test" of "CN=Other Mail CA,O=siegel '
            'directory test" is missing') in refusal.reason.en
    await directory.add_certificates([pki["self_signed"]], source="test")
    refusal = only_refusal(await directory.find_usable("self@example.net"))
    assert '"CN=Self Signed,O=siegel directory test" is not a configured trust anchor' in (
        refusal.reason.en)

    no_anchor = make_directory(trust_anchors=[])
    await add(no_anchor, pki, "rsa")
    assert "no trust anchors are configured" in only_refusal(
        await no_anchor.find_usable("rsa@example.net")).reason.en


async def test_an_expired_intermediate_is_named_and_a_valid_copy_is_found(
        pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    directory = make_directory(revocation="off")
    await directory.add_certificates([pki["ec"], pki.old_intermediate], source="test")
    refusal = only_refusal(await directory.find_usable("ec@example.net"))
    assert 'intermediate "CN=Test Mail CA,O=siegel directory test" expired since' in (
        refusal.reason.en)
    await directory.add_certificates([pki.intermediate], source="test")
    assert (await directory.find_usable("ec@example.net")).best is not None


async def test_no_certificate_at_all(make_directory: MakeDirectory) -> None:
    selection = await make_directory().find_usable("nobody@example.net")
    assert selection.best is None and selection.refused == ()
    assert selection.reason == selection.availability().reason
    assert selection.reason.en == "no S/MIME certificate for nobody@example.net in the directory"
    assert selection.reason.de == "kein S/MIME-Zertifikat für nobody@example.net im Verzeichnis"


# --- revocation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["crl", "crl-or-ocsp"])
async def test_revoked_on_the_fetched_crl(mode: str, pki: DirectoryPki,
                                          make_directory: MakeDirectory) -> None:
    directory = make_directory(revocation=mode)
    await add(directory, pki, "revoked_crl", "ec")
    refusal = only_refusal(await directory.find_usable("revoked-crl@example.net"))
    assert refusal.codes == ("revoked",)
    when = pki.revoked_at.strftime("%Y-%m-%d %H:%M UTC")
    assert f'"CN=Revoked CRL,O=siegel directory test" revoked at {when} (keyCompromise)' in (
        refusal.reason.en)
    assert f"{pki.server.base}/intermediate.crl" in refusal.reason.en
    assert "gesperrt" in refusal.reason.de
    if mode == "crl":
        assert (await directory.find_usable("ec@example.net")).best is not None


async def test_revoked_by_ocsp(pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    directory = make_directory(revocation="ocsp")
    await add(directory, pki, "revoked_ocsp", "ec")
    refusal = only_refusal(await directory.find_usable("revoked-ocsp@example.net"))
    assert refusal.codes == ("revoked",)
    assert "(superseded)" in refusal.reason.en and f"OCSP {pki.server.base}/ocsp" in (
        refusal.reason.en)
    # The CRL does not list it: only OCSP knows.
    crl_only = make_directory(revocation="crl")
    assert (await crl_only.find_usable("revoked-ocsp@example.net")).best is not None
    assert (await directory.find_usable("ec@example.net")).best is not None


@pytest.mark.parametrize("mode", ["ocsp", "crl-or-ocsp"])
async def test_unreachable_responder_fails_closed(mode: str, pki: DirectoryPki,
                                                  make_directory: MakeDirectory) -> None:
    directory = make_directory(revocation=mode)
    await add(directory, pki, "dead")
    refusal = only_refusal(await directory.find_usable("dead@example.net"))
    assert refusal.codes == ("revocation-unknown",)
    assert refusal.reason.en.count("ConnectError") == (1 if mode == "ocsp" else 2)
    assert 'revocation status of "CN=Dead Responder,O=siegel directory test" unknown' in (
        refusal.reason.en)


async def test_ocsp_unknown_is_refused_unless_a_crl_answers(
        pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    directory = make_directory(revocation="ocsp")
    await add(directory, pki, "unknown_ocsp")
    refusal = only_refusal(await directory.find_usable("unknown@example.net"))
    assert refusal.codes == ("revocation-unknown",)
    assert "status 'unknown' (the responder does not know the certificate)" in refusal.reason.en
    fallback = make_directory(revocation="crl-or-ocsp")
    assert (await fallback.find_usable("unknown@example.net")).best is not None


async def test_ocsp_answers_from_a_delegated_responder(
        pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    pki.server.responder.mode = "delegated"
    directory = make_directory(revocation="ocsp")
    await add(directory, pki, "ec", "revoked_ocsp")
    assert (await directory.find_usable("ec@example.net")).best is not None
    assert only_refusal(await directory.find_usable("revoked-ocsp@example.net")).codes == (
        "revoked",)


@pytest.mark.parametrize(("mode", "message"), [
    ("rogue", 'responder "CN=Rogue OCSP Responder,O=siegel directory test" lacks the OCSPSigning'),
    ("forged", "the OCSP response signature does not verify"),
    ("replay", "OCSP nonce does not match (replayed answer?)"),
    ("stale", "outdated answer (thisUpdate " + (NOW - 3 * DAY).strftime("%Y-%m-%d %H:%M UTC")),
])
async def test_ocsp_answers_that_do_not_verify_are_refused(
        mode: str, message: str, pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    pki.server.responder.mode = mode
    directory = make_directory(revocation="ocsp")
    await add(directory, pki, "ec")
    refusal = only_refusal(await directory.find_usable("ec@example.net"))
    assert refusal.codes == ("revocation-unknown",)
    assert message in refusal.reason.en


async def test_a_crl_with_a_bad_signature_is_not_believed(
        pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    forged = make_crl(pki.intermediate, ec.generate_private_key(ec.SECP256R1()), {})
    pki.server.overrides["/intermediate.crl"] = forged.public_bytes(serialization.Encoding.PEM)
    directory = make_directory(revocation="crl")
    await add(directory, pki, "revoked_crl")
    refusal = only_refusal(await directory.find_usable("revoked-crl@example.net"))
    assert refusal.codes == ("revocation-unknown",)
    assert "CRL signature does not verify with the key of" in refusal.reason.en


async def test_an_outdated_crl_is_not_believed(pki: DirectoryPki, make_directory: MakeDirectory,
                                               clock: FrozenClock) -> None:
    directory = make_directory(revocation="crl")
    await add(directory, pki, "ec")
    clock.advance(days=8)
    refusal = only_refusal(await directory.find_usable("ec@example.net"))
    assert "CRL outdated since" in refusal.reason.en


async def test_local_crl_files_without_fetching(pki: DirectoryPki, make_directory: MakeDirectory,
                                                tmp_path: Path) -> None:
    crl_file = tmp_path / "ca.crl"
    crl_file.write_bytes(pki.intermediate_crl.public_bytes(serialization.Encoding.PEM)
                         + pki.root_crl.public_bytes(serialization.Encoding.PEM))
    hits = dict(pki.server.hits)
    directory = make_directory(revocation="crl", crl_files=[crl_file], fetch_revocation=False)
    await add(directory, pki, "local", "local_revoked", "rsa")
    assert (await directory.find_usable("local@example.net")).best is not None
    assert only_refusal(await directory.find_usable("local-revoked@example.net")).codes == (
        "revoked",)
    assert pki.server.hits == hits  # nothing was fetched
    # A replaced file is read again.
    crl_file.write_bytes(pki.root_crl.public_bytes(serialization.Encoding.DER))
    refusal = only_refusal(await directory.find_usable("local@example.net"))
    assert refusal.codes == ("revocation-unknown",)
    assert "no CRL of" in refusal.reason.en or "switched off" in refusal.reason.en


async def test_fetched_crls_are_cached_for_cache_seconds(
        pki: DirectoryPki, make_directory: MakeDirectory, clock: FrozenClock) -> None:
    directory = make_directory(revocation="crl", cache_seconds=600)
    await add(directory, pki, "ec", "revoked_crl")
    before = pki.server.hits.get("/intermediate.crl", 0)
    for _ in range(3):
        assert (await directory.find_usable("ec@example.net")).best is not None
        await directory.find_usable("revoked-crl@example.net")
    assert pki.server.hits["/intermediate.crl"] == before + 1
    clock.advance(seconds=601)
    assert (await directory.find_usable("ec@example.net")).best is not None
    assert pki.server.hits["/intermediate.crl"] == before + 2


async def test_ocsp_answers_are_cached_and_a_dead_responder_is_not_asked_every_time(
        pki: DirectoryPki, make_directory: MakeDirectory, clock: FrozenClock) -> None:
    directory = make_directory(revocation="ocsp", cache_seconds=600)
    await add(directory, pki, "ec", "dead")
    before = pki.server.hits.get("/ocsp", 0)
    for _ in range(3):
        assert (await directory.find_usable("ec@example.net")).best is not None
    assert pki.server.hits["/ocsp"] == before + 2  # the certificate and its intermediate
    clock.advance(seconds=601)
    assert (await directory.find_usable("ec@example.net")).best is not None
    assert pki.server.hits["/ocsp"] == before + 4
    await directory.find_usable("dead@example.net")
    await directory.find_usable("dead@example.net")
    assert directory.revocation.fetches[pki["dead"].extensions.get_extension_for_class(
        x509.AuthorityInformationAccess).value[0].access_location.value] == 1


# --- harvest, use, removal ------------------------------------------------------------------------


async def test_harvest_stores_certificate_capabilities_and_chain(
        pki: DirectoryPki, make_directory: MakeDirectory, store: SQLiteStore) -> None:
    directory = make_directory()
    first = NOW - DAY
    entries = await harvest(directory, pki["ec"], [pki["ec"], pki.intermediate, pki.root],
                            SmimeCapabilities((Capability(AES256_CBC),)), first)
    assert [(e.address, e.source, e.capabilities) for e in entries] == [
        ("ec@example.net", "harvest", (AES256_CBC,))]
    assert [fingerprint(c) for c in await directory.intermediates()] == [
        fingerprint(pki.intermediate)]  # the root is not taken
    selection = await directory.find_usable("ec@example.net")
    assert selection.best is not None and selection.capabilities == (AES256_CBC,)

    await harvest(directory, pki["ec"], [pki["ec"]], [AES256_GCM, AES256_CBC], NOW)
    await harvest(directory, pki["ec"], [pki["ec"]], [AES256_CBC], NOW - 2 * DAY)  # older
    await harvest(directory, pki["ec"], [pki["ec"]], SmimeCapabilities(), NOW)  # none announced
    (entry,) = await directory.entries("ec@example.net")
    assert entry.capabilities == (AES256_GCM, AES256_CBC)
    assert entry.capabilities_at == NOW and entry.seen_at == NOW and entry.added_at == NOW
    record = await store.state_get(CERTIFICATES_NAMESPACE, entry.key)
    assert record is not None
    assert json.loads(record.value)["capabilities"] == [AES256_GCM, AES256_CBC]


async def test_capabilities_of_a_signing_certificate_serve_the_encryption_certificate(
        pki: DirectoryPki, make_directory: MakeDirectory) -> None:
    directory = make_directory()
    await add(directory, pki, "noke")  # signs only
    rsa_encryption = pki["rsa"]
    await harvest(directory, pki["noke"], [], [AES256_GCM], NOW)
    await directory.add_for_address(rsa_encryption, "Noke@EXAMPLE.net", "import:enc.pem")
    assert {e.key.partition("/")[0] for e in await directory.entries()} == {"noke@example.net"}
    selection = await directory.find_usable("noke@example.net")
    # rsa's certificate names rsa@, not noke@: refused; the capabilities still come along.
    assert selection.best is None and selection.capabilities == (AES256_GCM,)


async def test_mark_used_and_remove(pki: DirectoryPki, make_directory: MakeDirectory,
                                    clock: FrozenClock) -> None:
    directory = make_directory()
    await add(directory, pki, "two", "ec")
    clock.advance(hours=1)
    await directory.mark_used("First@example.net", fingerprint(pki["two"]))
    by_address = {e.address: e for e in await directory.entries()}
    assert by_address["first@example.net"].last_used == NOW + dt.timedelta(hours=1)
    assert by_address["second@example.org"].last_used is None

    two = fingerprint(pki["two"])
    assert await directory.remove(two[:12], address="second@example.org") == 1
    assert [e.address for e in await directory.find(two)] == ["first@example.net"]
    assert await directory.remove(two) == 1
    assert await directory.find(two) == []
    assert [e.address for e in await directory.entries()] == ["ec@example.net"]
    assert await directory.remove(fingerprint(pki.intermediate)) == 1
    assert await directory.intermediates() == []
    for bad in ("", "abc", "zzzzzzzzzz"):
        with pytest.raises(ValueError, match="at least 8 hex digits"):
            await directory.remove(bad)
    assert [e.address for e in await directory.entries()] == ["ec@example.net"]


async def test_a_damaged_record_is_refused_not_fatal(
        pki: DirectoryPki, make_directory: MakeDirectory, store: SQLiteStore) -> None:
    directory = make_directory()
    await add(directory, pki, "ec")
    await store.state_put(CERTIFICATES_NAMESPACE, "ec@example.net/" + "0" * 64, b"{not json")
    selection = await directory.find_usable("ec@example.net")
    assert selection.best is not None
    assert [r.codes for r in selection.refused] == [("damaged",)]


# --- settings -------------------------------------------------------------------------------------


def configure(settings: dict[str, Any], base_dir: Path) -> SmimeDirectorySettings:
    """Validate ``settings`` the way the gateway does: a tenant's section of a whole config."""
    registry = PluginRegistry.load()
    data = {"tenants": {"t": {"name": "T", "domains": ["behoerde.example"],
                              "plugins": ["recipient_scope", "smtp_relay", "smime"],
                              "settings": {"smime": {"sign": False, **settings}}}}}
    config = config_from_mapping(data, registry, source="test.toml", base_dir=base_dir)
    value = config.tenants["t"].settings["smime"]
    assert isinstance(value, SmimeDirectorySettings)
    return value


def test_settings_load_anchors_relative_to_the_config_and_make_a_policy(
        pki: DirectoryPki, tmp_path: Path) -> None:
    (tmp_path / "anchors.pem").write_bytes(pem(pki.root, pki.other_root))
    (tmp_path / "ca.crl").write_bytes(pki.root_crl.public_bytes(serialization.Encoding.DER))
    settings = configure({"trust_anchors": ["anchors.pem"], "crl_files": ["ca.crl"],
                          "revocation": "crl", "minimum_rsa_bits": 4096}, tmp_path)
    policy = policy_from_settings(settings)
    assert policy.trust_anchors == (pki.root, pki.other_root)
    assert policy.crl_files == (tmp_path / "ca.crl",)
    assert (policy.revocation, policy.minimum_rsa_bits, policy.allow_rsa_below_minimum) == (
        "crl", 4096, False)
    defaults = policy_from_settings(configure({}, tmp_path))
    assert defaults.trust_anchors == () and defaults.revocation == "crl-or-ocsp"
    assert defaults.minimum_rsa_bits == 3000 and defaults.fetch_revocation


@pytest.mark.parametrize(("settings", "problem"), [
    ({"trust_anchors": ["missing.pem"]}, "trust_anchors: {dir}/missing.pem: file not found"),
    ({"trust_anchors": ["junk.pem"]}, "trust_anchors: {dir}/junk.pem: not a certificate file"),
    ({"trust_anchors": ["leaf.pem"]}, "is not a CA certificate"),
    ({"crl_files": ["junk.pem"]}, "crl_files: {dir}/junk.pem: not a CRL"),
    ({"revocation": "sometimes"}, "revocation: must be one of 'off', 'crl', 'ocsp', 'crl-or-ocsp'"),
    ({"revocation": "ocsp", "fetch_revocation": False}, "OCSP needs fetch_revocation = true"),
    ({"fetch_revocation": False}, "needs crl_files"),
    ({"minimum_rsa_bits": 1024}, "minimum_rsa_bits: must be between 2048 and 16384"),
    ({"revocation_timeout_seconds": 0}, "revocation_timeout_seconds: must be greater than 0"),
    ({"trust_anchor": ["x.pem"]}, "tenants.t.settings.smime.trust_anchor: unknown key"),
])
def test_bad_settings_are_config_errors_naming_the_key(
        settings: dict[str, Any], problem: str, pki: DirectoryPki, tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_bytes(b"junk")
    (tmp_path / "leaf.pem").write_bytes(pem(pki["ec"]))
    with pytest.raises(ConfigError) as caught:
        configure(settings, tmp_path)
    text = str(caught.value)
    assert problem.format(dir=tmp_path) in text
    assert "tenants.t.settings.smime." in text

