"""One classifier, tested alone: ``harness.context`` builds the RecipientContext the pipeline
would give it, without storing or processing a message."""

from __future__ import annotations

from types import ModuleType

from siegel import Level
from siegel.testing import HarnessFactory, make_message


async def check_health_data_alone(siegel_harness: HarnessFactory, plugin: ModuleType) -> None:
    raw = make_message(to="buerger@example.net", body="Anbei Ihre Gesundheitsdaten.\n")
    async with siegel_harness(plugins=[("health_data", plugin)]) as harness:
        outside = harness.context(raw, "buerger@example.net")
        inside = harness.context(raw, "kollegin@behoerde.example")
        finding = await plugin.classify(outside)
        assert finding is not None and finding.level is Level.QUARANTINE
        assert await plugin.classify(inside) is None
