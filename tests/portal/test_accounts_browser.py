"""The sign-in in Debian's Chromium: the authenticator app set up and used with the keyboard
alone, a passkey registered and used with the DevTools virtual authenticator (CDP ``WebAuthn``),
the passkey page without JavaScript, and axe-core on every new page in German and English."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from browser import axe_violations, browser_page
from test_password_pdf_e2e import focused, free_port, tab_to

from siegel import Address
from siegel.plugins.accounts import factors
from siegel.portal import PortalServer, create_app
from siegel.testing import Harness

pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("SIEGEL_SKIP_BROWSER") == "1",
                       reason="SIEGEL_SKIP_BROWSER=1"),
]

CITIZEN = "erika.mustermann@example.net"
PASSWORD = "Grüne Äpfel im Garten"


@asynccontextmanager
async def live_portal(siegel_harness: Callable[..., Any], *, second_factor: str = "optional",
                      ) -> AsyncIterator[tuple[Harness, str]]:
    # Passkeys need a secure context and a domain as relying party: localhost, not 127.0.0.1.
    port = free_port()
    config = {"tenants": {"test": {"plugin_set": "district", "settings": {
                  "accounts": {"second_factor": second_factor}}}},
              "portal": {"port": port, "public_base_url": f"http://localhost:{port}"}}
    async with siegel_harness(config=config) as harness:
        await harness.runtime.accounts("test").set_password(Address.parse(CITIZEN), PASSWORD)
        server = PortalServer(create_app(harness.runtime, settings=harness.config.portal),
                              harness.config.portal, graceful_seconds=2)
        await server.start()
        try:
            yield harness, f"http://localhost:{port}/t/test"
        finally:
            await server.stop()


async def log_in(page: Any, base: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("#field-address", CITIZEN)
    await page.fill("#field-password", PASSWORD)
    async with page.expect_navigation():
        await page.click("main button[type=submit]")


async def log_out(page: Any) -> None:
    async with page.expect_navigation():
        await page.get_by_role("button", name="Abmelden").click()


async def test_authenticator_app_with_the_keyboard_alone(siegel_harness, chromium, axe_source):
    checked: dict[str, list[str]] = {}
    async with live_portal(siegel_harness) as (harness, base), browser_page(chromium) as page:

        async def axe(name: str) -> None:
            for language in ("en", "de"):  # the page in English, then back in German
                url = re.sub(r"[?&]lang=\w+", "", page.url)
                await page.goto(url + ("&" if "?" in url else "?") + f"lang={language}")
                checked[f"{name} [{language}]"] = await axe_violations(page, axe_source)

        await page.goto(f"{base}/login")
        await axe("login")
        await log_in(page, base)
        assert await page.inner_text("h1") == "Ihr Konto"
        await axe("account")

        await page.get_by_role("button", name="Authenticator-App einrichten").focus()
        async with page.expect_navigation():
            await page.keyboard.press("Enter")
        assert await page.inner_text("h1") == "Authenticator-App einrichten"
        alt = await page.get_attribute("img.qr-code", "alt")
        assert alt is not None and "QR-Code" in alt and "als Text" in alt
        secret = factors.secret_from_text(await page.inner_text("code.secret"))
        await axe("totp set-up")
        await tab_to(page, "field-code")
        step = factors.time_step(harness.clock.now())
        await page.keyboard.type(factors.totp_code(secret, step))
        async with page.expect_navigation():
            await page.keyboard.press("Enter")
        assert await page.inner_text("h1") == "Ihre Wiederherstellungscodes"
        codes = await page.locator("ul.recovery-codes code").all_inner_texts()
        assert len(codes) == 10
        await axe("recovery codes")
        await page.get_by_role("button", name="Ich habe die Codes gespeichert").focus()
        async with page.expect_navigation():
            await page.keyboard.press("Enter")
        assert "Die Authenticator-App ist eingerichtet" in await page.inner_text("[role=status]")

        await log_out(page)
        harness.clock.advance(seconds=30)
        await log_in(page, base)
        assert await page.inner_text("h1") == "Anmeldung bestätigen"
        await axe("second factor")
        await tab_to(page, "field-code")
        await page.keyboard.type("000000" if factors.totp_code(secret, step + 1) != "000000"
                                 else "111111")
        async with page.expect_navigation():
            await page.keyboard.press("Enter")
        assert "error-summary" in await focused(page)  # announced and focused
        checked["second factor with errors"] = await axe_violations(page, axe_source)
        await page.keyboard.press("Tab")
        await page.keyboard.press("Enter")  # the summary's link leads to the field
        assert await focused(page) == "field-code"
        await page.keyboard.type(factors.totp_code(secret, step + 1))
        async with page.expect_navigation():
            await page.keyboard.press("Enter")
        assert await page.inner_text("h1") == "Ihr Konto"
        assert page.problems == [], page.problems  # type: ignore[attr-defined]
    assert {k: v for k, v in checked.items() if v} == {}
    assert len(checked) == 2 * 5 + 1


async def test_passkey_registered_and_used_with_the_virtual_authenticator(
        siegel_harness, chromium, axe_source):
    checked: dict[str, list[str]] = {}
    async with live_portal(siegel_harness) as (harness, base), browser_page(chromium) as page:
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("WebAuthn.enable")
        added = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
            "hasUserVerification": True, "isUserVerified": True,
            "automaticPresenceSimulation": True}})

        await log_in(page, base)
        async with page.expect_navigation():
            await page.get_by_role("button", name="Passkey hinzufügen").click()
        assert await page.inner_text("h1") == "Passkey hinzufügen"
        for language in ("en", "de"):
            await page.goto(f"{base}/account/passkeys?lang={language}")
            checked[f"passkey [{language}]"] = await axe_violations(page, axe_source)
        await page.fill("#field-label", "Laptop")
        async with page.expect_navigation():
            await page.get_by_role("button", name="Passkey erstellen").click()
        assert await page.inner_text("h1") == "Ihre Wiederherstellungscodes"  # the first factor
        async with page.expect_navigation():
            await page.get_by_role("button", name="Ich habe die Codes gespeichert").click()
        assert "Laptop, gespeichert am" in await page.inner_text("main")
        credentials = await cdp.send("WebAuthn.getCredentials",
                                     {"authenticatorId": added["authenticatorId"]})
        assert len(credentials["credentials"]) == 1
        account = await harness.runtime.accounts("test").get(Address.parse(CITIZEN))
        assert account is not None and [p.label for p in account.passkeys] == ["Laptop"]
        count = account.passkeys[0].sign_count

        await log_out(page)
        await log_in(page, base)
        assert await page.inner_text("h1") == "Anmeldung bestätigen"
        for language in ("en", "de"):
            await page.goto(f"{base}/login/second-factor?lang={language}")
            checked[f"second factor, passkey [{language}]"] = await axe_violations(page,
                                                                                   axe_source)
        async with page.expect_navigation():
            await page.get_by_role("button", name="Mit Passkey bestätigen").click()
        assert await page.inner_text("h1") == "Ihr Konto"
        account = await harness.runtime.accounts("test").get(Address.parse(CITIZEN))
        assert account is not None and account.passkeys[0].last_used_at is not None
        assert account.passkeys[0].sign_count > count
        assert page.problems == [], page.problems  # type: ignore[attr-defined]

        # Without JavaScript the page says that passkeys need it and shows no dead button.
        browser = page.context.browser
        quiet = await browser.new_context(java_script_enabled=False, locale="de-DE")
        try:
            other = await quiet.new_page()
            await other.goto(f"{base}/login")
            await other.fill("#field-address", CITIZEN)
            await other.fill("#field-password", PASSWORD)
            async with other.expect_navigation():
                await other.click("main button[type=submit]")
            assert "Passkeys brauchen JavaScript" in await other.inner_text("main")
            assert not await other.get_by_role("button", name="Mit Passkey bestätigen") \
                .is_visible()
        finally:
            await quiet.close()
    assert {k: v for k, v in checked.items() if v} == {}


async def test_a_required_second_factor_is_set_up_before_anything_else(siegel_harness, chromium,
                                                                      axe_source):
    checked: dict[str, list[str]] = {}
    async with live_portal(siegel_harness, second_factor="required") as (harness, base), \
            browser_page(chromium) as page:
        await log_in(page, base)
        assert await page.inner_text("h1") == "Zweiten Faktor einrichten"
        for language in ("en", "de"):
            await page.goto(f"{base}/login/second-factor/setup?lang={language}")
            checked[f"set-up [{language}]"] = await axe_violations(page, axe_source)
        await page.goto(f"{base}/account")  # nothing else opens: back to the set-up
        await page.wait_for_url("**/login/second-factor/setup**")
        await page.get_by_role("button", name="Authenticator-App einrichten").focus()
        async with page.expect_navigation():
            await page.keyboard.press("Enter")
        secret = factors.secret_from_text(await page.inner_text("code.secret"))
        await tab_to(page, "field-code")
        await page.keyboard.type(factors.totp_code(secret, factors.time_step(harness.clock.now())))
        async with page.expect_navigation():
            await page.keyboard.press("Enter")
        async with page.expect_navigation():
            await page.get_by_role("button", name="Ich habe die Codes gespeichert").click()
        assert await page.inner_text("h1") == "Ihr Konto"
        assert page.problems == [], page.problems  # type: ignore[attr-defined]
    assert {k: v for k, v in checked.items() if v} == {}
