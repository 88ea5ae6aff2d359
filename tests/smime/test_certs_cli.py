"""``siegel certs``: the command group on a real configuration (made by ``siegel init``, then
given S/MIME settings) and a real store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from test_directory import NOW, DirectoryPki, Server, build_test_pki, pem

from siegel.cli import cli as siegel_cli
from siegel.clock import FrozenClock
from siegel.plugins.smime.certificates import fingerprint
from siegel.plugins.smime.certs_cli import (
    certs_group,
    config_directory_opener,
    register_certs_command,
)

CONFIG = """
[store]
path = "var/siegel.db"
key_file = "keys/store.key"

[tenants.demo]
name = "Demo-Behörde"
domains = ["demo.example"]
plugins = ["recipient_scope", "smtp_relay", "smime"]

[tenants.demo.settings.smime]
sign = false
trust_anchors = ["anchors.pem"]
revocation = "crl"
crl_files = ["ca.crl"]
fetch_revocation = false
"""


@pytest.fixture(scope="session")
def cli_pki() -> Iterator[DirectoryPki]:
    server = Server()
    try:
        yield build_test_pki(server)
    finally:
        server.close()


@pytest.fixture
def workdir(tmp_path: Path, cli_pki: DirectoryPki) -> Path:
    result = CliRunner().invoke(siegel_cli, ["init", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "keys" / "store.key").exists()
    (tmp_path / "siegel.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "anchors.pem").write_bytes(pem(cli_pki.root))
    (tmp_path / "ca.crl").write_bytes(
        cli_pki.intermediate_crl.public_bytes(serialization.Encoding.PEM)
        + cli_pki.root_crl.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "chain.pem").write_bytes(pem(cli_pki.intermediate))
    for leaf in ("ec", "expired", "wrong", "local", "local_revoked", "multi_old", "multi_long",
                 "two"):
        (tmp_path / f"{leaf}.pem").write_bytes(pem(cli_pki[leaf]))
    (tmp_path / "alice.p12").write_bytes(pkcs12.serialize_key_and_certificates(
        b"alice", cli_pki.rsa_key, cli_pki["alice"], [cli_pki.intermediate],
        serialization.BestAvailableEncryption(b"Geheim 123")))
    (tmp_path / "password.txt").write_bytes(b"Geheim 123\n")
    return tmp_path


def run(workdir: Path, *args: str, section: str = "smime") -> Result:
    group = certs_group(config_directory_opener(
        section, clock=FrozenClock(NOW)))
    command, *rest = args
    return CliRunner().invoke(group, [command, "--config", str(workdir / "siegel.toml"), *rest])


def test_import_list_show_and_remove(workdir: Path, cli_pki: DirectoryPki) -> None:
    result = run(workdir, "import", str(workdir / "chain.pem"), str(workdir / "ec.pem"),
                 str(workdir / "two.pem"), str(workdir / "alice.p12"),
                 "--password-file", str(workdir / "password.txt"))
    assert result.exit_code == 0, result.output
    alice = fingerprint(cli_pki["alice"])
    assert f"alice.p12: added alice@example.net {alice[:16]} (CN=Alice," in result.output
    assert "chain.pem: intermediate CN=Test Mail CA" in result.output
    assert "alice.p12: skipped:" in result.output and "private key was not imported" in (
        result.output)

    listed = run(workdir, "list")
    assert listed.exit_code == 0, listed.output
    assert [line.split()[0] for line in listed.output.splitlines()] == [
        "alice@example.net", "ec@example.net", "first@example.net", "second@example.org"]
    as_json = json.loads(run(workdir, "list", "--json", "--address", "EC@example.net").output)
    assert [(e["address"], e["fingerprint"], e["source"]) for e in as_json] == [
        ("ec@example.net", fingerprint(cli_pki["ec"]), "import:ec.pem")]
    assert as_json[0]["key"] == "EC secp256r1" and as_json[0]["capabilities"] is None

    shown = run(workdir, "show", alice[:10].upper())
    assert shown.exit_code == 0, shown.output
    assert f"certificate {alice}" in shown.output
    assert "key:                RSA 3072 bits" in shown.output
    assert "addresses:          alice@example.net (subjectAltName)" in shown.output
    assert "extended key usage: emailProtection" in shown.output
    assert "filed under alice@example.net: source import:alice.p12" in shown.output
    assert "usable; chain: CN=Alice,O=siegel directory test <- CN=Test Mail CA" in shown.output
    by_address = run(workdir, "show", "first@example.net")
    assert by_address.exit_code == 0 and "filed under first@example.net" in by_address.output
    assert "filed under second@example.org" not in by_address.output
    assert "kept as an intermediate" in run(workdir, "show",
                                            fingerprint(cli_pki.intermediate)[:8]).output

    two = fingerprint(cli_pki["two"])
    removed = run(workdir, "remove", two[:16], "--address", "second@example.org")
    assert removed.exit_code == 0 and "removed 1 record" in removed.output
    assert "second@example.org" not in run(workdir, "list").output
    assert run(workdir, "remove", two).output.strip() == "removed 1 record"
    missing = run(workdir, "remove", two)
    assert missing.exit_code == 1 and f"no certificate {two}" in missing.output
    short = run(workdir, "remove", "abc")
    assert short.exit_code == 2 and "at least 8 hex digits" in short.output
    assert run(workdir, "show", "0000000000").exit_code == 1


def test_check_names_the_choice_and_every_refusal(workdir: Path, cli_pki: DirectoryPki) -> None:
    files = [str(workdir / f"{leaf}.pem") for leaf in (
        "multi_old", "multi_long", "expired", "wrong", "local", "local_revoked")]
    assert run(workdir, "import", str(workdir / "chain.pem"), *files).exit_code == 0

    chosen = run(workdir, "check", "Multi@Example.net")
    assert chosen.exit_code == 0, chosen.output
    assert f"multi@example.net: use {fingerprint(cli_pki['multi_long'])}" in chosen.output
    assert f"also usable: {fingerprint(cli_pki['multi_old'])}" in chosen.output
    assert "chain: CN=Multi Long,O=siegel directory test <- CN=Test Mail CA" in chosen.output

    assert run(workdir, "check", "local@example.net").exit_code == 0
    revoked = run(workdir, "check", "local-revoked@example.net")
    assert revoked.exit_code == 1
    assert "[revoked]" in revoked.output and "(keyCompromise)" in revoked.output
    expired = run(workdir, "check", "expired@example.net")
    assert expired.exit_code == 1 and "[expired] expired since" in expired.output
    german = run(workdir, "check", "wrong@example.net", "--lang", "de")
    assert german.exit_code == 1
    assert "[wrong-address] wrong@example.net steht nur im Subject" in german.output
    nobody = run(workdir, "check", "nobody@example.net")
    assert nobody.exit_code == 1
    assert "no S/MIME certificate for nobody@example.net in the directory" in nobody.output
    assert run(workdir, "check", "not an address").exit_code == 2


def test_import_reports_bad_files_and_goes_on(workdir: Path) -> None:
    (workdir / "junk.der").write_bytes(b"\x30\x03\x02\x01\x01")
    result = run(workdir, "import", str(workdir / "junk.der"), str(workdir / "alice.p12"),
                 str(workdir / "ec.pem"))
    assert result.exit_code == 1
    assert "junk.der: not a certificate file" in result.output
    assert "alice.p12: PKCS#12 file cannot be opened: it needs a password" in result.output
    assert "ec.pem: added ec@example.net" in result.output


def test_configuration_problems_are_reported(workdir: Path) -> None:
    config = workdir / "siegel.toml"
    no_section = run(workdir, "list", section="other")
    assert no_section.exit_code == 2
    assert "no tenant has S/MIME settings ([tenants.ID.settings.other]); give --tenant" in (
        no_section.output)
    assert "unknown tenant 'nope'" in run(workdir, "list", "--tenant", "nope").output
    config.write_text(CONFIG.replace('"anchors.pem"', '"missing.pem"'), encoding="utf-8")
    broken = run(workdir, "list")
    assert broken.exit_code == 2
    assert f"tenants.demo.settings.smime.trust_anchors: {workdir}/missing.pem: file not found" in (
        broken.output)


def test_register_certs_command_adds_the_group(workdir: Path) -> None:
    cli = click.Group("siegel")
    register_certs_command(cli, config_directory_opener(clock=FrozenClock(NOW)))
    result = CliRunner().invoke(cli, ["certs", "import", "-c", str(workdir / "siegel.toml"),
                                      str(workdir / "ec.pem")])
    assert result.exit_code == 0, result.output
    listed = CliRunner().invoke(cli, ["certs", "list", "-c", str(workdir / "siegel.toml")])
    assert listed.output.startswith("ec@example.net ")


def test_config_check_names_a_ca_whose_revocation_cannot_be_checked(
        workdir: Path, cli_pki: DirectoryPki) -> None:
    """issue 9: a CA without CRL (and no fetching, so no OCSP either) is reported by
    ``siegel config check``, not found out when S/MIME is skipped for all its holders."""
    check = ["config", "check", "--config", str(workdir / "siegel.toml")]
    result = CliRunner().invoke(siegel_cli, check)
    assert result.exit_code == 0, result.output
    (workdir / "anchors.pem").write_bytes(pem(cli_pki.root) + pem(cli_pki.other_root))
    result = CliRunner().invoke(siegel_cli, check)
    assert result.exit_code != 0
    assert "tenants.demo.settings.smime.crl_files: no CRL of " in result.output
    other = cli_pki.other_root.subject.rfc4514_string()
    assert other in result.output and "Test Root CA" not in result.output.split("no CRL of")[1]
    assert "add their CRLs, set fetch_revocation = true, or revocation = 'off'" in result.output


def test_check_and_show_name_the_algorithms_and_why(workdir: Path, cli_pki: DirectoryPki) -> None:
    """issue 15: which algorithms a recipient gets, from which evidence, and the deviations from
    TR-02102-1 they cause."""
    assert run(workdir, "import", str(workdir / "chain.pem"), str(workdir / "local.pem"),
               str(workdir / "alice.p12"), "--password-file",
               str(workdir / "password.txt")).exit_code == 0
    default = run(workdir, "check", "alice@example.net")
    assert default.exit_code == 0, default.output
    assert ("algorithms: AES-256-CBC, RSAES-PKCS1-v1_5, unsigned (profile 'interoperable' for "
            "recipients whose capabilities are unknown)") in default.output
    assert "TR-02102-1: RSAES-PKCS1-v1_5 instead of RSAES-OAEP" in default.output
    shown = run(workdir, "show", "alice@example.net")
    assert "algorithms: AES-256-CBC, RSAES-PKCS1-v1_5, unsigned" in shown.output

    config = workdir / "siegel.toml"
    config.write_text(CONFIG + 'profile = "strict"\n', encoding="utf-8")
    strict = run(workdir, "check", "alice@example.net")
    assert "S/MIME declined: profile 'strict': not known whether" in strict.output

    config.write_text(CONFIG + 'profile = "strict"\n\n[tenants.demo.settings.smime.recipients.'
                      '"example.net"]\ncontent_cipher = "aes256-gcm"\n', encoding="utf-8")
    configured = run(workdir, "check", "alice@example.net")
    assert ("algorithms: AES-256-GCM, RSAES-OAEP, unsigned (configured for example.net)"
            in configured.output), configured.output
    assert "TR-02102-1" not in configured.output
    german = run(workdir, "check", "alice@example.net", "--lang", "de")
    assert "Algorithmen: AES-256-GCM, RSAES-OAEP, unsigniert (eingestellt für example.net)" in (
        german.output)


def test_import_warns_about_a_certificate_whose_revocation_cannot_be_checked(
        workdir: Path, cli_pki: DirectoryPki) -> None:
    """issue 9: a CA (or a holder) without CRL or OCSP is named when it is imported, not found
    out when S/MIME is skipped for its holders."""
    covered = run(workdir, "import", str(workdir / "chain.pem"), str(workdir / "local.pem"))
    assert covered.exit_code == 0 and "warning" not in covered.output, covered.output
    (workdir / "ca.crl").write_bytes(cli_pki.root_crl.public_bytes(serialization.Encoding.PEM))
    uncovered = run(workdir, "import", str(workdir / "ec.pem"))
    assert uncovered.exit_code == 0, uncovered.output
    assert ("ec.pem: warning: " in uncovered.output
            and "is refused (revocation-unknown) until its issuer's CRL is in crl_files"
            in uncovered.output), uncovered.output
