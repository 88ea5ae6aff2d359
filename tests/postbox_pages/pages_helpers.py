"""Helpers for the postbox pages' tests: a tenant whose protection is the postbox, accounts made
through the shared accounts service, messages delivered through the real pipeline, and a signed-in
httpx client per account."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx

from siegel import Address, IdentityLevel, parse_email
from siegel.testing import Harness, make_message

CLERK = "sachbearbeitung@behoerde.example"
ERIKA = "erika.mustermann@example.net"
MAX = "max.muster@example.net"
PASSWORD = "Grüne Äpfel 2026 €"
#: A tenant whose outside recipients are served by the postbox (with its sign-in).
POSTBOX_CONFIG: dict[str, Any] = {
    "tenants": {"test": {"plugin_set": "postbox"}},
}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_DRAFT = re.compile(r'name="draft_token" value="([^"]+)"')
_MESSAGE_LINK = re.compile(r'href="(/t/test/postbox/messages/[0-9a-z]{26})"')


def csrf(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no form with a CSRF token on the page"
    return match.group(1)


def draft_token(html: str) -> str:
    match = _DRAFT.search(html)
    assert match, "no draft token on the page"
    return match.group(1)


def message_links(html: str) -> list[str]:
    return _MESSAGE_LINK.findall(html)


@attrs.define
class Visitor:
    """One browser: an httpx client with its own cookies."""

    client: httpx.AsyncClient
    address: str

    async def sign_in(self, password: str = PASSWORD) -> None:
        page = await self.client.get("/t/test/login")
        response = await self.client.post("/t/test/login", data={
            "address": self.address, "password": password, "csrf_token": csrf(page.text)})
        assert response.status_code == 303, response.text

    async def post(self, path: str, data: Mapping[str, str] | None = None, *,
                   form_page: str | None = None, files: Any = None) -> httpx.Response:
        """POST ``data`` with the CSRF token of ``form_page`` (default: ``path``)."""
        page = await self.client.get(form_page or path)
        fields = {"csrf_token": csrf(page.text), **(data or {})}
        return await self.client.post(path, data=fields, files=files)


@attrs.define
class Postbox:
    harness: Harness
    app: Any
    visitors: list[Visitor]

    async def account(self, address: str, *, level: IdentityLevel = IdentityLevel.MAILBOX,
                      password: str = PASSWORD) -> None:
        accounts = self.harness.runtime.accounts("test")
        await accounts.set_password(Address.parse(address), password)
        if level > IdentityLevel.MAILBOX:
            await accounts.raise_level(Address.parse(address), level)

    async def deliver(self, to: str = ERIKA, *, subject: str = "Ihr Bescheid",
                      body: str = "Guten Tag,\n\nanbei Ihr Bescheid.\n",
                      html: str | None = None,
                      attachments: Iterable[tuple[str, str, bytes]] = (),
                      headers: Mapping[str, str] | None = None) -> str:
        headers = dict(headers or {})
        message_id_header = headers.pop("Message-ID", None)
        raw = make_message(sender=CLERK, to=to, subject=subject, body=body,
                           attachments=attachments, headers=headers)
        if html is not None or message_id_header is not None:
            parsed = parse_email(raw)
            if message_id_header is not None:
                parsed.replace_header("Message-ID", message_id_header)
            if html is not None:
                body_part = parsed.get_body(("plain",))
                assert body_part is not None
                body_part.add_alternative(html, subtype="html")
            raw = parsed.as_bytes(policy=parsed.policy.clone(linesep="\r\n"))
        message_id = await self.harness.send(raw, mail_from=CLERK, rcpt_to=[to])
        await self.harness.process()
        return message_id

    @asynccontextmanager
    async def visitor(self, address: str = ERIKA) -> AsyncIterator[Visitor]:
        transport = httpx.ASGITransport(app=self.app, client=("192.0.2.10", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as c:
            yield Visitor(c, address)
