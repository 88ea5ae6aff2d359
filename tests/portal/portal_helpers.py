"""Helpers for the portal tests."""

from __future__ import annotations

import re

import attrs
import httpx
from starlette.applications import Starlette

from siegel.portal import SECURITY_HEADERS
from siegel.testing import Harness

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
COOKIE = "siegel_session"


def csrf_token(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def assert_security_headers(response: httpx.Response, *, tls: bool = False) -> None:
    for name, value in SECURITY_HEADERS:
        assert response.headers.get(name) == value, (name, response.request.url)
    assert ("strict-transport-security" in response.headers) is tls


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


@attrs.define
class PortalTest:
    harness: Harness
    app: Starlette
    client: httpx.AsyncClient

    @property
    def session_cookie(self) -> str | None:
        return self.client.cookies.get(COOKIE)

    def set_session_cookie(self, value: str) -> None:
        """What a browser would send: replaces the cookie the portal set."""
        self.client.cookies.set(COOKIE, value, domain=self.client.base_url.host, path="/")

    async def state(self) -> dict[str, list[tuple[str, int]]]:
        """Every plugin-state record (namespace -> [(key, version)]), expired ones included."""
        store = self.harness.store
        rows = await store._run(lambda db: db.execute(
            "SELECT namespace, key, version FROM plugin_state ORDER BY namespace, key").fetchall())
        found: dict[str, list[tuple[str, int]]] = {}
        for namespace, key, version in rows:
            found.setdefault(namespace, []).append((key, version))
        return found

    async def contact_form(self, path: str = "/t/test/contact") -> str:
        """GET the demo form; returns its CSRF token."""
        response = await self.client.get(path)
        assert response.status_code == 200
        return csrf_token(response.text)

    async def post_contact(self, token: str | None, **fields: str) -> httpx.Response:
        data = {"name": "Erika Mustermann", "email": "erika@example.net",
                "message": "Guten Tag", **fields}
        if token is not None:
            data["csrf_token"] = token
        return await self.client.post("/t/test/contact", data=data)
