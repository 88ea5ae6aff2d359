"""The HTTP API's Starlette application: authentication, size limits, and the three operations.

Every submission goes the listener's way (:func:`siegel.submission.accept`, with the client as
the :class:`~siegel.submission.Permit`); the answer comes only after the message is stored, and a
refusal carries the listener's SMTP reply with the status code :func:`http_status` gives it. A
client sees only its own tenant's messages: any other id is 404, as an unknown one is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from siegel.admission import Refused
from siegel.embed import Gateway, UnknownMessage
from siegel.http_api.clients import NAMESPACE, ApiClient, ApiClients
from siegel.http_api.schema import FormError, http_status, openapi, read_form, status_json
from siegel.store import StoreError
from siegel.submission import Limits, accept

if TYPE_CHECKING:
    from siegel.runtime import Runtime

log = logging.getLogger(__name__)

_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           413: "Content Too Large", 415: "Unsupported Media Type",
           422: "Unprocessable Content", 503: "Service Unavailable"}


class _TooLarge(Exception):
    pass


def problem(status: int, detail: str, *, smtp_reply: str | None = None,
            headers: dict[str, str] | None = None) -> Response:
    body = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status,
            "detail": detail, "smtp_reply": smtp_reply}
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, headers=headers,
                    media_type="application/problem+json")


class HttpApi:
    """The handlers, with what they share."""

    def __init__(self, runtime: Runtime) -> None:
        from siegel import __version__

        self.runtime = runtime
        self.settings = runtime.config.http_api
        self.limits = Limits(max_message_size=self.settings.max_message_size,
                             max_header_size=self.settings.max_header_size,
                             max_recipients=self.settings.max_recipients)
        self.gateway = Gateway(runtime, limits=self.limits)
        self.clients = ApiClients(runtime.state(NAMESPACE), runtime.config)
        self.description = openapi(__version__)

    def _unavailable(self, detail: str, reply: str | None = None) -> Response:
        return problem(503, detail, smtp_reply=reply,
                       headers={"Retry-After": str(self.settings.retry_after_seconds)})

    async def _client(self, request: Request) -> ApiClient | Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        client = None
        if scheme.lower() == "bearer" and token.strip():
            client = await self.clients.authenticate(token.strip())
        if client is None:
            return problem(401, "give a client token: Authorization: Bearer TOKEN",
                           headers={"WWW-Authenticate": 'Bearer realm="siegel"'})
        return client

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.max_request_bytes
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise _TooLarge
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _TooLarge
        return bytes(body)

    async def submit(self, request: Request, client: ApiClient) -> Response:
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type not in ("application/json", "message/rfc822"):
            return problem(415, "send application/json (the form) or message/rfc822 (MIME)")
        try:
            body = await self._body(request)
        except _TooLarge:
            return problem(413, f"the request is larger than {self.settings.max_request_bytes} "
                                "bytes")
        sender: str | None
        if media_type == "application/json":
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):
                return problem(400, "the body is not valid JSON")
            try:
                raw, sender, recipients = read_form(
                    data, date=self.runtime.clock.now().timestamp())
            except FormError as exc:
                return problem(400, str(exc))
            except (ValueError, TypeError, LookupError) as exc:
                return problem(422, f"the form cannot be made into a message: {exc}")
        else:
            raw = body
            sender, recipients = self._envelope(request, raw)
        try:
            message_id = await accept(self.runtime, raw, sender, recipients, limits=self.limits,
                                      permit=client)
        except Refused as refused:
            status = http_status(refused.reply)
            if status == 503:
                return self._unavailable("not stored; send it again later", refused.reply)
            return problem(status, refused.reply.split(" ", 2)[-1], smtp_reply=refused.reply)
        log.info("client %s submitted message %s (%d bytes)", client.id, message_id, len(raw))
        try:
            await self.clients.submitted(client, message_id, self.runtime.clock.now())
        except StoreError:  # stored and queued all the same; only the list misses it
            log.exception("could not list message %s for client %s", message_id, client.id)
        location = f"/v1/messages/{message_id}"
        return JSONResponse({"id": message_id, "location": location}, status_code=202,
                            headers={"Location": location})

    @staticmethod
    def _envelope(request: Request, raw: bytes) -> tuple[str | None, list[str]]:
        """The envelope from the query (``sender``, ``recipient``), else from the headers; what
        cannot be read is left to the listener's checks to refuse."""
        from siegel.explain import header_envelope

        sender = request.query_params.get("sender")
        recipients = request.query_params.getlist("recipient")
        if sender is None or not recipients:
            try:
                header_sender, header_recipients = header_envelope(raw)
            except (ValueError, TypeError, LookupError):
                header_sender, header_recipients = None, []
            sender = header_sender if sender is None else sender
            recipients = recipients or header_recipients
        return sender, recipients

    async def status(self, request: Request, client: ApiClient) -> Response:
        message_id = request.path_params["message_id"]
        try:
            status = await self.gateway.status(message_id)
        except UnknownMessage:
            status = None
        if status is None or status.tenant != client.tenant:
            return problem(404, "no such message")
        return JSONResponse(status_json(status))

    async def recent(self, request: Request, client: ApiClient) -> Response:
        text = request.query_params.get("limit", "20")
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 100):
            return problem(400, "limit: a number from 1 to 100")
        found = []
        for message_id in await self.clients.recent(client, int(text)):
            try:
                status = await self.gateway.status(message_id)
            except UnknownMessage:  # purged since
                continue
            if status.tenant == client.tenant:
                found.append(status_json(status))
        return JSONResponse({"messages": found})

    def authenticated(self, handler: Callable[[Request, ApiClient], Awaitable[Response]]
                      ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                client = await self._client(request)
                if isinstance(client, Response):
                    return client
                return await handler(request, client)
            except StoreError:
                log.exception("store error in the HTTP API; answering 503")
                return self._unavailable("temporary problem; try again later")

        return endpoint

    async def describe(self, request: Request) -> Response:
        return JSONResponse(self.description)


def create_api_app(runtime: Runtime) -> Starlette:
    """The HTTP API as an ASGI application (``siegel serve`` serves it when ``[http_api]
    enabled``)."""
    api = HttpApi(runtime)
    messages = api.authenticated(api.recent)
    routes = [
        Route("/v1/messages", api.authenticated(api.submit), methods=["POST"]),
        Route("/v1/messages", messages, methods=["GET"]),
        Route("/v1/messages/{message_id}", api.authenticated(api.status), methods=["GET"]),
        Route("/v1/openapi.json", api.describe, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.api = api
    return app


def openapi_document() -> dict[str, Any]:
    from siegel import __version__

    return openapi(__version__)
