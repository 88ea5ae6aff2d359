"""The smime plugin in the gateway: outgoing S/MIME that openssl opens and verifies, the fallback
to the next method, inbound decryption with signature check and harvesting, never plain text."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from smime_pki import OPENSSL, Pki

from siegel import RecipientState
from siegel.clock import FrozenClock
from siegel.plugins.smime.plugin import directory_for
from siegel.testing import make_message

CLERK = "sachbearbeitung@behoerde.example"
LAWYER = "anwalt@kanzlei.example"
OFFICE = "beratung@verein.example"
MARKER = "Kundennummer 123A456789"


def config(pki: Pki, parties, **smime) -> dict:
    return {"tenants": {"test": {
        "plugin_set": "city", "domains": ["behoerde.example"],
        "settings": {"smime": {"certificate": str(parties["tenant_chain"]),
                               "private_key": str(pki.rsa.key_path),
                               "trust_anchors": [str(pki.root_path)], "revocation": "off",
                               "profile": "interoperable",
                               # The office's EC key needs ECDH, which the interoperable profile
                               # sends only where a setting (or signed mail) says it is read.
                               "recipients": {"verein.example": {"content_cipher": "aes256-cbc"}},
                               **smime}}}}}


def now() -> FrozenClock:
    """The test PKI is valid from today; the harness's default clock is earlier."""
    return FrozenClock(dt.datetime.now(dt.UTC))


def openssl(*args, input: bytes | None = None, check=True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([OPENSSL, *map(str, args)], input=input, capture_output=True,
                          check=check)


async def import_certificates(harness, pki, *certificates):
    """As an administrator would: the recipients' certificates with their CA's intermediate."""
    settings = harness.config.tenants["test"].settings["smime"]
    directory = directory_for(harness.runtime, "test", settings)
    await directory.add_certificates([*certificates, pki.intermediate.cert], source="import")
    return directory


def leaked(harness) -> bool:
    return any(MARKER.encode() in m.raw for m in harness.sink.messages)


@pytest.mark.parametrize("who", ["lawyer", "office"])
async def test_outgoing_is_signed_then_encrypted_and_openssl_opens_it(
        siegel_harness, pki, parties, tmp_path, who):
    party = parties[who]
    address = LAWYER if who == "lawyer" else OFFICE
    async with siegel_harness(config=config(pki, parties), clock=now()) as harness:
        await import_certificates(harness, pki, party.cert)
        message_id = await harness.send(make_message(to=address, subject="Ihr Antrag",
                                                     body=f"{MARKER}\nGrüße\n"))
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.DELIVERED, record.reasons
        assert record.method == "smime"
    [mail] = harness.sink.to(address)
    assert not leaked(harness)
    assert mail.parsed.get_content_type() == "application/pkcs7-mime"
    # Nothing announced, profile interoperable: AES-256-CBC EnvelopedData (NSS and gpgsm read it)
    assert mail.parsed.get_param("smime-type") == "enveloped-data"
    (tmp_path / "mail.eml").write_bytes(mail.raw)
    decrypted = openssl("cms", "-decrypt", "-in", tmp_path / "mail.eml", "-recip",
                        party.cert_path, "-inkey", party.key_path).stdout
    assert b"multipart/signed" in decrypted and b"application/pkcs7-signature" in decrypted
    (tmp_path / "signed.eml").write_bytes(decrypted)
    verified = openssl("cms", "-verify", "-in", tmp_path / "signed.eml", "-CAfile", pki.root_path)
    assert MARKER.encode() in verified.stdout
    assert b"Verification successful" in verified.stderr


async def test_announced_cbc_only_gets_enveloped_data(siegel_harness, pki, parties, tmp_path):
    async with siegel_harness(config=config(pki, parties), clock=now()) as harness:
        directory = await import_certificates(harness, pki, parties["lawyer"].cert)
        [entry] = await directory.entries(LAWYER)
        await directory.update(entry, capabilities=("2.16.840.1.101.3.4.1.42",))  # aes256-CBC
        await harness.send(make_message(to=LAWYER, body=f"{MARKER}\n"))
        await harness.process()
    [mail] = harness.sink.to(LAWYER)
    assert mail.parsed.get_param("smime-type") == "enveloped-data"
    (tmp_path / "mail.eml").write_bytes(mail.raw)
    party = parties["lawyer"]
    assert MARKER.encode() in openssl("cms", "-decrypt", "-in", tmp_path / "mail.eml", "-recip",
                                      party.cert_path, "-inkey", party.key_path).stdout


async def test_without_a_usable_certificate_the_password_pdf_follows(siegel_harness, pki,
                                                                     parties):
    async with siegel_harness(config=config(pki, parties), clock=now()) as harness:
        await import_certificates(harness, pki, parties["expired"].cert)
        expired_id = await harness.send(make_message(to="alt@kanzlei.example", body=f"{MARKER}\n"))
        unknown_id = await harness.send(make_message(to="neu@example.net", body=f"{MARKER}\n"))
        await harness.process()
        for message_id in (expired_id, unknown_id):
            [record] = await harness.store.recipients(message_id)
            assert record.state is RecipientState.HELD  # password PDF: first contact
            assert record.method == "password_pdf"
            # issue 9: why S/MIME was skipped stays with the copy (siegel queue show prints it)
            [skipped] = [r for r in record.reasons if r.startswith("smime: ")]
            assert ("expired" in skipped) if message_id == expired_id else (
                "no S/MIME certificate for neu@example.net" in skipped)
    assert not leaked(harness)


async def test_explain_names_why_smime_cannot_serve(siegel_harness, pki, parties):
    from siegel.explain import DryRun, explain

    async with siegel_harness(config=config(pki, parties), clock=now()) as harness:
        await import_certificates(harness, pki, parties["expired"].cert, parties["lawyer"].cert)
        raw = make_message(to=["alt@kanzlei.example", LAWYER], body=f"{MARKER}\n")
        from siegel import Address
        result = await explain(harness.config, harness.registry, raw, Address.parse(CLERK),
                               [Address.parse("alt@kanzlei.example"), Address.parse(LAWYER)],
                               services=DryRun(clock=harness.clock, store=harness.store))
    expired, lawyer = result.recipients
    assert expired.outcome == "protect with password_pdf"
    [(name, availability), _pdf] = expired.choice.tried
    assert name == "smime" and not availability.available
    assert "expired" in availability.reason.en
    assert lawyer.outcome == "protect with smime"
    [(name, availability), *_] = lawyer.choice.tried
    assert name == "smime" and availability.available
    assert ("algorithms: AES-256-CBC, RSAES-PKCS1-v1_5, RSASSA-PSS (profile 'interoperable'"
            in availability.reason.en)


async def test_inbound_smime_is_decrypted_verified_and_the_signer_harvested(
        siegel_harness, pki, parties, tmp_path):
    lawyer = parties["lawyer"]
    content = (b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
               + MARKER.encode() + b" aus der Kanzlei\r\n")
    (tmp_path / "content.txt").write_bytes(content)
    signed = openssl("cms", "-sign", "-in", tmp_path / "content.txt", "-signer", lawyer.cert_path,
                     "-inkey", lawyer.key_path, "-certfile", pki.intermediate.cert_path,
                     "-md", "sha256").stdout
    (tmp_path / "signed.eml").write_bytes(signed)
    encrypted = openssl("cms", "-encrypt", "-in", tmp_path / "signed.eml", "-aes-256-gcm",
                        "-recip", pki.rsa.cert_path, "-keyopt", "rsa_padding_mode:oaep",
                        "-keyopt", "rsa_oaep_md:sha256").stdout
    raw = (f"From: {LAWYER}\r\nTo: rsa@behoerde.example\r\nSubject: Akte\r\n"
           "X-Siegel-SMIME: decrypted; signature valid\r\n").encode() + encrypted
    async with siegel_harness(config=config(pki, parties), clock=now()) as harness:
        message_id = await harness.send(raw, mail_from=LAWYER, rcpt_to=["rsa@behoerde.example"])
        await harness.process()
        assert (await harness.states(message_id))["rsa@behoerde.example"] is (
            RecipientState.DELIVERED)
        [delivered] = harness.sink.to("rsa@behoerde.example")
        parsed = delivered.parsed
        assert parsed.get_all("X-Siegel-SMIME") == ["decrypted; signature valid"]
        assert parsed["X-Siegel-SMIME-Signer"] == LAWYER
        assert MARKER in parsed.get_body(("plain",)).get_content()
        # The signer's certificate was harvested: the reply goes out with S/MIME.
        reply = await harness.send(make_message(to=LAWYER, body=f"{MARKER}\n"))
        await harness.process()
        [record] = await harness.store.recipients(reply)
        assert record.state is RecipientState.DELIVERED and record.method == "smime"


async def test_forged_status_headers_from_outside_are_removed(siegel_harness, pki, parties):
    raw = (f"From: {LAWYER}\r\nTo: {CLERK}\r\nSubject: x\r\nX-Siegel-SMIME: decrypted; "
           "signature valid\r\nX-Siegel-SMIME-Signer: chef@behoerde.example\r\n\r\nHallo\r\n").encode()
    async with siegel_harness(config=config(pki, parties), clock=now()) as harness:
        await harness.send(raw, mail_from=LAWYER, rcpt_to=[CLERK])
        await harness.process()
    [delivered] = harness.sink.to(CLERK)
    assert "X-Siegel-SMIME" not in delivered.parsed
    assert "X-Siegel-SMIME-Signer" not in delivered.parsed


async def test_undecryptable_inbound_goes_on_marked(siegel_harness, pki, parties, tmp_path):
    (tmp_path / "c.txt").write_bytes(b"Content-Type: text/plain\r\n\r\nsecret\r\n")
    encrypted = openssl("cms", "-encrypt", "-in", tmp_path / "c.txt", "-aes-256-cbc", "-recip",
                        parties["office"].cert_path).stdout  # not for the tenant's key
    raw = (f"From: {LAWYER}\r\nTo: {CLERK}\r\nSubject: x\r\n"
           "X-Siegel-Notice: forged\r\n").encode() + encrypted
    async with siegel_harness(config=config(pki, parties), clock=now()) as harness:
        await harness.send(raw, mail_from=LAWYER, rcpt_to=[CLERK])
        await harness.process()
    [delivered] = harness.sink.to(CLERK)
    assert delivered.parsed["X-Siegel-SMIME"].startswith("not verified:")
    assert "X-Siegel-Notice" not in delivered.parsed
    assert b"secret" not in delivered.raw


def test_tenant_identity_problems_are_config_errors(pki, parties, tmp_path):
    from siegel.config import ConfigError, config_from_mapping
    from siegel.manager import PluginRegistry

    registry = PluginRegistry.load()
    data = config(pki, parties, private_key=str(tmp_path / "missing.key"))
    data["tenants"]["test"]["name"] = "Stadt"
    data["settings"] = {"relay": {"tls": "none"}}
    with pytest.raises(ConfigError, match=r"tenants\.test\.settings\.smime\.private_key: .*cannot read"):
        config_from_mapping(data, registry, source="x", base_dir=tmp_path)
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    (tmp_path / "other.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    data = config(pki, parties, profile="loose")
    data["tenants"]["test"]["name"] = "Stadt"
    with pytest.raises(ConfigError, match=r"smime\.profile"):
        config_from_mapping(data, registry, source="x", base_dir=tmp_path)
    assert Path(parties["tenant_chain"]).exists()


@pytest.mark.parametrize("broken", ["sign_and_encrypt_entity", "assemble_message"])
async def test_a_failure_in_the_smime_path_quarantines_never_plain(
        siegel_harness, pki, parties, monkeypatch, broken):
    import siegel.plugins.smime.plugin as plugin
    from siegel.plugins.smime.errors import SmimeError

    def fail(*args, **kwargs):
        raise SmimeError("injected failure", where="test")

    monkeypatch.setattr(plugin, broken, fail)
    async with siegel_harness(config=config(pki, parties), clock=now()) as harness:
        await import_certificates(harness, pki, parties["lawyer"].cert)
        message_id = await harness.send(make_message(to=LAWYER, body=f"{MARKER}\n"))
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.QUARANTINED
        assert "protection method 'smime' (plugin 'smime'): raised SmimeError" in record.detail
    assert harness.sink.to(LAWYER) == []
    assert not leaked(harness)


async def test_tenant_identity_from_pkcs12_with_password_file(siegel_harness, pki, parties,
                                                             tmp_path):
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

    bundle = pkcs12.serialize_key_and_certificates(
        b"stadt", pki.rsa.key, pki.rsa.cert, [pki.intermediate.cert],
        BestAvailableEncryption(b"geheim-123"))
    (tmp_path / "stadt.p12").write_bytes(bundle)
    (tmp_path / "stadt.password").write_text("geheim-123\n")
    data = config(pki, parties, pkcs12=str(tmp_path / "stadt.p12"),
                  password_file=str(tmp_path / "stadt.password"))
    smime = data["tenants"]["test"]["settings"]["smime"]
    del smime["certificate"], smime["private_key"]
    async with siegel_harness(config=data, clock=now()) as harness:
        identity = harness.config.tenants["test"].settings["smime"].identity
        assert identity.certificate == pki.rsa.cert
        assert identity.chain == (pki.intermediate.cert,)
        await import_certificates(harness, pki, parties["lawyer"].cert)
        await harness.send(make_message(to=LAWYER, body=f"{MARKER}\n"))
        await harness.process()
    [mail] = harness.sink.to(LAWYER)
    (tmp_path / "mail.eml").write_bytes(mail.raw)
    lawyer = parties["lawyer"]
    decrypted = openssl("cms", "-decrypt", "-in", tmp_path / "mail.eml", "-recip",
                        lawyer.cert_path, "-inkey", lawyer.key_path).stdout
    (tmp_path / "signed.eml").write_bytes(decrypted)
    verified = openssl("cms", "-verify", "-in", tmp_path / "signed.eml", "-CAfile", pki.root_path)
    assert MARKER.encode() in verified.stdout
    (tmp_path / "stadt.password").write_text("falsch\n")
    from siegel.config import ConfigError, config_from_mapping
    from siegel.manager import PluginRegistry
    data["tenants"]["test"]["name"] = "Stadt"
    with pytest.raises(ConfigError, match=r"settings\.smime\.pkcs12: .*cannot open"):
        config_from_mapping(data, PluginRegistry.load(), source="x", base_dir=tmp_path)


async def test_the_directories_are_a_resource_that_the_stop_forgets(siegel_harness, pki,
                                                                     parties):
    from siegel.plugins.smime.plugin import DIRECTORIES

    async with siegel_harness(config=config(pki, parties), clock=now()) as harness:
        assert harness.registry.resources["smime-directories"].plugin == "smime"
        directory = await import_certificates(harness, pki, parties["lawyer"].cert)
        assert directory_for(harness.runtime, "test", directory_settings(harness)) is directory
        assert len(DIRECTORIES) >= 1
    # The runtime is still referenced here, so only the resource's stop can have forgotten it.
    assert harness.runtime is not None
    assert len(DIRECTORIES) == 0


def directory_settings(harness):
    return harness.config.tenants["test"].settings["smime"]
