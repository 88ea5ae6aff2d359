"""The outermost layer of the portal: what holds for every response, whatever produced it.

* Forwarding headers (``X-Forwarded-For``, ``X-Forwarded-Proto``) count only from
  ``trusted_proxies``; they set the client address (for throttling) and whether the visit is over
  TLS.
* Request bodies larger than ``max_form_bytes`` are refused with a 413 page before they are read
  (by ``Content-Length``) or as soon as they grow too large (chunked).
* Security headers go on every response: pages, static files, redirects and error pages.
* An unexpected exception becomes a plain 500 page (with the headers), never a traceback.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from siegel.portal.settings import PortalSettings

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)

#: Set in the ASGI scope by the middleware: the visit arrived over TLS (directly or via a proxy).
SECURE_KEY = "siegel.portal.secure"

ErrorPage = Callable[[Request, int], Awaitable[Response]]


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=413)


def _first_untrusted(addresses: list[str], trusted: Callable[[str], bool]) -> str | None:
    for address in reversed(addresses):
        if not trusted(address):
            return address
    return addresses[0] if addresses else None


class PortalMiddleware:
    def __init__(self, app: ASGIApp, *, settings: PortalSettings, error_page: ErrorPage) -> None:
        self.app = app
        self.settings = settings
        self.error_page = error_page
        self._networks = settings.trusted_networks()

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def _forwarded(self, scope: Scope) -> Scope:
        client = scope.get("client")
        if not self._networks or not client or not self._trusted(client[0]):
            return scope
        headers = Headers(scope=scope)
        scope = dict(scope)
        proto = headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
        if proto in ("http", "https"):
            scope["scheme"] = proto
        chain = [a.strip() for a in headers.get("x-forwarded-for", "").split(",") if a.strip()]
        address = _first_untrusted(chain, self._trusted)
        if address is not None:
            scope["client"] = (address.strip("[]"), 0)
        return scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = self._forwarded(scope)
        secure = self.settings.behind_tls or scope.get("scheme") == "https"
        scope[SECURE_KEY] = secure
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers[name] = value
                if secure:
                    headers["strict-transport-security"] = f"max-age={self.settings.hsts_max_age}"
            await send(message)

        limit = self.settings.max_form_bytes
        try:
            length = int(Headers(scope=scope).get("content-length", "0"))
        except ValueError:
            length = 0
        if length > limit:
            await self._error(scope, receive, send_with_headers, 413)
            return
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, receive_limited, send_with_headers)
        except BodyTooLarge:
            if started:
                raise
            await self._error(scope, receive, send_with_headers, 413)
        except Exception:
            log.exception("portal request %s %s failed", scope.get("method"), scope.get("path"))
            if not started:
                await self._error(scope, receive, send_with_headers, 500)

    async def _error(self, scope: Scope, receive: Receive, send: Send, status: int) -> None:
        request = Request(scope, receive)
        try:
            response = await self.error_page(request, status)
        except Exception:
            log.exception("the portal's error page failed")
            response = Response(
                "<!DOCTYPE html><html lang=\"de\"><title>Fehler / Error</title>"
                "<h1>Es ist ein Fehler aufgetreten.</h1><p lang=\"en\">An error occurred.</p>",
                status_code=status, media_type="text/html")
        if status == 413:
            response.headers["connection"] = "close"
        await response(scope, receive, send)
