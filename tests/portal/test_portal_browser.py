"""The portal in a real browser: Debian's Chromium driven by Playwright, checked with axe-core.

Needs ``/usr/bin/chromium`` (or ``SIEGEL_CHROMIUM``) and ``npm`` (axe-core is installed once into
pytest's cache folder); ``sh .ci/browser-packages`` installs both on Debian. Set
``SIEGEL_SKIP_BROWSER=1`` to skip these tests on a machine without them, and
``SIEGEL_SCREENSHOTS=DIR`` to keep the screenshots.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from browser import axe_violations, browser_page
from portal_demo_plugin import DemoPlugin

from siegel.portal import PortalServer, PortalSettings, create_app

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("SIEGEL_SKIP_BROWSER") == "1",
                       reason="SIEGEL_SKIP_BROWSER=1"),
]

@asynccontextmanager
async def live_portal(siegel_harness: Callable[..., Any]) -> AsyncIterator[str]:
    async with siegel_harness(plugins=[("demo", DemoPlugin())]) as harness:
        settings = PortalSettings(port=0, demo_pages=True)
        server = PortalServer(create_app(harness.runtime, settings=settings), settings,
                              graceful_seconds=2)
        host, port = await server.start()
        try:
            yield f"http://{host}:{port}"
        finally:
            await server.stop()


async def focused(page: Any) -> dict[str, str]:
    return dict(await page.evaluate("""() => {
        const e = document.activeElement;
        return {tag: e.tagName.toLowerCase(), id: e.id || '', cls: e.className || '',
                href: e.getAttribute('href') || '', text: (e.textContent || '').trim()};
    }"""))


async def test_every_demo_page_passes_axe_in_german_and_english(siegel_harness, chromium,
                                                               axe_source, tmp_path):
    async with live_portal(siegel_harness) as base, browser_page(chromium) as page:
        checked: dict[str, list[str]] = {}

        async def check(name: str) -> None:
            html_lang = await page.evaluate("document.documentElement.lang")
            checked[f"{name} [{html_lang}]"] = await axe_violations(page, axe_source)

        for lang in ("de", "en"):
            for path in ("/t/test/", "/t/test/contact", "/t/test/hello", "/t/test/demo/login",
                         "/t/test/session-expired?reason=idle&page=portal.contact",
                         "/t/test/session-expired?reason=absolute", "/t/test/nowhere",
                         "/t/nobody/"):
                await page.goto(f"{base}{path}{'&' if '?' in path else '?'}lang={lang}")
                await check(path)
            # the form with validation errors
            await page.goto(f"{base}/t/test/contact?lang={lang}")
            await page.fill("#field-email", "not an address")
            await page.click("button[type=submit]")
            await page.wait_for_selector("[role=alert]")
            await check("contact with errors")
            if lang == "de":
                shot = tmp_path / "contact-errors.png"
                await page.screenshot(path=str(shot), full_page=True)
                if os.environ.get("SIEGEL_SCREENSHOTS"):
                    shutil.copy(shot, Path(os.environ["SIEGEL_SCREENSHOTS"]) / shot.name)
            # the confirmation
            await page.fill("#field-name", "Erika Mustermann")
            await page.fill("#field-email", "erika@example.net")
            await page.fill("#field-message", "Guten Tag")
            await page.click("button[type=submit]")
            await page.wait_for_selector(".panel-success")
            await check("contact done")
            # the CSRF page: a form whose token went stale
            await page.goto(f"{base}/t/test/contact")
            await page.evaluate("document.querySelector('input[name=csrf_token]').value = 'x'")
            await page.click("button[type=submit]")
            await page.wait_for_selector("h1")
            assert await page.text_content("h1") in ("Das Formular konnte nicht angenommen werden",
                                                     "The form could not be accepted")
            await check("csrf refused")
        failing = {name: found for name, found in checked.items() if found}
        assert failing == {}
        assert len(checked) == 2 * 11
        # no Content-Security-Policy violation (an inline style or script) and no script error
        assert page.problems == []


async def test_keyboard_only_with_skip_link_fields_in_order_and_error_summary(
        siegel_harness, chromium):
    async with live_portal(siegel_harness) as base, browser_page(chromium) as page:
        await page.goto(f"{base}/t/test/contact")
        await page.keyboard.press("Tab")
        first = await focused(page)
        assert "skip-link" in first["cls"] and first["text"] == "Zum Inhalt springen"
        box = await page.locator(".skip-link").bounding_box()
        assert box is not None and box["y"] >= 0, "the focused skip link must be visible"

        await page.keyboard.press("Enter")
        assert (await focused(page))["id"] == "main"
        order = []
        for _ in range(4):
            await page.keyboard.press("Tab")
            order.append(await focused(page))
        assert [f["id"] or f["tag"] for f in order] == [
            "field-name", "field-email", "field-message", "button"]

        # the focus indicator is visible on fields
        await page.keyboard.press("Shift+Tab")
        await page.keyboard.press("Shift+Tab")
        assert (await focused(page))["id"] == "field-email"
        outline = await page.evaluate(
            "getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"

        await page.keyboard.type("kein-at-zeichen")
        async with page.expect_navigation():
            await page.keyboard.press("Enter")   # implicit submission from a text field

        summary = page.locator("[role=alert]")
        assert await summary.count() == 1
        active = await focused(page)
        assert "error-summary" in active["cls"], "the error summary gets the focus (autofocus)"
        links = await summary.locator("a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
        assert links == ["#field-name", "#field-email", "#field-message"]
        assert (await page.title()).startswith("Fehler:")
        email_described = await page.get_attribute("#field-email", "aria-describedby")
        assert email_described == "field-email-hint field-email-error"
        assert await page.get_attribute("#field-email", "aria-invalid") == "true"
        assert await page.input_value("#field-email") == "kein-at-zeichen"   # input kept

        await page.keyboard.press("Tab")
        assert (await focused(page))["href"] == "#field-name"
        await page.keyboard.press("Tab")
        assert (await focused(page))["href"] == "#field-email"
        await page.keyboard.press("Enter")
        assert (await focused(page))["id"] == "field-email", "the summary link moves focus"

        await page.keyboard.press("Control+A")
        await page.keyboard.type("erika@example.net")
        await page.keyboard.press("Shift+Tab")
        assert (await focused(page))["id"] == "field-name"
        await page.keyboard.type("Erika")
        await page.keyboard.press("Tab")
        await page.keyboard.press("Tab")
        assert (await focused(page))["id"] == "field-message"
        await page.keyboard.type("Bitte um Rückruf.")
        await page.keyboard.press("Tab")
        async with page.expect_navigation():
            await page.keyboard.press("Enter")   # the submit button
        assert "Vielen Dank, Erika" in await page.text_content("main")
        assert page.problems == []
