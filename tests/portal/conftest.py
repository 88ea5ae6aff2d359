"""Fixtures for the portal tests: an app around a real Runtime (the siegel harness) and an httpx
client that talks to it in process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from portal_helpers import PortalTest

from siegel.portal import PortalSettings, create_app

PortalFactory = Callable[..., AbstractAsyncContextManager[PortalTest]]


@pytest.fixture
def portal(siegel_harness: Callable[..., Any]) -> PortalFactory:
    """``portal(settings=None, plugins=(), config=None, base_url=..., client_address=...)``: an
    app (demo pages on unless ``settings`` say otherwise) and a client with a cookie jar."""

    @asynccontextmanager
    async def factory(
        *,
        settings: PortalSettings | None = None,
        plugins: Iterable[tuple[str, object]] = (),
        config: Mapping[str, Any] | None = None,
        base_url: str = "http://portal.test",
        client_address: str = "192.0.2.10",
    ) -> AsyncIterator[PortalTest]:
        async with siegel_harness(config=config, plugins=plugins) as harness:
            app = create_app(harness.runtime, settings=settings or PortalSettings(demo_pages=True))
            transport = httpx.ASGITransport(app=app, client=(client_address, 40000))
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
                yield PortalTest(harness, app, client)

    return factory


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium (or ``SIEGEL_CHROMIUM``); fails with what to install when missing."""
    import browser

    return browser.chromium_path()


@pytest.fixture(scope="session")
def axe_source(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> str:
    """axe-core's script, installed with npm once into pytest's cache folder."""
    import browser

    return browser.axe_script(pytestconfig, tmp_path_factory)
