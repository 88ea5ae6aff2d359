"""The protection method ``postbox`` end to end over the real SMTP sink and the portal app:
first contact (held, invitation, delayed notice), registration on ``postbox.register`` with the
notice choice, release into the postbox, the notice mail without content, the sender's notices
(protected, retrieved), an account that chose no notices, and the method's place in the order."""

from __future__ import annotations

import re

import httpx
from postbox_helpers import CITIZEN, CLERK, CONFIG, OTHER, PASSWORD, mailbox_of

from siegel import Address, RecipientState
from siegel.portal import PortalSettings, create_app
from siegel.testing import make_message

SECRET = "Kundennummer 123A456789"
BODY = f"Sehr geehrte Frau Weber,\nzu Ihrer {SECRET}: der Bescheid liegt bei.\n"
FILE = ("Bescheid.pdf", "application/pdf", b"%PDF-1.7\n" + bytes(range(256)) * 16)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def mails(harness, kind: str, to: str | None = None) -> list:
    return [m for m in harness.sink.messages if m.parsed["X-Siegel-Mail"] == f"postbox.{kind}"
            and (to is None or to in str(m.parsed["To"]))]


def register_path(mail) -> str:
    text = mail.parsed.get_body(("plain",)).get_content()
    match = re.search(r"https://post\.behoerde\.example(/t/test/postbox/register/\S+)", text)
    assert match, text
    return match.group(1)


async def register(harness, client: httpx.AsyncClient, invitation, *, notices: bool) -> None:
    path = register_path(invitation)
    form = await client.get(path)
    assert form.status_code == 200
    token = _CSRF.search(form.text).group(1)
    fields = {"csrf_token": token, "password": PASSWORD, "password_repeat": "anders"}
    refused = await client.post(path, data=fields)
    assert refused.status_code == 422  # the repetition differs: nothing stored
    fields["password_repeat"] = PASSWORD
    if notices:
        fields["notices"] = "yes"
    done = await client.post(path, data=fields)
    assert done.status_code == 303, done.text
    again = await client.get(path)
    assert again.status_code == 404  # single use


async def test_first_contact_registration_release_notice_and_retrieval(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        app = create_app(harness.runtime, settings=PortalSettings())
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as client:
            first = await harness.send(make_message(sender=CLERK, to=CITIZEN, body=BODY,
                                                    attachments=[FILE]))
            second = await harness.send(make_message(sender=CLERK, to=CITIZEN, body=BODY))
            await harness.process()
            assert (await harness.states(first))[CITIZEN] is RecipientState.HELD
            assert (await harness.states(second))[CITIZEN] is RecipientState.HELD
            [invitation] = mails(harness, "invitation")
            assert SECRET.encode() not in invitation.raw
            assert len(harness.notices("delayed")) == 2
            assert await mailbox_of(harness).unread_count() == 0

            await register(harness, client, invitation, notices=True)
            await harness.process()
            assert (await harness.states(first))[CITIZEN] is RecipientState.DELIVERED
            assert (await harness.states(second))[CITIZEN] is RecipientState.DELIVERED

        notices = mails(harness, "notice", CITIZEN)
        assert len(notices) == 2
        for notice in notices:
            assert SECRET.encode() not in notice.raw and b"Bescheid.pdf" not in notice.raw
            assert str(notice.parsed["Subject"]).startswith("Neue Nachricht in Ihrem Postfach")
            assert "/t/test/postbox/messages/" in notice.parsed.get_body(("plain",)).get_content()
        assert len(harness.notices("protected")) == 2

        box = mailbox_of(harness)
        page = await box.page()
        assert page.unread == 2 and len(page.messages) == 2
        with_file = next(m for m in page.messages if m.attachments)
        assert (await box.attachment(with_file.id, 0))[1] == FILE[2]
        assert SECRET in (await box.get(with_file.id)).text
        await box.mark_read(with_file.id)
        await harness.process()
        [retrieved] = harness.notices("retrieved")
        assert retrieved["To"] == CLERK and retrieved["X-Siegel-Message-Id"] == first

        account = await harness.runtime.accounts("test").get(Address.parse(CITIZEN))
        assert account.can_log_in and account.level.label == "mailbox"


async def test_an_account_without_notices_gets_no_mail_and_registration_can_refuse(
        siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        app = create_app(harness.runtime, settings=PortalSettings())
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as client:
            held = await harness.send(make_message(sender=CLERK, to=OTHER, body=BODY))
            await harness.process()
            [invitation] = mails(harness, "invitation", OTHER)
            path = register_path(invitation)
            token = _CSRF.search((await client.get(path)).text).group(1)
            weak = await client.post(path, data={"csrf_token": token, "password": "kurz",
                                                 "password_repeat": "kurz"})
            assert weak.status_code == 422 and 'class="error-summary' in weak.text
            await register(harness, client, invitation, notices=False)
            await harness.process()
            later = await harness.send(make_message(sender=CLERK, to=OTHER, body=BODY))
            await harness.process()
        for message_id in (held, later):
            [record] = await harness.store.recipients(message_id)
            assert record.state is RecipientState.DELIVERED and record.method == "postbox"
            assert "in the postbox" in record.detail
        assert mails(harness, "notice") == []
        assert (await mailbox_of(harness, OTHER).page()).unread == 2


async def test_the_tenant_orders_postbox_before_or_after_the_password_pdf(siegel_harness):
    config = {"tenants": {"test": {
        "plugin_set": "postbox", "domains": ["behoerde.example"], "plugins": ["password_pdf"],
        "protection": ["postbox", "password_pdf"],
        "settings": {"postbox": {"serve": "account"}}}},
        "portal": {"public_base_url": "https://post.behoerde.example"}}
    async with siegel_harness(config=config) as harness:
        tenant = harness.config.tenants["test"]
        await harness.runtime.accounts("test").set_password(Address.parse(CITIZEN), PASSWORD)
        chosen = {}
        for recipient in (CITIZEN, OTHER):
            ctx = harness.context(make_message(sender=CLERK, to=recipient, body=BODY), recipient)
            plan = await harness.runtime.pipeline.decide(ctx.message, tenant,
                                                         Address.parse(recipient))
            chosen[recipient] = plan.choice.method.name
        # With an account: the postbox; without: the next method (not an invitation).
        assert chosen == {CITIZEN: "postbox", OTHER: "password_pdf"}
