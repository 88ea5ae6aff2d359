"""The district's workflow end to end, as the recipient lives it (issue 3's acceptance test).

A clerk's customer mail reaches the gateway over real SMTP; the recipient gets an invitation and
the clerk the "delayed" notice at a real SMTP sink; the recipient chooses a password in a real
browser (Debian's Chromium via Playwright); the carrier mail arrives; qpdf and poppler open the
PDF with that password (and refuse a wrong one); the recipient replies through the form and the
clerk receives it; a password reset works with mailbox proof; the recipient logs in with the
keyboard alone, is refused with a wrong password, changes the password and logs out, and the next
PDF opens only with the new password. axe-core checks every page, in German and English.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import subprocess
from pathlib import Path

import pytest
from browser import BROWSER_MARKS, axe_violations, browser_page

from siegel import RecipientState
from siegel.gateway import SmtpGateway
from siegel.portal import PortalServer, create_app
from siegel.sink import free_port
from siegel.testing import make_message

pytestmark = BROWSER_MARKS

CLERK = "sachbearbeitung@behoerde.example"
CITIZEN = "jörg.müller@example.net"
PASSWORD = "Grüne Äpfel 2026 €"
RESET_PASSWORD = "Blaue Birnen 2027 !"
CHANGED_PASSWORD = "Gelbe Quitten 2028 ?"
BODY = ("Sehr geehrter Herr Müller,\n\nzu Ihrer Kundennummer 123A456789 teilen wir Ihnen mit: "
        "Die Unterlagen über 12,50 € sind vollständig.\n\nMit freundlichen Grüßen\n")
ATTACHMENT = ("Bescheid_Müller.pdf", "application/pdf", b"%PDF-1.4\n" + bytes(range(256)) * 8)
REPLY_FILE = b"%PDF-1.4\n% Nachweis\n" + b"0" * 500


def link(mail, kind: str) -> str:
    text = mail.parsed.get_body(("plain",)).get_content()
    match = re.search(rf"http://127\.0\.0\.1:\d+/t/test/{kind}\S*", text)
    assert match, f"no {kind} link in:\n{text}"
    return match.group(0)


def run(*args, check=True):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=check)


async def focused(page) -> str:
    """The focused element, as its id, or its tag and class."""
    return await page.evaluate(
        "() => document.activeElement.id || "
        "(document.activeElement.tagName.toLowerCase() + '.' + document.activeElement.className)")


async def tab_to(page, wanted: str, *, limit: int = 12) -> None:
    """Press Tab until ``wanted`` (see :func:`focused`) has the focus."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await focused(page) == wanted:
            return
    raise AssertionError(f"{wanted} not reached with Tab; focus is on {await focused(page)}")


async def test_register_read_reply_reset(siegel_harness, chromium, axe_source, tmp_path: Path):
    smtp_port, portal_port = free_port(), free_port()
    config = {
        "tenants": {"test": {"plugin_set": "district"}},
        "listeners": [{"host": "127.0.0.1", "port": smtp_port}],
        "portal": {"port": portal_port, "public_base_url": f"http://127.0.0.1:{portal_port}"},
    }
    checked: dict[str, list[str]] = {}

    async def axe(page, name: str) -> None:
        checked[name] = await axe_violations(page, axe_source)

    async with siegel_harness(config=config) as harness:
        gateway = SmtpGateway(harness.runtime)
        await gateway.start()
        portal = PortalServer(create_app(harness.runtime, settings=harness.config.portal),
                              harness.config.portal, graceful_seconds=2)
        await portal.start()
        try:
            # 1. The clerk sends customer mail through the gateway, over SMTP.
            raw = make_message(sender=CLERK, to=CITIZEN, subject="Ihr Bescheid", body=BODY,
                               attachments=[ATTACHMENT])
            def send() -> None:  # a real SMTP client, outside the gateway's event loop
                with smtplib.SMTP("127.0.0.1", smtp_port) as smtp:
                    smtp.sendmail(CLERK, [CITIZEN], raw, mail_options=["SMTPUTF8"])

            await asyncio.to_thread(send)
            await harness.process()
            [invitation] = harness.sink.to(CITIZEN)
            [delayed] = harness.notices("delayed")
            assert delayed["To"] == CLERK and "Zustellung verzögert" in delayed["Subject"]
            register_link = link(invitation, "register")

            async with browser_page(chromium) as page:
                # 2. The recipient chooses a password; a common one is refused first.
                await page.goto(register_link)
                await axe(page, "register")
                await page.fill("#field-password", "passwort123")
                await page.fill("#field-password_repeat", "passwort123")
                await page.click("button[type=submit]")
                await page.wait_for_selector("[role=alert]")
                assert "verbreitet" in await page.inner_text("[role=alert]")
                await axe(page, "register with errors")
                await page.fill("#field-password", PASSWORD)
                await page.fill("#field-password_repeat", PASSWORD)
                await page.click("button[type=submit]")
                await page.wait_for_url("**/password/done")
                assert "Passwort gespeichert" in await page.inner_text("h1")
                await axe(page, "done")
                await page.goto(register_link)  # single use
                assert "gilt nicht mehr" in await page.inner_text("h1")
                await axe(page, "link invalid")

                # 3. The held message goes out as a PDF.
                await harness.process()
                [carrier] = [m for m in harness.sink.to(CITIZEN)
                             if m.parsed.get("X-Siegel-Protection")]
                [protected] = harness.notices("protected")
                assert "Verschlüsselung erfolgreich" in protected["Subject"]
                [part] = [p for p in carrier.parsed.iter_attachments()
                          if p.get_filename() == "nachricht.pdf"]
                pdf = tmp_path / "nachricht.pdf"
                pdf.write_bytes(part.get_content())
                shown = run("qpdf", f"--password={PASSWORD}", "--show-encryption", pdf).stdout
                assert "R = 6" in shown and "AESv3" in shown
                wrong = run("qpdf", "--password=falsch", "--decrypt", pdf, tmp_path / "x.pdf",
                            check=False)
                assert wrong.returncode != 0 and "invalid password" in wrong.stderr
                text = run("pdftotext", "-upw", PASSWORD, pdf, "-").stdout
                assert "Kundennummer 123A456789" in text and "12,50 €" in text
                assert "Grüßen" in text
                out = tmp_path / "detached"
                out.mkdir()
                run("pdfdetach", "-upw", PASSWORD, "-saveall", "-o", out, pdf)
                assert (out / "Bescheid_Müller.pdf").read_bytes() == ATTACHMENT[2]

                # 4. The recipient replies through the form, with a file.
                await page.goto(link(carrier, "reply"))
                await axe(page, "reply")
                assert "123A456789" not in await page.content()  # the form shows nothing
                await page.click("button[type=submit]")
                await page.wait_for_selector("[role=alert]")
                await axe(page, "reply with errors")
                await page.fill("#field-text", "Vielen Dank, anbei der Nachweis.")
                await page.set_input_files("#field-attachments", files=[{
                    "name": "Nachweis.pdf", "mimeType": "application/pdf",
                    "buffer": REPLY_FILE}])
                await page.click("button[type=submit]")
                await page.wait_for_url("**/reply-sent")
                await axe(page, "reply sent")
                await harness.process()
                [answer] = [m for m in harness.sink.to(CLERK)
                            if m.parsed.get("X-Siegel-Reply-To-Message")]
                assert answer.parsed["Reply-To"] == CITIZEN
                assert "Vielen Dank, anbei der Nachweis." in answer.parsed.get_body(
                    ("plain",)).get_content()
                [file] = list(answer.parsed.iter_attachments())
                assert file.get_content() == REPLY_FILE

                # 5. Forgot the password: the same answer for any address, the link by mail.
                for language in ("en", "de"):
                    await page.goto(f"http://127.0.0.1:{portal_port}/t/test/password"
                                    f"?lang={language}")
                    await axe(page, f"password request [{language}]")
                await page.fill("#field-address", CITIZEN)
                await page.click("button[type=submit]")
                await page.wait_for_url("**/password/sent")
                await axe(page, "password sent")
                await harness.process()
                [reset_mail] = [m for m in harness.sink.to(CITIZEN)
                                if m.parsed.get("X-Siegel-Mail") == "password_pdf.reset"]
                await page.goto(link(reset_mail, "reset"))
                await axe(page, "reset")
                await page.fill("#field-password", RESET_PASSWORD)
                await page.fill("#field-password_repeat", RESET_PASSWORD)
                await page.click("button[type=submit]")
                await page.wait_for_url("**/password/done")

                # 6. Log in, keyboard only: a wrong password is refused with an announced error.
                base = f"http://127.0.0.1:{portal_port}/t/test"
                for language in ("en", "de"):
                    await page.goto(f"{base}/login?lang={language}")
                    await axe(page, f"login [{language}]")
                await page.goto(f"{base}/password")
                await page.get_by_role("link", name="Anmelden und Passwort ändern").press("Enter")
                await page.wait_for_url("**/login")
                await page.keyboard.press("Tab")
                assert "skip-link" in await focused(page)
                await page.keyboard.press("Enter")
                await tab_to(page, "field-address")
                await page.keyboard.type(CITIZEN)
                await page.keyboard.press("Tab")
                assert await focused(page) == "field-password"
                await page.keyboard.type(PASSWORD)  # the first one: no longer valid
                async with page.expect_navigation():
                    await page.keyboard.press("Enter")
                alert = page.locator("[role=alert]")
                assert "Passwort ist nicht richtig" in await alert.inner_text()
                assert "error-summary" in await focused(page)  # announced and focused
                assert await page.get_attribute("#field-password", "aria-invalid") == "true"
                assert await page.input_value("#field-address") == CITIZEN
                assert (await page.title()).startswith("Fehler:")
                await axe(page, "login with errors")
                await page.keyboard.press("Tab")
                await page.keyboard.press("Enter")  # the summary's link leads to the field
                assert await focused(page) == "field-password"
                await page.keyboard.type(RESET_PASSWORD)
                async with page.expect_navigation():
                    await page.keyboard.press("Enter")
                assert await page.inner_text("h1") == "Ihr Konto"
                assert CITIZEN in await page.inner_text("main")
                await axe(page, "account")

                # 7. Change the password on the account page, keyboard only.
                await tab_to(page, "field-current_password")
                await page.keyboard.type("Falsches Passwort 1")
                await page.keyboard.press("Tab")
                assert await focused(page) == "field-password"
                await page.keyboard.type(CHANGED_PASSWORD)
                await page.keyboard.press("Tab")
                assert await focused(page) == "field-password_repeat"
                await page.keyboard.type(CHANGED_PASSWORD)
                await page.keyboard.press("Tab")
                assert await focused(page) == "button.button"
                async with page.expect_navigation():
                    await page.keyboard.press("Enter")
                assert "bisherige Passwort ist nicht richtig" in await alert.inner_text()
                assert "error-summary" in await focused(page)
                await axe(page, "account with errors")
                await page.keyboard.press("Tab")
                await page.keyboard.press("Enter")
                assert await focused(page) == "field-current_password"
                await page.keyboard.type(RESET_PASSWORD)
                for field in ("field-password", "field-password_repeat"):
                    await page.keyboard.press("Tab")
                    assert await focused(page) == field
                    await page.keyboard.type(CHANGED_PASSWORD)
                async with page.expect_navigation():
                    await page.keyboard.press("Enter")
                assert "Ihr neues Passwort ist gespeichert" in await page.inner_text("main")
                await axe(page, "password changed")
                await page.goto(f"{base}/account?lang=en")
                await axe(page, "account [en]")
                await page.goto(f"{base}/account?lang=de")

                # 8. Log out with the keyboard.
                logout = page.get_by_role("button", name="Abmelden")
                await logout.focus()
                async with page.expect_navigation():
                    await page.keyboard.press("Enter")
                await page.wait_for_url("**/login")
                assert "Sie haben sich abgemeldet" in await page.inner_text("[role=status]")
                await axe(page, "logged out")
                await page.goto(f"{base}/account")
                await page.wait_for_url("**/login?next=**")
                assert page.problems == [], page.problems  # type: ignore[attr-defined]

            # 9. The next message opens with the changed password only.
            await asyncio.to_thread(send)
            await harness.process()
            latest = [m for m in harness.sink.to(CITIZEN) if m.parsed.get("X-Siegel-Protection")][-1]
            [part] = [p for p in latest.parsed.iter_attachments()
                      if p.get_filename() == "nachricht.pdf"]
            pdf = tmp_path / "nach-der-aenderung.pdf"
            pdf.write_bytes(part.get_content())
            assert run("qpdf", f"--password={CHANGED_PASSWORD}", "--check", pdf).returncode == 0
            for old in (PASSWORD, RESET_PASSWORD):
                refused = run("qpdf", f"--password={old}", "--decrypt", pdf, tmp_path / "x.pdf",
                              check=False)
                assert refused.returncode != 0 and "invalid password" in refused.stderr
            kinds = [m.parsed.get("X-Siegel-Mail") for m in harness.sink.to(CITIZEN)]
            # the reset (by the password PDF's link) and the change (on the account page)
            assert kinds.count("password_pdf.password_changed") == 1
            assert kinds.count("accounts.password_changed") == 1
            records = await harness.store.list(states=[RecipientState.HELD])
            assert records == []
        finally:
            await portal.stop()
            await gateway.stop()
    assert all(not v for v in checked.values()), {k: v for k, v in checked.items() if v}
    assert len(checked) >= 18


@pytest.mark.parametrize("path", ["/t/test/register/not-a-token", "/t/test/reply/not-a-token",
                                  "/t/test/reset/not-a-token"])
async def test_forged_links_show_nothing(siegel_harness, path):
    import httpx

    config = {"tenants": {"test": {"plugin_set": "district"}}}
    async with siegel_harness(config=config) as harness:
        app = create_app(harness.runtime, settings=harness.config.portal)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://portal.test") as client:
            response = await client.get(path)
    assert response.status_code == 404
    assert "gilt nicht mehr" in response.text
