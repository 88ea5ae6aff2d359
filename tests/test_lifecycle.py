"""Plugins have a start and a stop: resources start in order when the gateway starts and stop in
the reverse order when it stops (``siegel serve`` goes through Runtime.start/stop, the harness
through start_resources/stop_resources)."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import attrs
import pytest

from siegel import Resource, hookimpl
from siegel.clock import FrozenClock
from siegel.config import config_from_mapping
from siegel.crypto import ContentCipher, create_key_file
from siegel.manager import PluginRegistry
from siegel.runtime import Runtime
from siegel.sqlite_store import SQLiteStore
from siegel.testing import default_config

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "worker_pool_plugin.py"


class Recording:
    """Two resources that write down when they start and stop; ``fail`` makes one start fail."""

    def __init__(self, fail: str | None = None) -> None:
        self.events: list[str] = []
        self.fail = fail

    def resource(self, name: str) -> Resource:
        async def start(services):
            assert services.clock is not None
            if name == self.fail:
                raise RuntimeError(f"{name} cannot start")
            self.events.append(f"start {name}")

        async def stop():
            self.events.append(f"stop {name}")

        return Resource(name=name, start=start, stop=stop)

    @hookimpl
    def siegel_register_resources(self):
        return [self.resource("b-second"), self.resource("a-first")]


async def test_resources_start_in_order_and_stop_in_reverse(siegel_harness):
    plugin = Recording()
    async with siegel_harness(plugins=[("recording", plugin)]) as harness:
        assert plugin.events == ["start a-first", "start b-second"]
        assert harness.registry.resources["a-first"].plugin == "recording"
    assert plugin.events == ["start a-first", "start b-second", "stop b-second", "stop a-first"]


async def test_a_failed_start_stops_what_started_before_it(siegel_harness):
    plugin = Recording(fail="b-second")
    with pytest.raises(RuntimeError, match="b-second cannot start"):
        async with siegel_harness(plugins=[("recording", plugin)]):
            pass
    assert plugin.events == ["start a-first", "stop a-first"]


def _runtime(tmp_path, plugins):
    registry = PluginRegistry.load(extra=plugins)
    config = config_from_mapping(default_config(), registry, source="<test>", base_dir=tmp_path)
    key_file = tmp_path / "store.key"
    create_key_file(key_file)
    store = SQLiteStore(tmp_path / "siegel.db", ContentCipher.from_key_file(key_file))
    return Runtime(config, registry, store, clock=FrozenClock())


async def test_serve_starts_and_stops_every_plugins_resources(tmp_path):
    # Runtime.start/stop is what `siegel serve` calls around the listener.
    plugin = Recording()
    runtime = _runtime(tmp_path, [("recording", plugin)])
    await runtime.start()
    assert plugin.events == ["start a-first", "start b-second"]
    await runtime.stop(grace_seconds=1)
    assert plugin.events[2:] == ["stop b-second", "stop a-first"]


async def test_the_relay_sessions_are_a_resource():
    registry = PluginRegistry.load()
    assert registry.resources["smtp-relay-sessions"].plugin == "smtp_relay"
    assert registry.registered_by("smtp_relay")["resources"] == ["smtp-relay-sessions"]


def test_registrations_are_traced_with_the_plugin_that_made_them(caplog):
    # siegel's own trace switch: the siegel.manager logger at DEBUG (siegel -vv).
    @attrs.define  # unhashable, as pluggy allows: the trace must not depend on hashing
    class Unhashable:
        events: list[str] = attrs.Factory(list)

        @hookimpl
        def siegel_register_resources(self):
            async def stop():
                pass
            return [Resource(name="traced", stop=stop)]

    with caplog.at_level(logging.DEBUG, logger="siegel.manager"):
        registry = PluginRegistry.load(entry_points=False, extra=[("tracer", Unhashable())])
    assert registry.resources["traced"].plugin == "tracer"
    assert "plugin 'tracer' registered Resource 'traced' (siegel_register_resources)" in (
        caplog.messages)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_the_documented_worker_pool_example(siegel_harness):
    spec = importlib.util.spec_from_file_location("worker_pool_plugin", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    async with siegel_harness(plugins=[("helper_pool", example)]):
        pids = [p.pid for p in example.POOL.processes]
        assert len(pids) == 2
        assert all(_alive(pid) for pid in pids)
    assert example.POOL.processes == []
    assert not any(_alive(pid) for pid in pids)  # killed and reaped: no process left
