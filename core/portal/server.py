"""Serving the portal with uvicorn inside an existing event loop.

``siegel serve`` runs the SMTP listener, the delivery workers and the portal in one loop; signals
belong to the command, so uvicorn's own signal handling is switched off. The socket is bound here
(not by uvicorn), so that a port in use is an :class:`OSError` to the caller rather than uvicorn's
``sys.exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Protocol

import uvicorn
from starlette.types import ASGIApp

from siegel.portal.settings import PortalSettings


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the host program owns SIGINT and SIGTERM


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Listening(Protocol):
    """Where an HTTP server listens: the portal's settings, or the HTTP API's."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def access_log(self) -> bool: ...


class PortalServer:
    """The portal (or another ASGI app of siegel's, such as the HTTP API) on a socket:
    ``await start()`` (returns host and port), ``await stop()``. With ``tls`` (certificate and
    key files) it speaks HTTPS."""

    def __init__(self, app: ASGIApp, settings: Listening, *,
                 graceful_seconds: int = 10, tls: tuple[Path, Path] | None = None) -> None:
        self.settings = settings
        self._config = uvicorn.Config(
            app, host=settings.host, port=settings.port, lifespan="off", log_config=None,
            access_log=settings.access_log, proxy_headers=False, server_header=False,
            timeout_graceful_shutdown=graceful_seconds,
            ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None)
        self._server = _Server(self._config)
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    async def start(self) -> tuple[str, int]:
        """Bind and start serving; raises :class:`OSError` if the address cannot be used."""
        self._socket = _bind(self.settings.host, self.settings.port)
        host, port = self._socket.getsockname()[:2]
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]),
                                         name="siegel-portal")
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise RuntimeError("the portal server stopped while starting")
            await asyncio.sleep(0.01)
        return host, port

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (up to ``graceful_seconds``)."""
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        finally:
            self._task = None
            if self._socket is not None:
                self._socket.close()
                self._socket = None


async def serve_portal(app: ASGIApp, settings: PortalSettings, *,
                       started: Callable[[str, int], None] | None = None) -> None:
    """Serve the portal until cancelled; ``started(host, port)`` is called once it listens."""
    server = PortalServer(app, settings)
    host, port = await server.start()
    if started is not None:
        started(host, port)
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.shield(server.stop())
