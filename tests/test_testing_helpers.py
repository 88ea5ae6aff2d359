"""The plugin author's helpers in siegel.testing: a RecipientContext for one classifier alone
(the documented example runs here) and the typed harness factory."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from siegel.testing import make_message

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def test_the_documented_classifier_alone_example(siegel_harness):
    await load("classifier_alone").check_health_data_alone(siegel_harness,
                                                           load("health_data_plugin"))


async def test_a_context_stores_and_processes_nothing(siegel_harness):
    raw = make_message(to="buerger@example.net")
    async with siegel_harness() as harness:
        ctx = harness.context(raw, "buerger@example.net")
        assert (ctx.tenant.id, str(ctx.recipient), ctx.is_internal) == (
            "test", "buerger@example.net", False)
        assert ctx.raw == raw
        assert ctx.subject == "Ihr Anliegen"
        assert await harness.store.list() == []
        assert harness.sink.messages == []
