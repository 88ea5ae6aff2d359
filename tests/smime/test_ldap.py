"""Certificates from LDAP, against a real OpenLDAP ``slapd`` started for this module.

The server (mdb backend, the Debian schema files) listens on loopback with StartTLS and LDAPS (a
server certificate from a throwaway CA) and logs every operation (``-d stats``); the tests count
its SRCH lines to know whether a lookup reached it. Entries are loaded with ``slapadd``: people
with ``userCertificate;binary`` (DER) or ``userSMIMECertificate`` (a PKCS#7 bundle with the
intermediate), an expired certificate, one naming another address, a person without any, and a
service account for simple binds.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import ldap3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from smime_pki import Pki, key_usage, make_certificate

from siegel import Address, ConfigError, RecipientState
from siegel.clock import FrozenClock
from siegel.config import config_from_mapping
from siegel.crypto import ContentCipher, create_key_file
from siegel.explain import DryRun, explain
from siegel.manager import PluginRegistry
from siegel.plugins.smime.certificates import fingerprint
from siegel.plugins.smime.directory import (
    CERTIFICATES_NAMESPACE,
    INTERMEDIATES_NAMESPACE,
    CertificateDirectory,
)
from siegel.plugins.smime.ldap import LDAP_CACHE_NAMESPACE, LdapCertificateSource, LdapConfig, search_filter
from siegel.plugins.smime.plugin import directory_for
from siegel.plugins.smime.policy import DirectoryPolicy
from siegel.sink import free_port
from siegel.sqlite_store import SQLiteStore
from siegel.state import PluginState, ReadOnlyPluginState
from siegel.testing import make_message

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
MODULES = Path("/usr/lib/ldap")
SCHEMA = Path("/etc/ldap/schema")
pytestmark = pytest.mark.skipif(
    not (SLAPD.exists() and SLAPADD.exists() and (MODULES / "back_mdb.so").exists()),
    reason="OpenLDAP's slapd is not installed (.ci/system-packages installs slapd and ldap-utils)")

SUFFIX = "dc=behoerde,dc=example"
PEOPLE = f"ou=people,{SUFFIX}"
GATEWAY_DN = f"cn=gateway,{SUFFIX}"
GATEWAY_PASSWORD = "Gateway-Kennwort-1"
ANWALT = "anwalt@kanzlei.example"  # userCertificate;binary (RSA)
BERATUNG = "beratung@verein.example"  # userSMIMECertificate: PKCS#7 with the intermediate (EC)
ALT = "alt@kanzlei.example"  # an expired certificate
LEER = "leer@kanzlei.example"  # an entry without certificates
FREMD = "fremd@kanzlei.example"  # a certificate that names another address
KAPUTT = "kaputt@verein.example"  # a value that is no certificate
MARKER = "Kundennummer 123A456789"  # the city's classifiers want this protected


# --- the server ---------------------------------------------------------------------------------


@attrs.frozen
class Tls:
    ca_file: Path
    certificate: Path
    key: Path


@attrs.define
class Slapd:
    """One slapd with its own configuration, database and log below ``folder``."""

    folder: Path
    ldif: bytes
    tls: Tls
    port: int = attrs.field(factory=free_port)
    ldaps_port: int = attrs.field(factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def log(self) -> Path:
        return self.folder / "slapd.log"

    def searches(self, query: str) -> int:
        """How many searches with this filter (as slapd logs it) reached the server."""
        if not self.log.exists():
            return 0
        return self.log.read_text(errors="replace").count(f'filter="{query}"')

    def start(self) -> Slapd:
        database = self.folder / "db"
        database.mkdir(parents=True)
        config = self.folder / "slapd.conf"
        config.write_text("\n".join([
            *(f"include {SCHEMA / name}.schema" for name in ("core", "cosine", "inetorgperson")),
            f"modulepath {MODULES}",
            "moduleload back_mdb",
            f"pidfile {self.folder / 'slapd.pid'}",
            f"TLSCertificateFile {self.tls.certificate}",
            f"TLSCertificateKeyFile {self.tls.key}",
            "database mdb",
            "maxsize 16777216",
            f'suffix "{SUFFIX}"',
            f'rootdn "cn=admin,{SUFFIX}"',
            "rootpw admin-geheim",
            f"directory {database}",
            "access to attrs=userPassword by anonymous auth by * none",
            "access to * by * read",
            "",
        ]))
        (self.folder / "data.ldif").write_bytes(self.ldif)
        subprocess.run([SLAPADD, "-q", "-f", config, "-l", self.folder / "data.ldif"], check=True,
                       capture_output=True)
        # As root, slapd runs as root (fine for a throwaway instance); -d keeps it in the
        # foreground and "stats" logs each operation to stderr.
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [SLAPD, "-f", config, "-h", f"{self.url}/ {self.ldaps_url}/", "-d", "stats"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited ({self.process.returncode}):\n"
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("slapd does not accept connections") from None
                time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_server_tls(folder: Path) -> Tls:
    """A CA and a server certificate for 127.0.0.1 (IP address SAN only)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("LDAP test CA"))
          .issuer_name(_name("LDAP test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    server = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(days=1))
              .not_valid_after(now + dt.timedelta(days=30))
              .add_extension(x509.SubjectAlternativeName(
                  [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
    tls = Tls(folder / "ldap-ca.pem", folder / "server.pem", folder / "server.key")
    tls.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.certificate.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    os.chmod(tls.key, 0o600)
    return tls


@attrs.frozen
class People:
    """The certificates in the directory, by address."""

    anwalt: x509.Certificate
    beratung: x509.Certificate
    alt: x509.Certificate
    fremd: x509.Certificate
    ldif: bytes


def make_people(pki: Pki) -> People:
    def leaf(cn: str, email: str, key: Any, **options: Any) -> x509.Certificate:
        rsa_key = not isinstance(key, ec.EllipticCurvePrivateKey)
        usage = (key_usage(digital_signature=True, key_encipherment=True) if rsa_key
                 else key_usage(digital_signature=True, key_agreement=True))
        return make_certificate(subject=cn, key=key, issuer=pki.intermediate.cert,
                                issuer_key=pki.intermediate.key, ca=False, key_usage=usage,
                                email=email, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION], **options)

    ec_key = ec.generate_private_key(ec.SECP256R1())
    anwalt = leaf("Anwalt", ANWALT, pki.rsa.key)
    beratung = leaf("Beratung", BERATUNG, ec_key)
    alt = leaf("Alt", ALT, ec_key, not_after=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    fremd = leaf("Fremd", "jemand.anders@kanzlei.example", ec_key)
    bundle = pkcs7.serialize_certificates([beratung, pki.intermediate.cert], serialization.Encoding.DER)

    def der(certificate: x509.Certificate) -> str:
        return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()

    def person(uid: str, mail: str, *extra: str) -> str:
        return "\n".join([f"dn: uid={uid},{PEOPLE}", "objectClass: inetOrgPerson", f"uid: {uid}",
                          f"cn: {uid}", f"sn: {uid}", f"mail: {mail}", *extra, ""])

    ldif = "\n".join([
        "\n".join([f"dn: {SUFFIX}", "objectClass: dcObject", "objectClass: organization",
                   "o: Behoerde", "dc: behoerde", ""]),
        "\n".join([f"dn: {PEOPLE}", "objectClass: organizationalUnit", "ou: people", ""]),
        "\n".join([f"dn: {GATEWAY_DN}", "objectClass: organizationalRole",
                   "objectClass: simpleSecurityObject", "cn: gateway",
                   f"userPassword: {GATEWAY_PASSWORD}", ""]),
        person("anwalt", ANWALT, f"userCertificate;binary:: {der(anwalt)}"),
        person("beratung", BERATUNG, f"userSMIMECertificate:: {base64.b64encode(bundle).decode()}"),
        person("alt", ALT, f"userCertificate;binary:: {der(alt)}"),
        person("leer", LEER),
        person("fremd", FREMD, f"userCertificate;binary:: {der(fremd)}"),
        person("kaputt", KAPUTT, "userSMIMECertificate:: MAA="),
    ])
    return People(anwalt=anwalt, beratung=beratung, alt=alt, fremd=fremd, ldif=ldif.encode())


@pytest.fixture(scope="module")
def people(pki: Pki) -> People:
    return make_people(pki)


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_server_tls(tmp_path_factory.mktemp("ldap-tls"))


StartSlapd = Callable[..., Slapd]


@pytest.fixture(scope="module")
def start_slapd(tmp_path_factory: pytest.TempPathFactory, people: People, server_tls: Tls
                ) -> Iterator[StartSlapd]:
    """``start_slapd(port=None)``: another slapd with the same entries (on ``port`` if given),
    stopped at the end of the module."""
    started: list[Slapd] = []

    def start(port: int | None = None) -> Slapd:
        folder = tmp_path_factory.mktemp("slapd")
        instance = (Slapd(folder, people.ldif, server_tls, port=port) if port is not None
                    else Slapd(folder, people.ldif, server_tls))
        started.append(instance)
        return instance.start()

    yield start
    for instance in started:
        instance.stop()


@pytest.fixture(scope="module")
def slapd(start_slapd: StartSlapd) -> Slapd:
    return start_slapd()


# --- a directory on a real store ----------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    create_key_file(tmp_path / "store.key")
    database = SQLiteStore(tmp_path / "siegel.db", ContentCipher.from_key_file(tmp_path / "store.key"))
    await database.open()
    yield database
    await database.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@attrs.frozen
class Setup:
    directory: CertificateDirectory
    source: LdapCertificateSource


MakeDirectory = Callable[..., Setup]


@pytest.fixture
def make_directory(store: SQLiteStore, clock: FrozenClock, pki: Pki, slapd: Slapd,
                   server_tls: Tls) -> MakeDirectory:
    """A directory with an LDAP lookup; keyword arguments override the :class:`LdapConfig`
    (default: the module's slapd over StartTLS, anonymous). ``read_only`` as in a dry run."""

    def make(*, read_only: bool = False, **ldap: Any) -> Setup:
        ldap.setdefault("url", slapd.url)
        ldap.setdefault("base_dn", PEOPLE)
        ldap.setdefault("ca_file", str(server_tls.ca_file))
        ldap.setdefault("timeout_seconds", 3.0)
        state = ReadOnlyPluginState if read_only else PluginState
        source = LdapCertificateSource(LdapConfig(**ldap), state(store, LDAP_CACHE_NAMESPACE, clock),
                                       clock)
        directory = CertificateDirectory(
            state(store, CERTIFICATES_NAMESPACE, clock), state(store, INTERMEDIATES_NAMESPACE, clock),
            clock, DirectoryPolicy(trust_anchors=[pki.root.cert], revocation="off"), lookup=source)
        return Setup(directory, source)

    return make


def mail_filter(address: str) -> str:
    return f"(mail={address})"


# --- found, filed, judged -----------------------------------------------------------------------


async def test_a_certificate_found_in_ldap_is_filed_with_source_ldap_and_used(
        make_directory: MakeDirectory, slapd: Slapd, people: People, pki: Pki) -> None:
    setup = make_directory()  # StartTLS (the default), verified against the test CA
    directory = setup.directory
    # The administrator imported the CA's intermediate; LDAP holds only the person's certificate.
    await directory.add_intermediate(pki.intermediate.cert, source="import:ca.pem")
    before = slapd.searches(mail_filter(ANWALT))

    selection = await directory.find_usable(ANWALT.upper())
    assert selection.best is not None
    assert selection.best.fingerprint == fingerprint(people.anwalt)
    assert selection.best.chain[-1] == pki.root.cert
    [entry] = await directory.entries(ANWALT)
    assert (entry.source, entry.fingerprint) == ("ldap", fingerprint(people.anwalt))
    assert slapd.searches(mail_filter(ANWALT)) == before + 1

    # From now on it is a stored, usable certificate: LDAP is not asked again.
    again = await directory.find_usable(ANWALT)
    assert again.best is not None and again.best.fingerprint == fingerprint(people.anwalt)
    assert slapd.searches(mail_filter(ANWALT)) == before + 1


async def test_a_pkcs7_bundle_brings_its_intermediate(make_directory: MakeDirectory,
                                                       people: People, pki: Pki) -> None:
    directory = make_directory().directory
    selection = await directory.find_usable(BERATUNG)
    assert selection.best is not None
    assert selection.best.fingerprint == fingerprint(people.beratung)
    assert pki.intermediate.cert in await directory.intermediates()
    [entry] = await directory.entries(BERATUNG)
    assert entry.source == "ldap"


async def test_ldap_certificates_are_judged_like_any_other(
        make_directory: MakeDirectory, people: People, pki: Pki) -> None:
    directory = make_directory(starttls=False).directory  # plain LDAP: loopback only
    await directory.add_intermediate(pki.intermediate.cert, source="import:ca.pem")
    expired = await directory.find_usable(ALT)
    assert expired.best is None
    [refusal] = expired.refused
    assert refusal.codes == ("expired",)
    [entry] = await directory.entries(ALT)
    assert entry.source == "ldap"  # filed: it names the address, it is only not usable
    assert "LDAP ldap://127.0.0.1:" in expired.reason.en and "1 certificate(s) found" in (
        expired.reason.en)
    assert "1 Zertifikat(e) für alt@kanzlei.example gefunden" in expired.reason.de

    # A certificate in someone's entry that names another address: refused with the reason,
    # not filed under either address.
    other = await directory.find_usable(FREMD)
    [refusal] = other.refused
    assert refusal.codes == ("wrong-address",)
    assert f"does not name {FREMD} but jemand.anders@kanzlei.example" in other.reason.en
    assert await directory.entries(FREMD) == []
    assert await directory.entries("jemand.anders@kanzlei.example") == []

    # A value that is no certificate is skipped and named; the answer is "nothing there".
    broken = await directory.find_usable(KAPUTT)
    assert broken.best is None and broken.refused == ()
    assert (f"no certificate for {KAPUTT} (uid=kaputt,{PEOPLE} userSMIMECertificate: not a "
            "certificate file") in broken.reason.en


# --- the cache ----------------------------------------------------------------------------------


async def test_answers_are_cached_and_asked_again_when_they_expire(
        make_directory: MakeDirectory, slapd: Slapd, clock: FrozenClock) -> None:
    directory = make_directory(starttls=False, cache_seconds=3600, negative_cache_seconds=300
                               ).directory
    found_before = slapd.searches(mail_filter(ALT))
    nothing_before = slapd.searches(mail_filter(LEER))

    nothing = await directory.find_usable(LEER)
    assert nothing.best is None and nothing.refused == ()
    assert nothing.reason.en.startswith(f"no S/MIME certificate for {LEER} in the directory; "
                                        f"LDAP {slapd.url}: no certificate for {LEER}")
    expired = await directory.find_usable(ALT)  # found, filed, not usable
    assert expired.best is None
    assert slapd.searches(mail_filter(LEER)) == nothing_before + 1
    assert slapd.searches(mail_filter(ALT)) == found_before + 1

    clock.advance(seconds=299)
    cached_nothing = await directory.find_usable(LEER)
    cached_found = await directory.find_usable(ALT)
    assert "(answer from " in cached_nothing.reason.en
    assert "(Antwort von " in cached_nothing.reason.de
    assert "1 certificate(s) found for alt@kanzlei.example (answer from" in cached_found.reason.en
    assert cached_found.refused[0].codes == ("expired",)  # the stored copy is still judged
    assert slapd.searches(mail_filter(LEER)) == nothing_before + 1
    assert slapd.searches(mail_filter(ALT)) == found_before + 1

    clock.advance(seconds=2)  # "nothing" is believed for 300 s, found certificates for 3600 s
    assert "answer from" not in (await directory.find_usable(LEER)).reason.en
    await directory.find_usable(ALT)
    assert slapd.searches(mail_filter(LEER)) == nothing_before + 2
    assert slapd.searches(mail_filter(ALT)) == found_before + 1

    clock.advance(seconds=3600)
    await directory.find_usable(ALT)
    assert slapd.searches(mail_filter(ALT)) == found_before + 2


async def test_an_unreachable_server_gives_no_certificate_and_is_retried_soon(
        make_directory: MakeDirectory, clock: FrozenClock, start_slapd: StartSlapd,
        people: People) -> None:
    port = free_port()
    directory = make_directory(url=f"ldap://127.0.0.1:{port}", negative_cache_seconds=3600
                               ).directory

    down = await directory.find_usable(BERATUNG)
    assert down.best is None and down.refused == ()
    assert f"LDAP ldap://127.0.0.1:{port} unavailable, no certificate taken from it (" in (
        down.reason.en)
    assert "LDAPSocketOpenError" in down.reason.en and "refused" in down.reason.en
    assert "nicht verfügbar, kein Zertifikat von dort" in down.reason.de
    assert await directory.entries(BERATUNG) == []

    # The server comes back on that port; the failure is remembered for a minute only (not as
    # "nothing there", which would be believed for ldap_negative_cache_seconds).
    later = start_slapd(port)
    clock.advance(seconds=30)
    still = await directory.find_usable(BERATUNG)
    assert still.best is None and "next attempt after" in still.reason.en
    assert later.searches(mail_filter(BERATUNG)) == 0
    clock.advance(seconds=31)
    back = await directory.find_usable(BERATUNG)
    assert back.best is not None and back.best.fingerprint == fingerprint(people.beratung)
    assert later.searches(mail_filter(BERATUNG)) == 1


# --- the query ----------------------------------------------------------------------------------


def test_search_filter_escapes_the_address() -> None:
    assert search_filter("(mail={address})", "a@b.example") == "(mail=a@b.example)"
    assert search_filter("(&(objectClass=inetOrgPerson)(|(mail={address})(otherMailbox={address})))",
                         '"x*)(uid=*"@b.example') == (
        r'(&(objectClass=inetOrgPerson)(|(mail="x\2a\29\28uid=\2a"@b.example)'
        r'(otherMailbox="x\2a\29\28uid=\2a"@b.example)))')
    assert search_filter("(mail={address})", "back\\slash@b.example") == r"(mail=back\5cslash@b.example)"


async def test_filter_injection_is_escaped(make_directory: MakeDirectory, slapd: Slapd) -> None:
    # Unescaped, "*@kanzlei.example" would be a substring filter matching four people.
    connection = ldap3.Connection(ldap3.Server("127.0.0.1", port=slapd.port, get_info=ldap3.NONE))
    connection.open()
    connection.search(PEOPLE, "(mail=*@kanzlei.example)", attributes=["userCertificate;binary"])
    assert len(connection.response) == 4
    connection.unbind()
    escaped_wildcard = r"(mail=\2A@kanzlei.example)"  # as slapd logs the filter it received
    escaped_crafted = r'(mail="x\2A\29\28mail=\2A"@kanzlei.example)'
    before = slapd.searches(escaped_wildcard), slapd.searches(escaped_crafted)

    directory = make_directory(starttls=False).directory
    wildcard = await directory.find_usable("*@kanzlei.example")
    assert wildcard.best is None and wildcard.refused == ()
    assert f"LDAP {slapd.url}: no certificate for *@kanzlei.example" in wildcard.reason.en
    assert await directory.entries("*@kanzlei.example") == []

    crafted = '"x*)(mail=*"@kanzlei.example'
    injected = await directory.find_usable(crafted)
    assert injected.best is None and injected.refused == ()
    assert f"LDAP {slapd.url}: no certificate for" in injected.reason.en  # answered, not an error
    assert (slapd.searches(escaped_wildcard), slapd.searches(escaped_crafted)) == (
        before[0] + 1, before[1] + 1)


# --- transport and bind -------------------------------------------------------------------------


async def test_ldaps_and_simple_bind(make_directory: MakeDirectory, slapd: Slapd,
                                     people: People) -> None:
    setup = make_directory(url=slapd.ldaps_url, bind_dn=GATEWAY_DN, password=GATEWAY_PASSWORD)
    selection = await setup.directory.find_usable(BERATUNG)
    assert selection.best is not None
    assert f'BIND dn="{GATEWAY_DN}" method=128' in slapd.log.read_text()


async def test_a_wrong_bind_password_or_an_unknown_ca_fail_closed(
        make_directory: MakeDirectory, slapd: Slapd) -> None:
    wrong = make_directory(bind_dn=GATEWAY_DN, password="falsch", starttls=False)
    selection = await wrong.directory.find_usable(BERATUNG)
    assert selection.best is None
    assert f"bind as {GATEWAY_DN} failed: invalidCredentials" in selection.reason.en
    answer = await wrong.source.cached(BERATUNG)
    assert answer is not None and answer.outcome == "failed"  # not "nothing there"

    untrusted = make_directory(ca_file=None)  # the system's CAs do not know the test CA
    selection = await untrusted.directory.find_usable(ANWALT)
    assert selection.best is None
    assert "CERTIFICATE_VERIFY_FAILED" in selection.reason.en
    assert await untrusted.directory.entries(ANWALT) == []

    # ldap3 checks the host name itself: the server's certificate names only 127.0.0.1.
    wrong_name = make_directory(url=f"ldap://localhost:{slapd.port}")
    selection = await wrong_name.directory.find_usable(ANWALT)
    assert selection.best is None
    assert "the server's TLS certificate does not name localhost" in selection.reason.en
    assert await wrong_name.directory.entries(ANWALT) == []


# --- dry run ------------------------------------------------------------------------------------


async def test_a_dry_run_uses_what_it_finds_without_filing_or_caching(
        make_directory: MakeDirectory, store: SQLiteStore) -> None:
    setup = make_directory(read_only=True)
    selection = await setup.directory.find_usable(BERATUNG)
    assert selection.best is not None and selection.best.entry.source == "ldap"
    assert selection.best.entry.version == 0  # in memory only
    assert await store.state_scan(CERTIFICATES_NAMESPACE, "", now=dt.datetime.now(dt.UTC)) == []
    assert await store.state_scan(INTERMEDIATES_NAMESPACE, "", now=dt.datetime.now(dt.UTC)) == []
    assert await store.state_scan(LDAP_CACHE_NAMESPACE, "", now=dt.datetime.now(dt.UTC)) == []


# --- settings -----------------------------------------------------------------------------------


def smime_settings(tmp_path: Path, **ldap: Any) -> Any:
    data = {"tenants": {"t": {"name": "T", "domains": ["behoerde.example"],
                              "plugins": ["recipient_scope", "smtp_relay", "smime"],
                              "settings": {"smime": {"sign": False, **ldap}}}}}
    config = config_from_mapping(data, PluginRegistry.load(), source="test.toml", base_dir=tmp_path)
    return config.tenants["t"].settings["smime"]


def test_settings_build_the_lookup(tmp_path: Path) -> None:
    (tmp_path / "ldap.pw").write_text(f"{GATEWAY_PASSWORD}\n")
    settings = smime_settings(tmp_path, ldap_url="ldap://ldap.behoerde.example",
                              ldap_base_dn=PEOPLE, ldap_bind_dn=GATEWAY_DN,
                              ldap_password_file="ldap.pw")
    ldap = settings.ldap
    assert (ldap.scheme, ldap.host, ldap.port, ldap.starttls) == (
        "ldap", "ldap.behoerde.example", 389, True)
    assert ldap.password == GATEWAY_PASSWORD and GATEWAY_PASSWORD not in repr(ldap)
    assert (ldap.filter, ldap.timeout_seconds, ldap.cache_seconds, ldap.negative_cache_seconds) == (
        "(mail={address})", 5.0, 3600.0, 300.0)
    assert smime_settings(tmp_path).ldap is None
    assert smime_settings(tmp_path, ldap_url="ldaps://dir.example:1636", ldap_base_dn=SUFFIX
                          ).ldap.server == "ldaps://dir.example:1636"
    # Plain LDAP: to loopback, or where the administrator says the network is trusted.
    assert smime_settings(tmp_path, ldap_url="ldap://127.0.0.1:3389", ldap_base_dn=SUFFIX,
                          ldap_starttls=False).ldap.starttls is False
    assert smime_settings(tmp_path, ldap_url="ldap://ldap.intern", ldap_base_dn=SUFFIX,
                          ldap_starttls=False, ldap_allow_plaintext=True).ldap.starttls is False


@pytest.mark.parametrize(("settings", "problem"), [
    ({"ldap_url": "ldap://ldap.behoerde.example", "ldap_base_dn": SUFFIX, "ldap_starttls": False},
     "smime.ldap_starttls: ldap_starttls = false would query ldap://ldap.behoerde.example:389 "
     "unencrypted; use ldaps:// or StartTLS, or set ldap_allow_plaintext = true"),
    ({"ldap_url": "ldap://10.1.2.3", "ldap_base_dn": SUFFIX, "ldap_starttls": False,
      "ldap_bind_dn": GATEWAY_DN, "ldap_password_file": "pw"},
     "would query ldap://10.1.2.3:389 unencrypted and send the bind password in clear"),
    ({"ldap_url": "http://ldap.example", "ldap_base_dn": SUFFIX},
     "smime.ldap_url: must be ldap://HOST[:PORT] or ldaps://HOST[:PORT]"),
    ({"ldap_url": "ldap://ldap.example/dc=x?mail", "ldap_base_dn": SUFFIX},
     "smime.ldap_url: 'ldap://ldap.example/dc=x?mail': give only scheme, host and port"),
    ({"ldap_url": "ldaps://ldap.example"}, "smime.ldap_base_dn: is needed with ldap_url"),
    ({"ldap_url": "ldaps://ldap.example", "ldap_base_dn": "not a dn"}, "smime.ldap_base_dn:"),
    ({"ldap_url": "ldaps://ldap.example", "ldap_base_dn": SUFFIX, "ldap_filter": "(mail=x)"},
     "smime.ldap_filter: '(mail=x)' does not contain {address}"),
    ({"ldap_url": "ldaps://ldap.example", "ldap_base_dn": SUFFIX, "ldap_filter": "mail={address}"},
     "smime.ldap_filter: 'mail={address}' is not an LDAP filter (RFC 4515"),
    ({"ldap_url": "ldaps://ldap.example", "ldap_base_dn": SUFFIX,
      "ldap_filter": "(mail={address})(uid=x)"}, "missing boolean operator in filter"),
    ({"ldap_url": "ldaps://ldap.example", "ldap_base_dn": SUFFIX, "ldap_bind_dn": GATEWAY_DN},
     "smime.ldap_password_file: ldap_bind_dn needs a non-empty password"),
    ({"ldap_url": "ldaps://ldap.example", "ldap_base_dn": SUFFIX, "ldap_bind_dn": GATEWAY_DN,
      "ldap_password_file": "empty"}, "ldap_bind_dn needs a non-empty password"),
    ({"ldap_url": "ldaps://ldap.example", "ldap_base_dn": SUFFIX, "ldap_password_file": "pw"},
     "smime.ldap_password_file: a password needs ldap_bind_dn"),
    ({"ldap_url": "ldaps://ldap.example", "ldap_base_dn": SUFFIX, "ldap_bind_dn": GATEWAY_DN,
      "ldap_password_file": "missing"}, "smime.ldap_password_file: {dir}/missing: cannot read"),
    ({"ldap_url": "ldaps://ldap.example", "ldap_base_dn": SUFFIX, "ldap_ca_file": "missing"},
     "smime.ldap_ca_file: {dir}/missing: cannot use"),
    ({"ldap_url": "ldaps://ldap.example", "ldap_base_dn": SUFFIX, "ldap_timeout_seconds": 0},
     "smime.ldap_timeout_seconds: must be greater than 0"),
    ({"ldap_url": "ldaps://ldap.example", "ldap_base_dn": SUFFIX, "ldap_cache_seconds": -1},
     "smime.ldap_cache_seconds: must be at least 0"),
    ({"ldap_base_dn": SUFFIX}, "smime.ldap_base_dn: has no effect without ldap_url"),
])
def test_bad_ldap_settings_are_config_errors_naming_the_key(
        settings: dict[str, Any], problem: str, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("geheim\n")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError) as caught:
        smime_settings(tmp_path, **settings)
    assert problem.replace("{dir}", str(tmp_path)) in str(caught.value)


# --- in the gateway -----------------------------------------------------------------------------


def gateway_config(pki: Pki, tmp_path: Path, **ldap: Any) -> dict[str, Any]:
    chain = tmp_path / "tenant-chain.pem"
    chain.write_bytes(pki.rsa.cert_path.read_bytes() + pki.intermediate.cert_path.read_bytes())
    return {"tenants": {"test": {
        "plugin_set": "city", "domains": ["behoerde.example"],
        "settings": {"smime": {"certificate": str(chain), "private_key": str(pki.rsa.key_path),
                               "trust_anchors": [str(pki.root_path)], "revocation": "off",
                               "ldap_base_dn": PEOPLE, "ldap_timeout_seconds": 2,
                               "profile": "interoperable",
                               # Beratung's EC key needs ECDH: sent where a setting says it is read.
                               "recipients": {"verein.example": {"content_cipher": "aes256-cbc"}},
                               **ldap}}}}}


def now() -> FrozenClock:
    return FrozenClock(dt.datetime.now(dt.UTC))


async def test_a_recipient_only_in_ldap_gets_smime(siegel_harness: Any, pki: Pki, slapd: Slapd,
                                                    server_tls: Tls, people: People,
                                                    tmp_path: Path) -> None:
    config = gateway_config(pki, tmp_path, ldap_url=slapd.url, ldap_ca_file=str(server_tls.ca_file))
    async with siegel_harness(config=config, clock=now()) as harness:
        message_id = await harness.send(make_message(to=BERATUNG, body=f"{MARKER}\n"))
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.DELIVERED, record.reasons
        assert record.method == "smime"
        settings = harness.config.tenants["test"].settings["smime"]
        [entry] = await directory_for(harness.runtime, "test", settings).entries(BERATUNG)
        assert (entry.source, entry.fingerprint) == ("ldap", fingerprint(people.beratung))
        assert entry.last_used is not None
    [mail] = harness.sink.to(BERATUNG)
    assert mail.parsed.get_content_type() == "application/pkcs7-mime"
    assert MARKER.encode() not in mail.raw


async def test_with_ldap_down_the_password_pdf_follows_and_explain_says_why(
        siegel_harness: Any, pki: Pki, tmp_path: Path) -> None:
    dead = f"ldap://127.0.0.1:{free_port()}"
    config = gateway_config(pki, tmp_path, ldap_url=dead, ldap_starttls=False)
    async with siegel_harness(config=config, clock=now()) as harness:
        message_id = await harness.send(make_message(to=BERATUNG, body=f"{MARKER}\n"))
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.HELD  # the password PDF: first contact
        assert record.method == "password_pdf"
        result = await explain(harness.config, harness.registry,
                               make_message(to=BERATUNG, body=f"{MARKER}\n"),
                               Address.parse("sachbearbeitung@behoerde.example"),
                               [Address.parse(BERATUNG)],
                               services=DryRun(clock=harness.clock, store=harness.store))
    [recipient] = result.recipients
    assert recipient.outcome == "protect with password_pdf"
    assert recipient.choice is not None
    [(name, availability), _pdf] = recipient.choice.tried
    assert name == "smime" and not availability.available
    assert f"LDAP {dead} unavailable, no certificate taken from it" in availability.reason.en
    assert not any(MARKER.encode() in m.raw for m in harness.sink.messages)


async def test_explain_looks_up_without_writing(siegel_harness: Any, pki: Pki, slapd: Slapd,
                                                tmp_path: Path) -> None:
    config = gateway_config(pki, tmp_path, ldap_url=slapd.url, ldap_starttls=False)
    async with siegel_harness(config=config, clock=now()) as harness:
        result = await explain(harness.config, harness.registry,
                               make_message(to=BERATUNG, body=f"{MARKER}\n"),
                               Address.parse("sachbearbeitung@behoerde.example"),
                               [Address.parse(BERATUNG)],
                               services=DryRun(clock=harness.clock, store=harness.store))
        [recipient] = result.recipients
        assert recipient.outcome == "protect with smime"
        for namespace in (CERTIFICATES_NAMESPACE, INTERMEDIATES_NAMESPACE, LDAP_CACHE_NAMESPACE):
            assert await harness.store.state_scan(namespace, "", now=harness.clock.now()) == []
