"""The portal login (the accounts plugin) over HTTP: /login, /account, /logout, with the real
app and store (in process; the browser test in test_password_pdf_e2e.py covers the same pages in
Chromium). The accounts here come from the password PDF's old records, moved as on an upgrade."""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta

import attrs
import httpx
from portal_helpers import csrf_token

from siegel import Address
from siegel.plugins.accounts.portal import (
    LOGIN_FAILURES_PER_HOUR,
    LOGIN_SECONDS,
    LOGIN_THROTTLE,
)
from siegel.plugins.password_pdf.accounts import Account, pdf_key
from siegel.plugins.password_pdf.encrypt import derive_recipient_key, verify_password
from siegel.plugins.password_pdf.login import hash_password
from siegel.plugins.password_pdf.workflow import ACCOUNTS, Workflow
from siegel.portal import PortalSettings, Throttle
from siegel.throttle import NAMESPACE as THROTTLE_NAMESPACE

CITIZEN = "erika.mustermann@example.net"
LEGACY = "frueher@example.net"  # chose a password before the login existed: no Argon2id hash
PASSWORD = "Grüne Äpfel im Garten"
NEW_PASSWORD = "Blaue Birnen im Herbst"
CLIENT = "192.0.2.10"
CONFIG = {"tenants": {
    "test": {"plugin_set": "district", "domains": ["behoerde.example"]},
    "other": {"name": "Andere Behörde", "plugin_set": "district", "domains": ["andere.example"]},
}}
SETTINGS = PortalSettings()


async def add_account(p, address: str, password: str, *, login_hash: bool = True,
                      tenant: str = "test") -> None:
    account = Account(key=derive_recipient_key(password), set_at=p.harness.clock.now(),
                       login_hash=await hash_password(password) if login_hash else None)
    await p.harness.runtime.state(ACCOUNTS).put(f"{tenant}/{address}", account.encode())
    # What the password PDF does on its first use after an upgrade: onto the shared accounts.
    await Workflow(p.harness.runtime, p.harness.config.tenants[tenant]).upgrade_keys()


async def form_token(p, tenant: str = "test") -> str:
    """A CSRF token from a page that always shows a form."""
    return csrf_token((await p.client.get(f"/t/{tenant}/password")).text)


async def log_in(p, address: str, password: str, tenant: str = "test") -> httpx.Response:
    token = await form_token(p, tenant)
    return await p.client.post(f"/t/{tenant}/login", data={
        "address": address, "password": password, "csrf_token": token})


def login_throttle(p, address: str | None, client: str | None = CLIENT) -> Throttle:
    """The counters the login page uses: the account's (``address``) and the client's."""
    return Throttle(p.harness.runtime.state(THROTTLE_NAMESPACE), p.harness.clock,
                    p.app.state.portal.throttle_secret, kind=LOGIN_THROTTLE, scope="test",
                    account=address.lower() if address else None, client=client,
                    limit=LOGIN_FAILURES_PER_HOUR, per=timedelta(hours=1))


async def test_login_page_form_and_links(portal):
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        page = await p.client.get("/t/test/login")
        assert page.status_code == 200
        html = page.text
        assert 'autocomplete="username"' in html and 'type="email"' in html
        assert 'autocomplete="current-password"' in html and 'type="password"' in html
        assert 'name="csrf_token"' in html
        assert 'href="/t/test/password">Passwort vergessen?</a>' in html
        english = await p.client.get("/t/test/login?lang=en")
        assert "Forgot your password?" in english.text and "<h1>Log in</h1>" in english.text
        reset_page = await p.client.get("/t/test/password?lang=de")
        assert 'href="/t/test/login">Anmelden und Passwort ändern</a>' in reset_page.text
        assert (await p.client.get("/t/test/logout")).status_code == 405  # POST only


async def test_login_rotates_the_session_and_the_old_id_stops_working(portal):
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        await add_account(p, CITIZEN, PASSWORD)
        await p.client.get("/t/test/login")
        before = p.session_cookie
        assert before is not None
        response = await log_in(p, CITIZEN, PASSWORD)
        assert response.status_code == 303
        assert response.headers["location"] == "/t/test/account"
        after = p.session_cookie
        assert after is not None and after != before

        account = await p.client.get("/t/test/account")
        assert account.status_code == 200
        assert f"Sie sind angemeldet als {CITIZEN}." in account.text
        assert "Ihr Passwort wurde zuletzt am " in account.text
        assert 'autocomplete="new-password"' in account.text
        # Logged in, the login page leads to the account.
        assert (await p.client.get("/t/test/login")).headers["location"] == "/t/test/account"

        p.set_session_cookie(before)  # a session id planted or seen before the login
        planted = await p.client.get("/t/test/account")
        assert planted.status_code == 303
        assert planted.headers["location"].startswith("/t/test/session-expired?reason=invalid")
        p.set_session_cookie(after)
        assert (await p.client.get("/t/test/account")).status_code == 200


async def test_unknown_address_account_without_hash_and_wrong_password_answer_alike(portal):
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        await add_account(p, CITIZEN, PASSWORD)
        await add_account(p, LEGACY, PASSWORD, login_hash=False)
        answers = {}
        for case, address, password in (("unknown", "niemand@example.net", PASSWORD),
                                         ("without hash", LEGACY, PASSWORD),
                                         ("wrong password", CITIZEN, "Rote Kirschen im Mai")):
            token = await form_token(p)
            started = time.monotonic()
            response = await p.client.post("/t/test/login", data={
                "address": address, "password": password, "csrf_token": token})
            seconds = time.monotonic() - started
            assert seconds >= LOGIN_SECONDS, (case, seconds)
            # Generous: the machine may be busy; what matters is the floor above.
            assert seconds < LOGIN_SECONDS + 10.0, (case, seconds)
            body = re.sub(r'name="csrf_token" value="[^"]+"', "TOKEN", response.text)
            answers[case] = (response.status_code, body.replace(address, "ADDRESS"),
                             sorted(response.headers.keys()))
        assert answers["unknown"] == answers["without hash"] == answers["wrong password"]
        status, body, _headers = answers["unknown"]
        assert status == 422
        assert "Die E-Mail-Adresse oder das Passwort ist nicht richtig." in body
        assert 'role="alert"' in body and 'href="#field-password"' in body
        assert PASSWORD not in body
        for address in ("niemand@example.net", LEGACY, CITIZEN):
            assert (await login_throttle(p, address, client=None).check()).failures == 1
        assert (await login_throttle(p, None).check()).failures == 3


async def test_account_and_logout_need_a_login(portal):
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        response = await p.client.get("/t/test/account")
        assert response.status_code == 303
        assert response.headers["location"] == "/t/test/login?next=%2Ft%2Ftest%2Faccount"
        token = await form_token(p)
        response = await p.client.post("/t/test/account", data={
            "csrf_token": token, "current_password": PASSWORD, "password": NEW_PASSWORD,
            "password_repeat": NEW_PASSWORD})
        assert response.status_code == 303
        assert response.headers["location"] == "/t/test/login"


async def test_logout_needs_the_form_token_and_ends_the_login(portal):
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        await add_account(p, CITIZEN, PASSWORD)
        assert (await log_in(p, CITIZEN, PASSWORD)).status_code == 303
        account = await p.client.get("/t/test/account")
        logged_in = p.session_cookie

        refused = await p.client.post("/t/test/logout", data={"csrf_token": "forged"})
        assert refused.status_code == 403
        assert (await p.client.get("/t/test/account")).status_code == 200

        response = await p.client.post("/t/test/logout",
                                       data={"csrf_token": csrf_token(account.text)})
        assert response.status_code == 303
        assert response.headers["location"] == "/t/test/login"
        assert p.session_cookie not in (None, logged_in)
        login_page = await p.client.get("/t/test/login")
        assert "Sie haben sich abgemeldet." in login_page.text
        assert (await p.client.get("/t/test/account")).headers["location"].startswith(
            "/t/test/login?next=")
        p.set_session_cookie(logged_in)
        assert (await p.client.get("/t/test/account")).status_code == 303


async def test_failed_logins_are_throttled_per_account_and_a_success_does_not_clear_them(portal):
    async with portal(config=CONFIG, settings=SETTINGS, client_address=CLIENT) as p:
        await add_account(p, CITIZEN, PASSWORD)
        throttle = login_throttle(p, CITIZEN, client=None)
        for _ in range(LOGIN_FAILURES_PER_HOUR - 2):
            await throttle.record_failure()
        assert (await log_in(p, CITIZEN, PASSWORD)).status_code == 303
        await p.client.post("/t/test/logout", data={"csrf_token": await form_token(p)})
        assert (await throttle.check()).failures == LOGIN_FAILURES_PER_HOUR - 2

        for _ in range(2):
            assert (await log_in(p, CITIZEN, "Rote Kirschen im Mai")).status_code == 422
        blocked = await log_in(p, CITIZEN, PASSWORD)  # even the right password waits now
        assert blocked.status_code == 429
        assert blocked.headers["retry-after"] == "3600"
        assert "Zu viele Versuche" in blocked.text
        # the same for an address written differently
        assert (await log_in(p, CITIZEN.upper(), PASSWORD)).status_code == 429

        p.harness.clock.advance(minutes=61)
        assert (await log_in(p, CITIZEN, PASSWORD)).status_code == 303


async def test_failed_logins_are_throttled_per_client_across_accounts(portal):
    async with portal(config=CONFIG, settings=SETTINGS, client_address=CLIENT) as p:
        await add_account(p, CITIZEN, PASSWORD)
        client_only = login_throttle(p, None)
        for _ in range(LOGIN_FAILURES_PER_HOUR):
            await client_only.record_failure()
        assert (await login_throttle(p, CITIZEN).check()).allowed is False  # client counter
        assert (await log_in(p, CITIZEN, PASSWORD)).status_code == 429
        other = httpx.AsyncClient(transport=httpx.ASGITransport(app=p.app, client=("192.0.2.99", 1)),
                                  base_url="http://portal.test")
        async with other:
            token = csrf_token((await other.get("/t/test/password")).text)
            response = await other.post("/t/test/login", data={
                "address": CITIZEN, "password": PASSWORD, "csrf_token": token})
            assert response.status_code == 303


async def test_changing_the_password(portal, caplog):
    caplog.set_level(logging.DEBUG)
    async with portal(config=CONFIG, settings=SETTINGS, client_address=CLIENT) as p:
        await add_account(p, CITIZEN, PASSWORD)
        assert (await log_in(p, CITIZEN, PASSWORD)).status_code == 303
        page = await p.client.get("/t/test/account")

        async def change(current: str, new: str, repeated: str) -> httpx.Response:
            return await p.client.post("/t/test/account", data={
                "csrf_token": csrf_token(page.text), "current_password": current,
                "password": new, "password_repeat": repeated})

        wrong = await change("Rote Kirschen im Mai", NEW_PASSWORD, NEW_PASSWORD)
        assert wrong.status_code == 422
        assert "Das bisherige Passwort ist nicht richtig." in wrong.text
        assert 'aria-invalid="true"' in wrong.text and 'href="#field-current_password"' in wrong.text
        assert (await login_throttle(p, CITIZEN, client=None).check()).failures == 1  # a guess

        weak = await change(PASSWORD, "passwort123", "passwort123")
        assert weak.status_code == 422 and "zu verbreitet" in weak.text
        mismatch = await change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "!")
        assert mismatch.status_code == 422 and "stimmen nicht überein" in mismatch.text

        before = p.session_cookie
        done = await change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD)
        assert done.status_code == 303
        assert done.headers["location"] == "/t/test/account?done=password"
        assert p.session_cookie != before  # rotated
        done_page = await p.client.get(done.headers["location"])  # still logged in
        assert done_page.status_code == 200
        assert "Ihr neues Passwort ist gespeichert." in done_page.text
        await p.harness.process()
        assert [m for m in p.harness.sink.to(CITIZEN)
                if m.parsed.get("X-Siegel-Mail") == "accounts.password_changed"]
        # The password PDF's key material followed (hook siegel_account_password_set): the next
        # PDFs open with the new password only.
        changed = await p.harness.runtime.accounts("test").get(Address.parse(CITIZEN))
        key = pdf_key(changed)
        assert key is not None and verify_password(key, NEW_PASSWORD)
        assert not verify_password(key, PASSWORD)

        await p.client.post("/t/test/logout", data={"csrf_token": await form_token(p)})
        assert (await log_in(p, CITIZEN, PASSWORD)).status_code == 422
        assert (await log_in(p, CITIZEN, NEW_PASSWORD)).status_code == 303
    for secret in (PASSWORD, NEW_PASSWORD, "Rote Kirschen im Mai"):
        assert secret not in caplog.text
    assert "portal login refused" in caplog.text  # the log was captured at all


async def test_a_password_set_elsewhere_ends_the_login(portal):
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        await add_account(p, CITIZEN, PASSWORD)
        assert (await log_in(p, CITIZEN, PASSWORD)).status_code == 303
        workflow = Workflow(p.harness.runtime, p.harness.config.tenants["test"])
        # the mailbox owner resets the password through a mailed link, in another browser
        assert await workflow.change_password(Address.parse(CITIZEN), NEW_PASSWORD) == []
        response = await p.client.get("/t/test/account")
        assert response.status_code == 303
        assert response.headers["location"] == "/t/test/login?next=%2Ft%2Ftest%2Faccount"


async def test_a_login_is_valid_for_its_tenant_only(portal):
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        await add_account(p, CITIZEN, PASSWORD)
        await add_account(p, CITIZEN, PASSWORD, tenant="other")
        assert (await log_in(p, CITIZEN, PASSWORD)).status_code == 303
        assert (await p.client.get("/t/test/account")).status_code == 200
        other = await p.client.get("/t/other/account")
        assert other.status_code == 303
        assert other.headers["location"] == "/t/other/login?next=%2Ft%2Fother%2Faccount"


async def test_a_login_session_copied_to_another_tenant_is_refused(portal):
    # Session data is kept per tenant; the login also names its tenant, so a login record that
    # ended up under another tenant's data does not count there.
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        await add_account(p, CITIZEN, PASSWORD)
        address = Address.parse(CITIZEN)
        account = await p.harness.runtime.accounts("test").get(address)
        assert account is not None
        # even the same password version
        await p.harness.runtime.accounts("other").update(
            address, lambda _current: attrs.evolve(account, tenant="other"))
        assert (await log_in(p, CITIZEN, PASSWORD)).status_code == 303
        sessions = p.app.state.portal.sessions
        loaded = await sessions.load(p.session_cookie, tenant="test", writable=False)
        login = loaded.session.get("accounts.login")
        assert login["tenant"] == "test"
        copied = await sessions.load(p.session_cookie, tenant="other", writable=True)
        copied.session["accounts.login"] = login
        await copied.session.save()
        other = await p.client.get("/t/other/account")
        assert other.status_code == 303
        assert other.headers["location"] == "/t/other/login?next=%2Ft%2Fother%2Faccount"


async def test_an_expired_login_explains_and_starts_over(portal):
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        await add_account(p, CITIZEN, PASSWORD)
        assert (await log_in(p, CITIZEN, PASSWORD)).status_code == 303
        p.harness.clock.advance(minutes=SETTINGS.session_idle_minutes + 1)
        response = await p.client.get("/t/test/account")
        assert response.status_code == 303
        location = response.headers["location"]
        assert location == ("/t/test/session-expired?reason=idle&page=accounts.login"
                            "&next=%2Ft%2Ftest%2Faccount")
        explained = await p.client.get(location)
        assert explained.status_code == 200
        assert 'href="/t/test/login?next=%2Ft%2Ftest%2Faccount"' in explained.text
        assert (await log_in(p, CITIZEN, PASSWORD)).status_code == 303

