"""``siegel api-client``: a token is printed once and stored only hashed; ``[http_api]`` refuses
plain HTTP off loopback."""

from __future__ import annotations

import asyncio

import pytest

from siegel import ConfigError, PluginRegistry
from siegel.commands import open_offline
from siegel.config import config_from_mapping
from siegel.crypto import hash_token
from siegel.http_api import NAMESPACE, TOKEN_PREFIX, ApiClients


def test_a_client_token_is_shown_once_and_stored_hashed(siegel_cli):
    tenant, own = _first_tenant(siegel_cli)
    created = siegel_cli("api-client", "add", tenant, "fachverfahren", "--sender",
                         f"Post@{own}")
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    listed = siegel_cli("api-client", "list")
    assert f"{tenant}/fachverfahren" in listed.output and f"post@{own}" in listed.output
    assert token not in listed.output
    again = siegel_cli("api-client", "add", tenant, "fachverfahren")
    assert again.exit_code == 1 and "exists" in again.output

    async def stored() -> list[tuple[str, bytes]]:
        async with open_offline(siegel_cli.config) as offline:
            return [(r.key, r.value) for r in await offline.state(NAMESPACE).scan()]

    records = asyncio.run(stored())
    assert f"token/{hash_token(token)}" in [key for key, _value in records]
    assert not any(token in key or token.encode() in value for key, value in records)

    async def who(token: str) -> str | None:
        async with open_offline(siegel_cli.config) as offline:
            client = await ApiClients(offline.state(NAMESPACE), offline.config).authenticate(
                token)
            return client.id if client else None

    assert asyncio.run(who(token)) == f"{tenant}/fachverfahren"
    assert asyncio.run(who(token + "x")) is None
    assert siegel_cli("api-client", "remove", tenant, "fachverfahren").exit_code == 0
    assert asyncio.run(who(token)) is None
    wrong = siegel_cli("api-client", "add", tenant, "x", "--sender", "a@elsewhere.example")
    assert wrong.exit_code == 1 and "not in a domain of tenant" in wrong.output


def _first_tenant(siegel_cli) -> tuple[str, str]:
    async def first() -> tuple[str, str]:
        async with open_offline(siegel_cli.config) as offline:
            tenant = next(iter(offline.config.tenants.values()))
            return tenant.id, next(iter(tenant.own_domains))
    return asyncio.run(first())


@pytest.mark.parametrize(("http_api", "problem"), [
    ({"enabled": True, "host": "0.0.0.0"}, "http_api.host: '0.0.0.0' is not a loopback"),
    ({"enabled": True, "host": "192.0.2.1", "tls_certificate": "c.pem"},
     "http_api.tls_key: give both"),
    ({"enabled": True, "host": "0.0.0.0", "allow_plain_http": True}, None),
    ({"enabled": True, "host": "::1"}, None),
    ({"enabled": True, "max_request_bytes": 0}, "http_api.max_request_bytes: must be greater"),
])
def test_the_http_api_settings(http_api, problem):
    data = {"tenants": {"t": {"name": "T", "domains": ["t.example"], "plugin_set": "baseline"}},
            "http_api": http_api}
    registry = PluginRegistry.load()
    if problem is None:
        config_from_mapping(data, registry, source="<test>", base_dir=".")
        return
    with pytest.raises(ConfigError) as error:
        config_from_mapping(data, registry, source="<test>", base_dir=".")
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems
