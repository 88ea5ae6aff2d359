"""Fixtures for the postbox pages (helpers in ``pages_helpers``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pages_helpers import POSTBOX_CONFIG, Postbox

from siegel.portal import PortalSettings, create_app


@pytest.fixture
def postbox(siegel_harness: Callable[..., Any]) -> Callable[..., Any]:
    @asynccontextmanager
    async def factory(config: Mapping[str, Any] | None = None) -> AsyncIterator[Postbox]:
        merged = {**POSTBOX_CONFIG, **(config or {})}
        async with siegel_harness(config=merged) as harness:
            app = create_app(harness.runtime, settings=PortalSettings())
            yield Postbox(harness, app, [])

    return factory
