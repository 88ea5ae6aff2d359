"""The postbox end to end, as the citizen lives it (issue 10's "Done when", as far as the pages
go), over real SMTP in Debian's Chromium.

A clerk's customer mail to an outside citizen of a tenant whose protection is the postbox reaches
the gateway over SMTP; the invitation and the clerk's "delayed" notice arrive at the sink; the
citizen registers, adds an authenticator app (TOTP), signs in again with password and code using
the keyboard alone, reads the message (the clerk is told it was retrieved), downloads the
attachment (the same bytes), replies with a file (it reaches the clerk threaded), loses the
session while writing a second reply and finds it again after signing in, and deletes the
message. axe-core checks every page on the way, in German and English.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
from pathlib import Path

from browser import BROWSER_MARKS, axe_violations, browser_page

from siegel import parse_email
from siegel.gateway import SmtpGateway
from siegel.plugins.accounts import factors
from siegel.portal import PortalServer, create_app
from siegel.sink import free_port
from siegel.testing import make_message

pytestmark = BROWSER_MARKS

CLERK = "sachbearbeitung@behoerde.example"
CITIZEN = "jörg.müller@example.net"
PASSWORD = "Grüne Äpfel 2026 €"
ATTACHMENT = ("Bescheid_Müller.pdf", "application/pdf", b"%PDF-1.4\n" + bytes(range(256)) * 8)
REPLY_FILE = b"%PDF-1.4\n% Nachweis\n" + b"0" * 500
MESSAGE_ID = "<bescheid-4711@behoerde.example>"


async def focused(page) -> str:
    return await page.evaluate(
        "() => document.activeElement.id || (document.activeElement.tagName.toLowerCase() + '.'"
        " + document.activeElement.className + ':' + document.activeElement.textContent.trim())")


async def tab_to(page, wanted: str, *, limit: int = 25) -> None:
    """Press Tab until the focused element (see :func:`focused`) is ``wanted``."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await focused(page) == wanted:
            return
    raise AssertionError(f"{wanted} not reached with Tab; focus is on {await focused(page)}")


def invitation_link(mail) -> str:
    text = mail.parsed.get_body(("plain",)).get_content()
    match = re.search(r"http://127\.0\.0\.1:\d+/t/test/postbox/register/\S+", text)
    assert match, f"no registration link in:\n{text}"
    return match.group(0)


async def test_register_read_download_reply_delete(siegel_harness, chromium, axe_source):
    smtp_port, portal_port = free_port(), free_port()
    base = f"http://127.0.0.1:{portal_port}/t/test"
    config = {
        "tenants": {"test": {"plugin_set": "postbox"}},
        "listeners": [{"host": "127.0.0.1", "port": smtp_port}],
        "portal": {"port": portal_port, "public_base_url": f"http://127.0.0.1:{portal_port}"},
    }
    checked: dict[str, list[str]] = {}

    async with siegel_harness(config=config) as harness:
        clock = harness.clock

        async def axe(page, name: str, *, both: bool = False) -> None:
            checked[name] = await axe_violations(page, axe_source)
            if both:  # the same page in English, then back
                url = page.url
                await page.goto(url + ("&" if "?" in url else "?") + "lang=en")
                checked[f"{name} [en]"] = await axe_violations(page, axe_source)
                await page.goto(url + ("&" if "?" in url else "?") + "lang=de")

        async def totp_code(secret_text: str) -> str:
            clock.advance(seconds=31)  # a code is accepted once: every use in its own step
            return factors.totp_code(factors.secret_from_text(secret_text),
                                     factors.time_step(clock.now()))

        gateway = SmtpGateway(harness.runtime)
        await gateway.start()
        portal = PortalServer(create_app(harness.runtime, settings=harness.config.portal),
                              harness.config.portal, graceful_seconds=2)
        await portal.start()
        try:
            # 1. The clerk sends customer mail over SMTP; the invitation and the notice arrive.
            raw = make_message(sender=CLERK, to=CITIZEN, subject="Ihr Bescheid",
                               body="Sehr geehrter Herr Müller,\n\nanbei Ihr Bescheid.\n",
                               attachments=[ATTACHMENT])
            parsed = parse_email(raw)
            parsed.replace_header("Message-ID", MESSAGE_ID)
            raw = parsed.as_bytes(policy=parsed.policy.clone(linesep="\r\n"))

            def send() -> None:
                with smtplib.SMTP("127.0.0.1", smtp_port) as smtp:
                    smtp.sendmail(CLERK, [CITIZEN], raw, mail_options=["SMTPUTF8"])

            await asyncio.to_thread(send)
            await harness.process()
            [invitation] = harness.sink.to(CITIZEN)
            assert b"Sehr geehrter Herr" not in invitation.raw  # no content in the invitation
            [delayed] = harness.notices("delayed")
            assert delayed["To"] == CLERK

            async with browser_page(chromium) as page:
                # 2. Register (the notice mails opted in); signed in, the inbox shows.
                await page.goto(invitation_link(invitation))
                await axe(page, "register", both=True)
                await page.fill("#field-password", PASSWORD)
                await page.fill("#field-password_repeat", PASSWORD)
                await page.check("#field-notices")
                await page.click("button[type=submit]")
                await page.wait_for_url("**/postbox")
                await harness.process()  # the held copy goes into the postbox
                await page.reload()
                assert "Ihr Bescheid" in await page.inner_text("main")
                assert "Ungelesen" in await page.inner_text("main")
                await axe(page, "inbox", both=True)

                # 3. Add an authenticator app on the account page.
                await page.goto(f"{base}/account")
                await axe(page, "account", both=True)
                await page.get_by_role("button", name="Authenticator-App einrichten").click()
                await page.wait_for_url("**/account/totp**")
                await axe(page, "totp set-up")
                secret = (await page.inner_text("code.secret")).strip()
                await page.fill("#field-code", await totp_code(secret))
                await page.get_by_role("button", name="Einrichtung abschließen").click()
                await page.wait_for_load_state()
                await axe(page, "totp done")

                # 4. Sign out, and in again with the keyboard alone: password, then the code.
                await page.goto(f"{base}/account")
                await page.get_by_role("button", name="Abmelden").click()
                await page.wait_for_url("**/login**")
                await page.goto(f"{base}/postbox")
                await page.wait_for_url("**/login?next=**")
                await axe(page, "login", both=True)
                await tab_to(page, "field-address")
                await page.keyboard.type(CITIZEN)
                await page.keyboard.press("Tab")
                await page.keyboard.type(PASSWORD)
                await page.keyboard.press("Enter")
                await page.wait_for_url("**/second-factor**")
                await axe(page, "second factor", both=True)
                await tab_to(page, "field-code")
                await page.keyboard.type(await totp_code(secret))
                await page.keyboard.press("Enter")
                await page.wait_for_url("**/postbox")

                # 5. Open the message with the keyboard; the clerk learns it was retrieved.
                await tab_to(page, "a.:Ihr Bescheid")
                await page.keyboard.press("Enter")
                await page.wait_for_url("**/postbox/messages/*")
                main = await page.inner_text("main")
                assert "anbei Ihr Bescheid" in main and "Bescheid_Müller.pdf" in main
                await axe(page, "message", both=True)
                await harness.process()
                retrieved = harness.notices("retrieved")
                assert retrieved and retrieved[0]["To"] == CLERK
                assert harness.notices("protected") or harness.notices("delivered")

                # 6. Download the attachment: the same bytes.
                async with page.expect_download() as started:
                    await page.get_by_role("link", name="Bescheid_Müller.pdf").click()
                download = await started.value
                assert download.suggested_filename == "Bescheid_Müller.pdf"
                assert Path(await download.path()).read_bytes() == ATTACHMENT[2]

                # 7. Reply with a file: errors first, then it reaches the clerk, threaded.
                await page.get_by_role("link", name="Antworten").click()
                await page.wait_for_url("**/reply")
                await axe(page, "reply", both=True)
                await page.get_by_role("button", name="Antwort senden").click()
                await page.wait_for_selector("[role=alert]")
                assert "error-summary" in await focused(page)
                await axe(page, "reply with errors")
                await page.fill("#field-text", "Vielen Dank, anbei der Nachweis.")
                await page.set_input_files("#field-attachments", files=[{
                    "name": "Nachweis.pdf", "mimeType": "application/pdf",
                    "buffer": REPLY_FILE}])
                await page.get_by_role("button", name="Antwort senden").click()
                await page.wait_for_url("**/postbox?done=sent")
                await axe(page, "inbox after sending")
                await harness.process()
                [answer] = [m for m in harness.sink.to(CLERK)
                            if not m.parsed.get("X-Siegel-Notice")]
                assert answer.parsed["In-Reply-To"] == MESSAGE_ID
                assert MESSAGE_ID in answer.parsed["References"]
                assert answer.parsed["Subject"] == "Re: Ihr Bescheid"
                [file] = list(answer.parsed.iter_attachments())
                assert file.get_content() == REPLY_FILE

                # 8. The session ends while a second reply is written: kept, restored.
                [message_path] = re.findall(r'href="(/t/test/postbox/messages/[0-9a-z]{26})"',
                                            await page.content())
                await page.goto(f"http://127.0.0.1:{portal_port}{message_path}/reply")
                await page.fill("#field-text", "Noch eine Frage zu meinem Bescheid.")
                clock.advance(minutes=16)
                await page.get_by_role("button", name="Antwort senden").click()
                await page.wait_for_load_state()
                assert "sicher gespeichert" in await page.inner_text("main")
                await axe(page, "kept after the session ended", both=False)
                await page.get_by_role("link", name="Erneut anmelden").click()
                await page.wait_for_url("**/login**")
                await page.fill("#field-address", CITIZEN)
                await page.fill("#field-password", PASSWORD)
                await page.get_by_role("button", name="Anmelden").click()
                await page.wait_for_url("**/second-factor**")
                await page.fill("#field-code", await totp_code(secret))
                await page.keyboard.press("Enter")
                await page.wait_for_url("**/reply?draft=**")
                assert await page.input_value("#field-text") == (
                    "Noch eine Frage zu meinem Bescheid.")
                await axe(page, "reply restored")

                # 9. Delete: to the bin, then the bin and the settings pages.
                await page.goto(f"http://127.0.0.1:{portal_port}{message_path}")
                await page.get_by_role("button", name="In den Papierkorb legen").click()
                await page.wait_for_url("**/postbox?done=deleted")
                assert "keine Nachrichten" in await page.inner_text("main")
                await axe(page, "empty inbox", both=True)
                await page.goto(f"{base}/postbox/bin")
                assert "Ihr Bescheid" in await page.inner_text("main")
                await axe(page, "bin", both=True)
                await page.goto(f"{base}/postbox/settings")
                assert await page.is_checked("#field-notices")
                await axe(page, "settings", both=True)
                assert page.problems == []  # no CSP violations, no script errors
        finally:
            await portal.stop()
            await gateway.stop()

    assert {name: found for name, found in checked.items() if found} == {}
    assert len(checked) >= 25
