"""The reply page says how a reply really travels: over the portal's connection (HTTPS or, said
plainly, not), then as an ordinary e-mail through the tenant's mail system to the clerk inside
the network; never that the reply "goes encrypted"."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest

from siegel import Address
from siegel.plugins.password_pdf.workflow import Workflow
from siegel.portal import PortalSettings

CLERK = "sachbearbeitung@behoerde.example"
CONFIG = {"tenants": {"test": {"plugin_set": "district", "domains": ["behoerde.example"]}}}


async def reply_page(p, language: str) -> str:
    workflow = Workflow(p.harness.runtime, p.harness.config.tenants["test"])
    token = await workflow.issue_token("reply", Address.parse("buerger@example.net"),
                                       timedelta(days=1), message_id="m1", reply_to=CLERK,
                                       subject="Bescheid")
    page = await p.client.get(f"/t/test/reply/{token}?lang={language}")
    assert page.status_code == 200
    return html.unescape(page.text)


@pytest.mark.parametrize(("language", "says", "never"), [
    ("de", ["über eine verschlüsselte Verbindung (HTTPS)",
            "als gewöhnliche, nicht verschlüsselte E-Mail über das Mailsystem von",
            "nur an eine Adresse innerhalb des Netzes von"],
     ["geht verschlüsselt", "ohne verschlüsselte Verbindung"]),
    ("en", ["over an encrypted connection (HTTPS)",
            "as an ordinary, unencrypted e-mail through the mail system of",
            "only to an address inside the network of"],
     ["goes encrypted", "without an encrypted connection"]),
])
async def test_reply_page_over_tls_describes_the_real_path(portal, language, says, never):
    settings = PortalSettings(behind_tls=True, public_base_url="https://post.behoerde.example")
    async with portal(config=CONFIG, settings=settings,
                      base_url="https://post.behoerde.example") as p:
        text = await reply_page(p, language)
    for phrase in says:
        assert phrase in text
    for phrase in never:
        assert phrase not in text


@pytest.mark.parametrize(("language", "warning"), [
    ("de", "ohne verschlüsselte Verbindung (HTTPS) aufgerufen"),
    ("en", "without an encrypted connection (HTTPS)"),
])
async def test_reply_page_without_tls_says_so(portal, language, warning):
    async with portal(config=CONFIG, settings=PortalSettings()) as p:
        text = await reply_page(p, language)
    assert warning in text
    assert "über eine verschlüsselte Verbindung" not in text
    assert "over an encrypted connection" not in text
