"""``siegel explain`` against the district's rule (seed 000_1253fbd76cd12a7e.txt), as a table.

Section 1: customer-related mail to anyone outside goettingen.de, landkreisgoettingen.de,
gab-suedniedersachsen.de and arbeitsagentur.de must be encrypted; section 2: the sender marks it
with "Automatisch verschlüsseln". Mail without customer reference may go out as it is; e-mail is
not suitable for content with legal consequences.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from siegel.cli import cli
from siegel.crypto import create_key_file
from siegel.testing import make_message

CONFIG = """
[store]
path = "var/siegel.db"
key_file = "keys/store.key"

[settings.relay]
host = "127.0.0.1"
port = 10026
tls = "none"

[tenants.landkreis]
name = "Landkreis Göttingen – Jobcenter"
domains = ["landkreisgoettingen.de"]
plugin_set = "district"
"""

SENDER = "sachbearbeitung@landkreisgoettingen.de"
PLAIN_BODY = "Guten Tag,\nder Termin am Montag findet statt.\n"
CUSTOMER_BODY = "Guten Tag,\nzu Ihrer Kundennummer 123A456789 anbei die Unterlagen.\n"
BG_BODY = "Betrifft Bedarfsgemeinschaft 12345BG1234567.\n"
ENCRYPT = {"X-Siegel-Encrypt": "yes"}

# recipient, body, extra headers, subject, expected verdict, expected finding codes (subset)
TABLE = [
    # Internal domains, exact match, any case, IDN-normalised: never protected.
    ("kollege@goettingen.de", CUSTOMER_BODY, ENCRYPT, "Antrag", "plain", {"recipient.internal"}),
    ("a@LandkreisGoettingen.DE", CUSTOMER_BODY, {}, "Antrag", "plain", {"recipient.internal"}),
    ("b@gab-suedniedersachsen.de", BG_BODY, {}, "Antrag", "plain", {"recipient.internal"}),
    ("c@arbeitsagentur.de", CUSTOMER_BODY, ENCRYPT, "Antrag", "plain", {"recipient.internal"}),
    # Outside without customer reference: may go out as it is.
    ("buerger@example.net", PLAIN_BODY, {}, "Termin", "plain", {"recipient.external"}),
    ("traeger@bildung.example", PLAIN_BODY, {}, "Kurs", "plain", {"recipient.external"}),
    # Outside with customer reference: protect.
    ("buerger@example.net", PLAIN_BODY, ENCRYPT, "Termin", "protect", {"sender.requested"}),
    ("buerger@example.net", PLAIN_BODY, {}, "[verschlüsseln] Termin", "protect",
     {"sender.requested"}),
    ("arbeitgeber@firma.example", CUSTOMER_BODY, {}, "Bewerbung", "protect",
     {"content.kundennummer"}),
    ("buerger@example.net", BG_BODY, {}, "Leistungen", "protect", {"content.bg-nummer"}),
    ("buerger@example.net", PLAIN_BODY, {}, "Ihre Kundennummer 123A456789", "protect",
     {"content.kundennummer"}),
    # Look-alikes of internal domains are outside.
    ("x@goettingen.de.evil.example", CUSTOMER_BODY, {}, "Antrag", "protect",
     {"recipient.external", "content.kundennummer"}),
    ("x@evil-goettingen.de", CUSTOMER_BODY, {}, "Antrag", "protect", {"recipient.external"}),
    ("x@sub.goettingen.de", CUSTOMER_BODY, {}, "Antrag", "protect", {"recipient.external"}),
    ("x@arbeitsagentur.de.example", PLAIN_BODY, ENCRYPT, "Antrag", "protect",
     {"sender.requested"}),
    # Content with legal consequences: the sender is warned, protection still applies.
    ("buerger@example.net", "Bitte beachten Sie die Rechtsfolgenbelehrung.\n", ENCRYPT,
     "Aufforderung", "protect", {"sender.requested", "content.legal-consequences"}),
]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "siegel.toml"
    path.write_text(CONFIG, encoding="utf-8")
    create_key_file(tmp_path / "keys" / "store.key")
    return path


@pytest.mark.parametrize(("recipient", "body", "headers", "subject", "verdict", "codes"), TABLE,
                         ids=[f"{row[0]}-{row[4]}-{i}" for i, row in enumerate(TABLE)])
def test_district_rule(config_file, tmp_path, recipient, body, headers, subject, verdict, codes):
    eml = tmp_path / "message.eml"
    eml.write_bytes(make_message(sender=SENDER, to=recipient, subject=subject, body=body,
                                 headers=headers))
    result = CliRunner().invoke(cli, ["explain", "--config", str(config_file), str(eml), "--json"])
    assert result.exit_code == 0, result.output
    explanation = json.loads(result.output)
    assert explanation["tenant"] == "landkreis"
    [entry] = explanation["recipients"]
    assert entry["verdict"] == verdict
    found = {f["code"] for f in entry["findings"]}
    assert codes <= found, found
    if verdict == "protect":
        assert entry["outcome"] == "protect with password_pdf"
        assert entry["internal"] is False
    else:
        assert entry["outcome"].startswith("deliver")


def test_explain_text_names_every_reason_in_german(config_file, tmp_path):
    eml = tmp_path / "message.eml"
    eml.write_bytes(make_message(sender=SENDER, to=["buerger@example.net", "kollege@goettingen.de"],
                                 subject="Antrag", body=CUSTOMER_BODY, headers=ENCRYPT))
    result = CliRunner().invoke(cli, ["explain", "--config", str(config_file), str(eml)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "buerger@example.net: external" in text
    assert "kollege@goettingen.de: internal (goettingen.de)" in text
    assert "Absender verlangt Verschlüsselung (header X-Siegel-Encrypt)" in text
    assert "Inhaltsregel 'kundennummer': Kundennummer gefunden" in text
    assert "123A456789" not in text  # reasons never repeat the personal data they found


def test_display_name_tricks_do_not_make_a_recipient_internal(config_file, tmp_path):
    raw = (f"From: {SENDER}\r\n"
           'To: "kollege@goettingen.de" <opfer@evil.example>,\r\n'
           ' "x@goettingen.de"@evil.example\r\n'
           "Subject: Antrag\r\n\r\n" + CUSTOMER_BODY.replace("\n", "\r\n")).encode()
    eml = tmp_path / "message.eml"
    eml.write_bytes(raw)
    result = CliRunner().invoke(cli, ["explain", "--config", str(config_file), str(eml), "--json"])
    assert result.exit_code == 0, result.output
    explained = json.loads(result.output)
    entries = explained["recipients"]
    assert [e["recipient"] for e in entries] == ["opfer@evil.example"]
    assert all(not e["internal"] and e["verdict"] == "protect" for e in entries)
    # A quoted local part with an "@" routes elsewhere: the listener refuses it, and so does explain.
    [refused] = explained["refused"]
    assert refused["recipient"] == '"x@goettingen.de"@evil.example'
    assert refused["reply"].startswith("553 5.1.3") and "an @ in the local part" in refused["reply"]
