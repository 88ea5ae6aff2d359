"""The portal under uvicorn in the running event loop."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from siegel.portal import PortalServer, PortalSettings, create_app, serve_portal


@pytest.mark.slow
async def test_serves_over_http_and_stops(siegel_harness):
    async with siegel_harness() as h:
        settings = PortalSettings(port=0, demo_pages=True)
        server = PortalServer(create_app(h.runtime, settings=settings), settings)
        host, port = await server.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
                response = await client.get("/t/test/contact")
                assert response.status_code == 200
                assert "server" not in response.headers
                assert response.headers["x-content-type-options"] == "nosniff"
        finally:
            await server.stop()
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(f"http://{host}:{port}/")


@pytest.mark.slow
async def test_a_port_in_use_is_an_oserror(siegel_harness):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with siegel_harness() as h:
            settings = PortalSettings(port=port)
            server = PortalServer(create_app(h.runtime, settings=settings), settings)
            with pytest.raises(OSError):
                await server.start()


@pytest.mark.slow
async def test_serve_portal_runs_until_cancelled(siegel_harness):
    async with siegel_harness() as h:
        settings = PortalSettings(port=0)
        bound: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve_portal(
            create_app(h.runtime, settings=settings), settings,
            started=lambda host, port: bound.set_result((host, port))))
        host, port = await asyncio.wait_for(bound, 5)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://{host}:{port}/t/test/")).status_code == 200
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
