"""The render workers live as long as the gateway: ``siegel serve``'s Runtime.start/stop with the
district's plugin set renders a PDF in a worker process, and after the stop no worker is left."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from test_workflow import CITIZEN, CONFIG, PASSWORD, link_from, send_customer_mail

from siegel import RecipientState
from siegel.clock import FrozenClock
from siegel.config import config_from_mapping, deep_merge
from siegel.crypto import ContentCipher, create_key_file
from siegel.manager import PluginRegistry
from siegel.plugins.password_pdf.render_pool import RENDER_POOL
from siegel.plugins.password_pdf.workflow import Workflow
from siegel.runtime import Runtime
from siegel.sink import SmtpSink
from siegel.sqlite_store import SQLiteStore
from siegel.testing import default_config

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _until(what, seconds: float = 60.0) -> None:
    """Wait (generously) until ``await what()`` is true, as the worker loop runs on its own."""
    async with asyncio.timeout(seconds):
        while not await what():
            await asyncio.sleep(0.05)


class _Submitter:
    """What send_customer_mail needs of a harness: ``send``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def send(self, raw: bytes) -> str:
        return await self.runtime.submit(raw, "sachbearbeitung@behoerde.example", [CITIZEN])


async def test_serve_stops_the_render_workers(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    registry = PluginRegistry.load()
    assert registry.resources["password-pdf-renderers"].plugin == "password_pdf"
    data = deep_merge(default_config(), {
        **CONFIG, "settings": {"relay": {"host": smtp_sink.host, "port": smtp_sink.port,
                                         "tls": "none"}}})
    config = config_from_mapping(data, registry, source="<test>", base_dir=tmp_path)
    key_file = tmp_path / "store.key"
    create_key_file(key_file)
    store = SQLiteStore(tmp_path / "siegel.db", ContentCipher.from_key_file(key_file))
    runtime = Runtime(config, registry, store, clock=FrozenClock())
    await runtime.start()  # what `siegel serve` calls before it listens
    try:
        message_id = await send_customer_mail(_Submitter(runtime))

        async def invited() -> bool:
            return bool(smtp_sink.to(CITIZEN))

        await _until(invited)
        workflow = Workflow(runtime, config.tenants["test"])
        _, problems = await workflow.register(link_from(smtp_sink.to(CITIZEN)[0], "register"),
                                              PASSWORD)
        assert problems == []

        async def delivered() -> bool:
            [record] = await store.recipients(message_id)
            return record.state is RecipientState.DELIVERED

        await _until(delivered)
        pids = RENDER_POOL.worker_pids()
        assert pids and all(_alive(pid) for pid in pids)  # the PDF came from a worker process
    finally:
        await runtime.stop(grace_seconds=5)
    assert RENDER_POOL.worker_pids() == []
    assert not any(_alive(pid) for pid in pids)  # ended and reaped: no render worker left
