"""Throttling failed attempts per account and per client, shared through the store."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
from portal_demo_plugin import DemoPlugin
from portal_helpers import csrf_token

from siegel.portal import PortalSettings, create_app, uniform_timing
from siegel.throttle import NAMESPACE, client_bucket


async def guess(client: httpx.AsyncClient, account: str, code: str = "wrong") -> httpx.Response:
    token = csrf_token((await client.get("/t/test/guess")).text)
    return await client.post("/t/test/guess",
                             data={"account": account, "code": code, "csrf_token": token})


async def test_failures_are_counted_and_block_after_the_limit(portal):
    async with portal(plugins=[("demo", DemoPlugin())]) as p:
        for expected in (1, 2, 3):
            response = await guess(p.client, "erika@example.net")
            assert response.text == f"wrong failures={expected}"
        blocked = await guess(p.client, "erika@example.net", code="right")
        assert blocked.status_code == 429
        assert blocked.headers["retry-after"] == "3600"
        assert "Zu viele Versuche" in blocked.text and "60 Minuten" in blocked.text
        # another account from the same client still has its own budget ...
        assert (await guess(p.client, "max@example.net", code="right")).text == "ok"
        # ... and the window ends
        p.harness.clock.advance(minutes=30)
        blocked = await guess(p.client, "erika@example.net", code="right")
        assert blocked.headers["retry-after"] == "1800"
        p.harness.clock.advance(minutes=30)
        assert (await guess(p.client, "erika@example.net", code="right")).text == "ok"


async def test_the_client_address_is_counted_across_accounts(portal):
    async with portal(plugins=[("demo", DemoPlugin())]) as p:
        for number in range(5):   # client_limit=5, each account only once
            assert (await guess(p.client, f"user{number}@example.net")).status_code == 400
        assert (await guess(p.client, "fresh@example.net", code="right")).status_code == 429


async def test_other_clients_are_not_blocked_by_someone_elses_failures(portal):
    async with portal(plugins=[("demo", DemoPlugin())], client_address="198.51.100.1") as p:
        for number in range(5):
            await guess(p.client, f"user{number}@example.net")
        other = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=p.app, client=("198.51.100.2", 1)),
            base_url="http://portal.test")
        async with other:
            assert (await guess(other, "fresh@example.net", code="right")).text == "ok"


async def test_success_resets_the_account_but_not_the_client(portal):
    async with portal(plugins=[("demo", DemoPlugin())]) as p:
        await guess(p.client, "erika@example.net")
        await guess(p.client, "erika@example.net")
        assert (await guess(p.client, "erika@example.net", code="right")).text == "ok"
        assert (await guess(p.client, "erika@example.net")).text == "wrong failures=3"
        # account count restarted at 1, the client's went on (3 failures + 1) and shows here


async def test_counters_are_shared_by_instances_and_do_not_name_the_account(portal):
    async with portal(plugins=[("demo", DemoPlugin())]) as p:
        await guess(p.client, "erika@example.net")
        second = create_app(p.harness.runtime, settings=PortalSettings())
        transport = httpx.ASGITransport(app=second, client=("192.0.2.10", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as c2:
            assert (await guess(c2, "erika@example.net")).text == "wrong failures=2"
        keys = [key for key, _version in (await p.state())[NAMESPACE]]
        assert len(keys) == 2
        assert not any("erika" in key or "192.0.2" in key for key in keys)


def test_ipv6_clients_are_counted_per_64_network():
    assert client_bucket("2001:db8:1:2:aaaa::1") == client_bucket("2001:db8:1:2:bbbb::2")
    assert client_bucket("2001:db8:1:2::1") != client_bucket("2001:db8:1:3::1")
    assert client_bucket("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_bucket("192.0.2.1") != client_bucket("192.0.2.2")
    assert client_bucket("unknown") == "unknown"


async def test_bad_throttle_arguments_fail_early(portal):
    from siegel.throttle import Throttle

    async def secret() -> bytes:
        return b"k" * 32

    with pytest.raises(ValueError, match="limits"):
        Throttle(None, None, secret, kind="x", scope="t", account="a", client=None,  # type: ignore[arg-type]
                 limit=0, per=timedelta(hours=1))
    with pytest.raises(ValueError, match="window"):
        Throttle(None, None, secret, kind="x", scope="t", account="a", client=None,  # type: ignore[arg-type]
                 limit=1, per=timedelta(0))


async def test_uniform_timing_pads_fast_paths():
    started = time.monotonic()
    async with uniform_timing(0.05):
        pass
    assert time.monotonic() - started >= 0.05
    started = time.monotonic()
    with pytest.raises(LookupError):
        async with uniform_timing(0.05):
            raise LookupError
    assert time.monotonic() - started >= 0.05
