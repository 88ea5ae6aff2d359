"""PIN letters on the portal over HTTP (real app, store and login, in process): request a
letter, print it (the PDF read back with pdftotext), enter the PIN, the level rises; wrong PINs,
another account's PIN, expiry with the harness clock, and that every page needs a sign-in."""

from __future__ import annotations

import httpx
from pin_letter_helpers import print_letters
from portal_helpers import csrf_token

from siegel import Address, AuditEvent, IdentityLevel, hookimpl
from siegel.plugins.pin_letters.letters import LetterBook, LetterStatus

ANNA = "anna@example.net"
BERND = "bernd@example.net"
PASSWORD = "Grüne Äpfel im Garten"
CONFIG = {"tenants": {"test": {"plugin_set": "district", "plugins": ["pin_letters"]}}}
ADDRESS = {"name": "Anna Müller", "supplement": "", "street": "Hauptstraße 5a",
           "postcode": "37073", "city": "Göttingen"}


class Recorder:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    @hookimpl
    def siegel_audit_event(self, event: AuditEvent) -> None:
        self.events.append(event)


async def sign_in(p, address: str) -> None:
    page = await p.client.get("/t/test/login")
    response = await p.client.post("/t/test/login", data={
        "address": address, "password": PASSWORD, "csrf_token": csrf_token(page.text)})
    assert response.status_code == 303, response.text


async def post(p, path: str, **fields: str) -> httpx.Response:
    page = await p.client.get(path)
    return await p.client.post(path, data={**fields, "csrf_token": csrf_token(page.text)})


async def level(p, address: str) -> IdentityLevel:
    account = await p.harness.runtime.accounts("test").get(Address.parse(address))
    return account.level


async def test_request_print_confirm_raises_the_level(portal, tmp_path):
    recorder = Recorder()
    async with portal(config=CONFIG, plugins=[("recorder", recorder)]) as p:
        accounts = p.harness.runtime.accounts("test")
        for address in (ANNA, BERND):
            await accounts.set_password(Address.parse(address), PASSWORD)
        # Not signed in: to the login, and back here afterwards.
        for path in ("/t/test/pin-letter", "/t/test/pin-letter/confirm"):
            response = await p.client.get(path)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/t/test/login?next=")
        await sign_in(p, BERND)
        assert (await post(p, "/t/test/pin-letter", **{**ADDRESS, "name": "Bernd Bauer"})).status_code == 303
        p.client.cookies.clear()

        await sign_in(p, ANNA)
        page = await p.client.get("/t/test/pin-letter")
        assert page.status_code == 200 and "Ihre Postanschrift" in page.text
        wrong = await post(p, "/t/test/pin-letter", **{**ADDRESS, "postcode": "3707"})
        assert wrong.status_code == 422
        assert 'href="#field-postcode"' in wrong.text and "fünf Ziffern" in wrong.text
        assert (await post(p, "/t/test/pin-letter", **ADDRESS)).status_code == 303
        page = await p.client.get("/t/test/pin-letter")
        assert "ist eingegangen" in page.text and "37073 Göttingen" in page.text

        pins = await print_letters(p.harness, tmp_path)
        assert set(pins) == {ANNA, BERND}
        page = await p.client.get("/t/test/pin-letter/confirm")
        assert "gedruckt" in page.text and 'autocomplete="one-time-code"' in page.text

        typo = await post(p, "/t/test/pin-letter/confirm", pin="ABC")
        assert typo.status_code == 422 and "12 Zeichen" in typo.text
        refused = await post(p, "/t/test/pin-letter/confirm", pin=pins[BERND])
        assert refused.status_code == 422 and "nicht annehmen" in refused.text
        letter = await LetterBook(p.harness.runtime, "test").get(Address.parse(ANNA))
        assert letter.attempts == 1  # the typo counted nothing, Bernd's PIN one attempt
        assert await level(p, ANNA) is IdentityLevel.MAILBOX

        done = await post(p, "/t/test/pin-letter/confirm", pin=pins[ANNA].lower())
        assert done.status_code == 303
        page = await p.client.get("/t/test/pin-letter/confirm")
        assert "ist bestätigt" in page.text
        assert await level(p, ANNA) is IdentityLevel.CONFIRMED
        assert await level(p, BERND) is IdentityLevel.MAILBOX
        raised = [e for e in recorder.events if e.kind == "identity_level_raised"]
        assert [(e.tenant, e.recipient) for e in raised] == [("test", ANNA)]
        english = await p.client.get("/t/test/pin-letter/confirm?lang=en")
        assert "is confirmed" in english.text


async def test_wrong_pins_void_the_letter_and_an_old_pin_expires(portal, tmp_path):
    async with portal(config=CONFIG) as p:
        accounts = p.harness.runtime.accounts("test")
        await accounts.set_password(Address.parse(ANNA), PASSWORD)
        await sign_in(p, ANNA)
        assert (await post(p, "/t/test/pin-letter", **ADDRESS)).status_code == 303
        pin = (await print_letters(p.harness, tmp_path))[ANNA]
        wrong = "ACDE-FHJK-LMNP" if pin != "ACDE-FHJK-LMNP" else "PNML-KJHF-EDCA"
        for _ in range(5):
            response = await post(p, "/t/test/pin-letter/confirm", pin=wrong)
            assert response.status_code == 422
        book = LetterBook(p.harness.runtime, "test")
        assert (await book.get(Address.parse(ANNA))).status is LetterStatus.VOID
        page = await p.client.get("/t/test/pin-letter/confirm")
        assert "zu oft falsch" in page.text and "csrf_token" not in page.text
        assert (await post(p, "/t/test/pin-letter", **ADDRESS)).status_code == 303

        pin = (await print_letters(p.harness, tmp_path))[ANNA]
        p.harness.clock.advance(days=30, minutes=1)
        p.client.cookies.clear()  # the session has long ended
        await sign_in(p, ANNA)
        page = await p.client.get("/t/test/pin-letter")
        assert "abgelaufen" in page.text
        refused = await p.client.post("/t/test/pin-letter/confirm", data={
            "pin": pin, "csrf_token": csrf_token(page.text)})
        assert refused.status_code == 422
        assert await level(p, ANNA) is IdentityLevel.MAILBOX


async def test_posts_need_the_form_token(portal):
    async with portal(config=CONFIG) as p:
        await p.harness.runtime.accounts("test").set_password(Address.parse(ANNA), PASSWORD)
        await sign_in(p, ANNA)
        await p.client.get("/t/test/pin-letter")
        response = await p.client.post("/t/test/pin-letter", data=ADDRESS)
        assert response.status_code == 403
        assert await LetterBook(p.harness.runtime, "test").get(Address.parse(ANNA)) is None
