"""Limits that hold under parallel requests, against the real portal app and store: the
password-PDF login's failed-login limit per account, wrong links per client network, and one
account for every spelling of an address."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from portal_helpers import csrf_token
from test_accounts_login import CITIZEN, CONFIG, PASSWORD, SETTINGS, add_account

from siegel.plugins.accounts import portal as accounts_portal
from siegel.plugins.password_pdf import portal as pdf_portal
from siegel.portal import Throttle
from siegel.throttle import NAMESPACE as THROTTLE_NAMESPACE

#: Smaller than the real 100 so that the test stays quick; the code path is the same.
LIMIT = 15


def client_at(p, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=p.app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://portal.test")


async def login_from(client: httpx.AsyncClient, address: str, password: str) -> int:
    token = csrf_token((await client.get("/t/test/password")).text)
    response = await client.post("/t/test/login", data={
        "address": address, "password": password, "csrf_token": token})
    return response.status_code


async def test_the_store_counts_parallel_attempts_atomically(portal):
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        throttle = Throttle(p.harness.runtime.state(THROTTLE_NAMESPACE), p.harness.clock,
                            p.app.state.portal.throttle_secret, kind="parallel", scope="test",
                            account="anna@example.net", client="192.0.2.7", limit=LIMIT,
                            per=timedelta(hours=1), client_limit=1000)
        results = await asyncio.gather(*(throttle.attempt() for _ in range(4 * LIMIT)))
        assert sum(r.allowed for r in results) == LIMIT
        assert not (await throttle.check()).allowed
        # Refused attempts counted nothing on the client: its counter shows only the allowed.
        client_only = Throttle(p.harness.runtime.state(THROTTLE_NAMESPACE), p.harness.clock,
                               p.app.state.portal.throttle_secret, kind="parallel",
                               scope="test", account=None, client="192.0.2.7", limit=1000,
                               per=timedelta(hours=1))
        assert (await client_only.check()).failures == LIMIT


async def test_parallel_wrong_passwords_from_many_clients_stop_at_the_account_limit(
        portal, monkeypatch):
    monkeypatch.setattr(accounts_portal, "LOGIN_FAILURES_PER_HOUR", LIMIT)
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        await add_account(p, CITIZEN, PASSWORD)
        clients = [client_at(p, f"198.51.100.{n}") for n in range(1, 3 * LIMIT + 1)]
        try:
            # Every spelling of the address is the same account.
            spellings = [CITIZEN, CITIZEN.upper(), CITIZEN.capitalize()]
            codes = Counter(await asyncio.gather(*(
                login_from(c, spellings[n % 3], f"falsch-{n}") for n, c in enumerate(clients))))
            assert codes == {422: LIMIT, 429: 2 * LIMIT}
            # The right password is refused too while the account is blocked, from anywhere.
            async with client_at(p, "203.0.113.5") as fresh:
                assert await login_from(fresh, CITIZEN, PASSWORD) == 429
            p.harness.clock.advance(hours=1)
            async with client_at(p, "203.0.113.5") as fresh:
                assert await login_from(fresh, CITIZEN.upper(), PASSWORD) == 303
        finally:
            for client in clients:
                await client.aclose()


@pytest.mark.parametrize("kind", ["register", "reset", "reply"])
async def test_wrong_links_are_throttled_per_client_network(portal, kind):
    limit = pdf_portal.LINK_FAILURES_PER_HOUR
    async with portal(config=CONFIG, settings=SETTINGS, client_address="2001:db8:1:2::10") as p:
        codes = Counter(await asyncio.gather(*(
            p.client.get(f"/t/test/{kind}/falsch-{n:04d}-{'x' * 30}") for n in range(2 * limit)
        )))
        codes = Counter(response.status_code for response in codes)
        assert codes == {404: limit, 429: limit}
        # Another host of the same /64 shares the budget; another network does not.
        async with client_at(p, "2001:db8:1:2::99") as neighbour:
            assert (await neighbour.get(f"/t/test/{kind}/noch-einer")).status_code == 429
        async with client_at(p, "2001:db8:1:3::10") as elsewhere:
            assert (await elsewhere.get(f"/t/test/{kind}/noch-einer")).status_code == 404
