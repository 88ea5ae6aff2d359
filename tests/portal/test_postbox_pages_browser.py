"""The postbox pages the end-to-end test does not pass through, in Chromium with axe-core (German
and English): the new-message form and its errors, the level page, the empty bin, the page of an
ended session; and every page at 200 % zoom (a 640 px wide window, as 1280 px at 200 %) without
horizontal scrolling."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from browser import BROWSER_MARKS, axe_violations, browser_page

from siegel import Address
from siegel.portal import PortalServer, PortalSettings, create_app
from siegel.testing import make_message

pytestmark = BROWSER_MARKS

CLERK = "sachbearbeitung@behoerde.example"
CITIZEN = "erika.mustermann@example.net"
PASSWORD = "Grüne Äpfel 2026 €"
TOPICS = [{"name": "antrag", "label_de": "Anträge", "label_en": "Applications",
           "recipient": "antraege@behoerde.example"}]


@asynccontextmanager
async def live_postbox(siegel_harness: Callable[..., Any],
                       **tenant: Any) -> AsyncIterator[str]:
    config = {"tenants": {"test": {"plugin_set": "postbox", **tenant}}}
    async with siegel_harness(config=config) as harness:
        await harness.runtime.accounts("test").set_password(Address.parse(CITIZEN), PASSWORD)
        raw = make_message(sender=CLERK, to=CITIZEN, subject="Ihr Bescheid",
                           body="Guten Tag,\n\n" + "ein sehr langes Wort: " + "x" * 300 + "\n",
                           attachments=[("Bescheid.pdf", "application/pdf", b"%PDF-1.4\n")])
        await harness.send(raw, mail_from=CLERK, rcpt_to=[CITIZEN])
        await harness.process()
        settings = PortalSettings(port=0)
        server = PortalServer(create_app(harness.runtime, settings=settings), settings,
                              graceful_seconds=2)
        host, port = await server.start()
        try:
            yield f"http://{host}:{port}/t/test"
        finally:
            await server.stop()


async def sign_in(page: Any, base: str) -> None:
    await page.goto(f"{base}/login?next=/t/test/postbox")
    await page.fill("#field-address", CITIZEN)
    await page.fill("#field-password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/postbox")


async def no_horizontal_scrolling(page: Any) -> bool:
    return bool(await page.evaluate(
        "() => document.documentElement.scrollWidth <= window.innerWidth"))


async def test_new_message_bin_and_zoom(siegel_harness, chromium, axe_source) -> None:
    checked: dict[str, list[str]] = {}
    async with live_postbox(siegel_harness, settings={"postbox": {"topics": TOPICS}}) as base, \
            browser_page(chromium) as page:
        await sign_in(page, base)
        [message] = await page.eval_on_selector_all(
            "a[href*='/postbox/messages/']", "links => links.map(a => a.getAttribute('href'))")
        for lang in ("de", "en"):
            for path in ("/postbox/new", "/postbox/bin", "/postbox/settings", "/postbox"):
                await page.goto(f"{base}{path}?lang={lang}")
                checked[f"{path} [{lang}]"] = await axe_violations(page, axe_source)
            await page.goto(f"{base}/postbox/new?lang={lang}")
            await page.click("button[type=submit]")
            await page.wait_for_selector("[role=alert]")
            links = await page.eval_on_selector_all(".error-summary a",
                                                    "links => links.map(a => a.hash)")
            assert links == ["#field-topic", "#field-subject", "#field-text"]
            checked[f"new with errors [{lang}]"] = await axe_violations(page, axe_source)
        await page.set_viewport_size({"width": 640, "height": 400})  # 1280 px at 200 %
        for path in ("/postbox", message, "/postbox/new", "/postbox/bin",
                     "/postbox/settings", f"{message}/reply"):
            url = path if path.startswith("http") else (
                base.rsplit("/t/test", 1)[0] + path if path.startswith("/t/") else base + path)
            await page.goto(url)
            assert await no_horizontal_scrolling(page), path
        # an ended session while writing: the explanation page
        await page.set_viewport_size({"width": 1024, "height": 800})
        await page.goto(f"{base}/postbox/new?lang=en")
        await page.context.clear_cookies()
        await page.fill("#field-text", "Text")
        await page.click("button[type=submit]")
        await page.wait_for_selector("h1")
        assert "Please sign in again" in await page.inner_text("h1")
        checked["kept [en]"] = await axe_violations(page, axe_source)
        assert page.problems == []
    assert {name: found for name, found in checked.items() if found} == {}


async def test_the_level_page(siegel_harness, chromium, axe_source) -> None:
    checked: dict[str, list[str]] = {}
    async with live_postbox(siegel_harness, read_level="confirmed") as base, \
            browser_page(chromium) as page:
        await sign_in(page, base)
        [message] = await page.eval_on_selector_all(
            "a[href*='/postbox/messages/']", "links => links.map(a => a.getAttribute('href'))")
        origin = base.rsplit("/t/test", 1)[0]
        for lang in ("de", "en"):
            response = await page.goto(f"{origin}{message}?lang={lang}")
            assert response.status == 403
            assert "Guten Tag" not in await page.inner_text("main")
            checked[f"level [{lang}]"] = await axe_violations(page, axe_source)
    assert {name: found for name, found in checked.items() if found} == {}
