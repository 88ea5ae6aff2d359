"""Shared bits of the postbox tests."""

from __future__ import annotations

from siegel import Address

CLERK = "sachbearbeitung@behoerde.example"
CITIZEN = "buerger@example.net"
OTHER = "nachbarin@example.net"
PASSWORD = "Grüße-€-Paßwort 7"
CONFIG = {"tenants": {"test": {"plugin_set": "postbox", "domains": ["behoerde.example"]}},
          "portal": {"public_base_url": "https://post.behoerde.example"}}


def mailbox_of(harness, address: str = CITIZEN):
    from siegel.plugins.postbox.mailbox import Mailbox

    return Mailbox(harness.runtime, harness.config.tenants["test"], Address.parse(address))
