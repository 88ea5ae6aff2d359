"""The second factor over HTTP with the real app and store: setting up the authenticator app
(QR code, key as text), signing in with a code (once only), with a recovery code, a tenant that
requires a second factor, throttling, and where ``next`` may lead."""

from __future__ import annotations

import html
import re

import httpx
from portal_helpers import csrf_token
from test_accounts_login import CITIZEN, CONFIG, PASSWORD, SETTINGS, add_account

from siegel import Address
from siegel.plugins.accounts import factors
from siegel.plugins.accounts.second_factor import FAILURES_PER_HOUR

REQUIRED = {"tenants": {"test": {**CONFIG["tenants"]["test"],
                                 "settings": {"accounts": {"second_factor": "required"}}}}}
_SECRET = re.compile(r'<code class="secret"[^>]*>([A-Z2-7 ]+)</code>')
_CODES = re.compile(r"<li><code>([0-9A-Z-]{19})</code></li>")


async def post(p, path: str, page: httpx.Response | None = None, **data: str) -> httpx.Response:
    token = csrf_token((page or await p.client.get("/t/test/password")).text)
    return await p.client.post(path, data={"csrf_token": token, **data})


async def log_in(p, password: str = PASSWORD, query: str = "") -> httpx.Response:
    page = await p.client.get(f"/t/test/login{query}")
    return await p.client.post(f"/t/test/login{query}", data={
        "csrf_token": csrf_token(page.text), "address": CITIZEN, "password": password})


def code_now(p, secret: bytes, offset: int = 0) -> str:
    return factors.totp_code(secret, factors.time_step(p.harness.clock.now()) + offset)


async def set_up_app(p, *, next_query: str = "") -> tuple[bytes, list[str]]:
    """Set up the authenticator app from the account page (or the set-up step); returns the
    secret and the recovery codes shown."""
    start = await post(p, f"/t/test/account/totp{next_query}", action="start")
    assert start.status_code == 303
    page = await p.client.get(start.headers["location"])
    assert page.status_code == 200
    assert 'src="data:image/svg+xml' in page.text and "QR-Code" in page.text
    secret = factors.secret_from_text(_SECRET.search(page.text).group(1))
    wrong = await post(p, start.headers["location"], page, action="confirm", code="12345")
    assert wrong.status_code == 422 and 'href="#field-code"' in wrong.text
    done = await post(p, start.headers["location"], page, action="confirm",
                      code=code_now(p, secret))
    assert done.status_code == 303
    assert done.headers["location"].startswith("/t/test/account/recovery-codes?next=")
    codes_page = await p.client.get(done.headers["location"])
    codes = _CODES.findall(codes_page.text)
    assert len(codes) == 10, (codes_page.status_code, codes_page.headers, codes_page.text[-3000:])
    saved = await post(p, done.headers["location"], codes_page, action="saved")
    assert saved.status_code == 303
    assert (await p.client.get(done.headers["location"])).status_code == 303  # shown once
    return secret, codes


async def test_set_up_the_app_then_sign_in_with_a_code_that_works_once(portal):
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        await add_account(p, CITIZEN, PASSWORD)
        assert (await log_in(p)).headers["location"] == "/t/test/account"
        secret, _codes = await set_up_app(p)
        account_page = await p.client.get("/t/test/account?done=totp")
        assert "Die Authenticator-App ist eingerichtet." in account_page.text
        assert "Sie haben noch 10 unbenutzte Wiederherstellungscodes." in account_page.text
        stored = await p.harness.runtime.accounts("test").get(Address.parse(CITIZEN))
        assert stored is not None and stored.totp is not None and stored.totp.secret == secret

        await post(p, "/t/test/logout", account_page)
        p.harness.clock.advance(seconds=30)
        first = await log_in(p, query="?next=/t/test/password")
        assert first.status_code == 303
        step = first.headers["location"]
        assert step == "/t/test/login/second-factor?next=%2Ft%2Ftest%2Fpassword"
        # The password alone opens nothing.
        assert (await p.client.get("/t/test/account")).status_code == 303
        assert (await p.client.get("/t/test/login")).headers["location"].startswith(
            "/t/test/login/second-factor")
        page = await p.client.get(step)
        assert page.status_code == 200 and 'autocomplete="one-time-code"' in page.text
        code = code_now(p, secret)
        before = p.session_cookie
        ok = await post(p, step, page, method="totp", code=code)
        assert ok.status_code == 303 and ok.headers["location"] == "/t/test/password"
        assert p.session_cookie != before  # rotated after the second factor
        assert (await p.client.get("/t/test/account")).status_code == 200

        # The same code in another session (seen over a shoulder) is refused.
        await post(p, "/t/test/logout", await p.client.get("/t/test/account"))
        step = (await log_in(p)).headers["location"]
        page = await p.client.get(step)
        replay = await post(p, step, page, method="totp", code=code)
        assert replay.status_code == 422
        assert "nicht richtig oder wurde schon verwendet" in replay.text
        p.harness.clock.advance(seconds=30)
        assert (await post(p, step, replay, method="totp",
                           code=code_now(p, secret))).status_code == 303


async def test_a_recovery_code_stands_in_once_and_the_app_can_be_removed(portal):
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        await add_account(p, CITIZEN, PASSWORD)
        await log_in(p)
        _secret, codes = await set_up_app(p)
        await post(p, "/t/test/logout", await p.client.get("/t/test/account"))
        step = (await log_in(p)).headers["location"]
        page = await p.client.get(step)
        assert "Wiederherstellungscode" in page.text
        used = await post(p, step, page, method="recovery", recovery_code=codes[3].lower())
        assert used.status_code == 303 and used.headers["location"] == "/t/test/account"
        account_page = await p.client.get("/t/test/account")
        assert "Sie haben noch 9 unbenutzte" in account_page.text

        renewed = await post(p, "/t/test/account/recovery-codes", account_page, action="new")
        new_codes = _CODES.findall((await p.client.get(renewed.headers["location"])).text)
        assert len(new_codes) == 10 and not set(new_codes) & set(codes)

        removed = await post(p, "/t/test/account/totp", account_page, action="remove")
        assert removed.headers["location"] == "/t/test/account?done=totp_removed"
        await post(p, "/t/test/logout", await p.client.get("/t/test/account"))
        assert (await log_in(p)).headers["location"] == "/t/test/account"  # no second step


async def test_second_factor_failures_are_throttled(portal):
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        await add_account(p, CITIZEN, PASSWORD)
        await log_in(p)
        secret, _codes = await set_up_app(p)
        await post(p, "/t/test/logout", await p.client.get("/t/test/account"))
        p.harness.clock.advance(seconds=30)
        step = (await log_in(p)).headers["location"]
        page = await p.client.get(step)
        good = code_now(p, secret)
        wrong = next(c for c in ("000000", "111111", "222222", "999999")
                     if factors.matching_step(secret, c, p.harness.clock.now()) is None)
        # The wrong code typed during the set-up counts too.
        for _ in range(FAILURES_PER_HOUR - 1):
            assert (await post(p, step, page, method="totp", code=wrong)).status_code == 422
        blocked = await post(p, step, page, method="totp", code=good)
        assert blocked.status_code == 429 and "Zu viele Versuche" in blocked.text
        p.harness.clock.advance(hours=1, seconds=5)
        assert (await post(p, step, page, method="totp",
                           code=code_now(p, secret))).status_code == 303


async def test_a_tenant_that_requires_a_second_factor_sets_one_up_first(portal):
    async with portal(config=REQUIRED, settings=SETTINGS) as p:
        await add_account(p, CITIZEN, PASSWORD)
        first = await log_in(p, query="?next=/t/test/password")
        setup = first.headers["location"]
        assert setup == "/t/test/login/second-factor/setup?next=%2Ft%2Ftest%2Fpassword"
        for path in ("/t/test/account", "/t/test/account/recovery-codes"):
            assert (await p.client.get(path)).status_code == 303  # nothing else opens
        page = await p.client.get(setup)
        assert page.status_code == 200
        assert "verlangt einen zweiten Faktor für jedes Konto" in html.unescape(page.text)
        assert 'name="action" value="start"' in page.text
        secret, _codes = await set_up_app(p, next_query="?next=%2Ft%2Ftest%2Fpassword")
        assert (await p.client.get("/t/test/account")).status_code == 200
        account_page = await p.client.get("/t/test/account")
        assert "richten Sie erst einen anderen ein" in account_page.text  # the last factor stays
        refused = await post(p, "/t/test/account/totp", account_page, action="remove")
        assert refused.headers["location"] == "/t/test/account"
        stored = await p.harness.runtime.accounts("test").get(Address.parse(CITIZEN))
        assert stored is not None and stored.totp is not None and stored.totp.secret == secret


async def test_next_leads_only_to_pages_of_the_same_tenant(portal):
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        await add_account(p, CITIZEN, PASSWORD)
        for target in ("//evil.example/", "https://evil.example/t/test/", "/t/other/account",
                       "/t/test/../../evil", "/\\evil.example", "javascript:alert(1)"):
            response = await log_in(p, query="?" + httpx.QueryParams({"next": target}).__str__())
            assert response.headers["location"] == "/t/test/account", target
            await post(p, "/t/test/logout", await p.client.get("/t/test/account"))
        response = await log_in(p, query="?next=%2Ft%2Ftest%2Fpassword%3Flang%3Den")
        assert response.headers["location"] == "/t/test/password?lang=en"
