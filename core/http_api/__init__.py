"""The HTTP submission API: applications of a tenant submit mail over HTTPS with a client token,
and ask what became of it (``[http_api]``, served by ``siegel serve``; ``docs/http-api.rst``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from siegel.http_api.app import HttpApi, create_api_app, openapi_document, problem
from siegel.http_api.clients import NAMESPACE, TOKEN_PREFIX, ApiClient, ApiClients, ClientError
from siegel.http_api.schema import SCHEMAS, SMTP_TO_HTTP, http_status, openapi

if TYPE_CHECKING:
    from siegel.portal.server import PortalServer
    from siegel.runtime import Runtime


def api_server(runtime: Runtime) -> PortalServer:
    """The HTTP API on its socket (with TLS when configured), not yet started: ``await
    server.start()`` returns where it listens, ``await server.stop()`` ends it."""
    from siegel.portal.server import PortalServer

    settings = runtime.config.http_api
    tls = None
    if settings.tls_certificate and settings.tls_key:
        tls = (runtime.config.path(settings.tls_certificate),
               runtime.config.path(settings.tls_key))
    return PortalServer(create_api_app(runtime), settings, tls=tls)


__all__ = [
    "NAMESPACE",
    "SCHEMAS",
    "SMTP_TO_HTTP",
    "TOKEN_PREFIX",
    "ApiClient",
    "ApiClients",
    "ClientError",
    "HttpApi",
    "api_server",
    "create_api_app",
    "http_status",
    "openapi",
    "openapi_document",
    "problem",
]
