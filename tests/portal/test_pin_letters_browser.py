"""PIN letters in Debian's Chromium: sign in, request a letter and enter its PIN with the
keyboard alone; axe-core finds no WCAG 2.1 AA violation on any state of both pages, in German
and English, and the pages break no Content-Security-Policy rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser import axe_violations, browser_page
from pin_letter_helpers import print_letters

from siegel import Address, IdentityLevel
from siegel.portal import PortalServer, PortalSettings, create_app

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("SIEGEL_SKIP_BROWSER") == "1",
                       reason="SIEGEL_SKIP_BROWSER=1"),
]

ANNA = "anna@example.net"
PASSWORD = "Grüne Äpfel im Garten"
CONFIG = {"tenants": {"test": {"plugin_set": "district", "plugins": ["pin_letters"]}}}


async def focused_id(page) -> str:
    return str(await page.evaluate("document.activeElement.id || document.activeElement.tagName"))


async def test_request_and_confirm_with_the_keyboard_and_axe(siegel_harness, chromium, axe_source,
                                                          tmp_path: Path):
    async with siegel_harness(config=CONFIG) as harness:
        await harness.runtime.accounts("test").set_password(Address.parse(ANNA), PASSWORD)
        settings = PortalSettings(port=0)
        server = PortalServer(create_app(harness.runtime, settings=settings), settings,
                              graceful_seconds=2)
        host, port = await server.start()
        base = f"http://{host}:{port}/t/test"
        checked: dict[str, list[str]] = {}
        try:
            async with browser_page(chromium) as page:

                async def check(name: str) -> None:
                    language = await page.evaluate("document.documentElement.lang")
                    checked[f"{name} [{language}]"] = await axe_violations(page, axe_source)

                async def submit() -> None:
                    async with page.expect_navigation():
                        await page.keyboard.press("Enter")

                wrong_pin = "ACDE-FHJK-LMNP"
                await page.goto(f"{base}/pin-letter")
                await page.wait_for_url("**/login?next=*")
                await page.fill("#field-address", ANNA)
                await page.fill("#field-password", PASSWORD)
                await submit()
                await page.wait_for_url("**/pin-letter")
                await check("request")

                # The form in order, with the keyboard alone.
                await page.focus("#field-name")
                order = [await focused_id(page)]
                for _ in range(5):
                    await page.keyboard.press("Tab")
                    order.append(await focused_id(page))
                assert order == ["field-name", "field-supplement", "field-street",
                                 "field-postcode", "field-city", "BUTTON"]
                await page.focus("#field-name")
                for value in ("Anna Müller", "", "Hauptstraße 5a", "3707", "Göttingen"):
                    await page.keyboard.type(value)
                    await page.keyboard.press("Tab")
                await submit()
                assert "error-summary" in await page.evaluate("document.activeElement.className")
                await check("request with errors")
                await page.keyboard.press("Tab")
                await page.keyboard.press("Enter")  # the summary's link to the postcode
                assert await focused_id(page) == "field-postcode"
                await page.keyboard.press("Control+A")
                await page.keyboard.type("37073")
                await submit()
                assert "37073 Göttingen" in await page.text_content("main")
                await check("request pending")
                await page.goto(f"{base}/pin-letter?lang=en")
                await check("request pending")

                pin = (await print_letters(harness, tmp_path))[ANNA]

                for language in ("en", "de"):
                    await page.goto(f"{base}/pin-letter/confirm?lang={language}")
                    await check("confirm")
                    await page.focus("#field-pin")
                    await page.keyboard.type(wrong_pin)
                    await submit()
                    assert await page.get_attribute("#field-pin", "aria-invalid") == "true"
                    assert "error-summary" in await page.evaluate(
                        "document.activeElement.className")
                    await check("confirm refused")
                await page.focus("#field-pin")
                await page.keyboard.press("Control+A")
                await page.keyboard.type(pin.lower().replace("-", " "))
                await submit()
                assert await page.locator("[role=status]").count() == 1
                await check("confirmed")
                await page.goto(f"{base}/pin-letter/confirm?lang=en")
                await check("confirmed")
                await page.goto(f"{base}/pin-letter?lang=en")
                await check("request when confirmed")
                await page.fill("#field-name", "Anna Müller")
                await page.focus("#field-postcode")
                await page.keyboard.type("1")
                await submit()
                await check("request with errors")
                assert page.problems == []
        finally:
            await server.stop()
        account = await harness.runtime.accounts("test").get(Address.parse(ANNA))
        assert account.level is IdentityLevel.CONFIRMED
    assert {name: found for name, found in checked.items() if found} == {}
    assert len(checked) == 12
