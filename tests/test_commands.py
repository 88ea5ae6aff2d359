"""Plugin commands open the configured gateway offline with siegel.commands.open_offline; the
documented example command runs through the ``siegel_cli`` fixture."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from siegel.commands import OfflineError, open_offline

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "state_report_plugin.py"


def example_module():
    spec = importlib.util.spec_from_file_location("state_report_plugin", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_open_offline_gives_config_registry_store_and_state(siegel_cli):
    async with open_offline(siegel_cli.config) as offline:
        assert offline.tenant(None).id in offline.config.tenants
        assert "smtp" in offline.registry.delivery_channels
        await offline.state("example").put("k", b"v")
    async with open_offline(siegel_cli.config) as offline:  # durable: a second opening sees it
        record = await offline.state("example").get("k")
        assert record is not None and record.value == b"v"


async def test_open_offline_names_what_is_wrong(siegel_cli, tmp_path):
    async with open_offline(siegel_cli.config) as offline:
        with pytest.raises(OfflineError, match="unknown tenant 'nope'"):
            offline.tenant("nope")
        with pytest.raises(OfflineError, match="no settings section 'no_such_section'"):
            offline.tenant(next(iter(offline.config.tenants)), section="no_such_section")
    (siegel_cli.directory / "keys" / "store.key").unlink()
    with pytest.raises(OfflineError, match=r"store\.key"):
        async with open_offline(siegel_cli.config):
            pass
    with pytest.raises(OfflineError, match="file not found"):
        async with open_offline(tmp_path / "missing.toml"):
            pass


def test_the_documented_state_report_command(siegel_cli):
    plugin = example_module()
    result = siegel_cli("state-report", "example", plugins=[("state_report", plugin)])
    assert result.exit_code == 0, result.output
    assert result.output.endswith(": 0 records in example\n")
    wrong = siegel_cli("state-report", "--tenant", "nope", "example",
                       plugins=[("state_report", plugin)])
    assert wrong.exit_code == 1
    assert "unknown tenant 'nope'" in wrong.output


def test_without_the_plugin_there_is_no_such_command(siegel_cli):
    result = siegel_cli("state-report", "example")
    assert result.exit_code == 2
    assert "No such command" in result.output
