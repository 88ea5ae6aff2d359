"""The configuration example in docs/postbox.rst (docs/examples/postbox.toml) loads and does what
the text says: postbox for account holders, the password PDF for the rest."""

from __future__ import annotations

import shutil
from pathlib import Path

from siegel import Address, load_config
from siegel.manager import PluginRegistry
from siegel.testing import make_message

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "postbox.toml"


def test_the_example_configuration_loads_with_its_settings(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "siegel.toml")
    config = load_config(tmp_path / "siegel.toml", PluginRegistry.load())
    tenant = config.tenants["jobcenter"]
    assert tenant.protection == ("postbox", "password_pdf")
    assert {"postbox", "password_pdf", "accounts"} <= set(tenant.enabled_plugins)
    settings = tenant.settings["postbox"]
    assert (settings.serve, settings.retention_days, settings.expiry_notice_days,
            settings.bin_days, settings.not_retrieved_days, settings.notices_default) == (
        "account", 180, 14, 30, 5, False)


async def test_the_example_serves_account_holders_with_the_postbox(siegel_harness, tmp_path):
    import tomllib

    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    async with siegel_harness(config=data) as harness:
        tenant = harness.config.tenants["jobcenter"]
        member, stranger = "mitglied@example.net", "fremd@example.net"
        await harness.runtime.accounts("jobcenter").set_password(Address.parse(member),
                                                                 "Pferd Batterie Heftklammer")
        chosen = {}
        for recipient in (member, stranger):
            raw = make_message(sender="team@jobcenter.example", to=recipient, body="Bescheid")
            ctx = harness.context(raw, recipient)
            plan = await harness.runtime.pipeline.decide(ctx.message, tenant,
                                                         Address.parse(recipient))
            chosen[recipient] = (plan.choice.method.name,
                                 [name for name, _ in plan.choice.tried])
        assert chosen[member][0] == "postbox"
        assert chosen[stranger] == ("password_pdf", ["postbox", "password_pdf"])
