"""``[plugins] blocked`` is honoured everywhere: a blocked plugin is not imported, adds no command
and is not listed. Run as an operator runs siegel: the ``siegel`` command in its own process, with
a fake installed distribution (a dist-info folder on the path) whose plugin adds a command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from siegel.cli import blocked_for_commands, config_path_in


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    # Importing the module leaves a mark, so the test sees whether it was imported at all.
    (site / "siegel_fake_command.py").write_text(textwrap.dedent("""
        import os
        from pathlib import Path

        import click
        from siegel import hookimpl

        Path(os.environ["FAKE_PLUGIN_MARK"]).write_text("imported")

        @hookimpl
        def siegel_register_commands(cli):
            @cli.command("fake-hello")
            def fake_hello():
                click.echo("hello from the fake plugin")
    """))
    dist = site / "siegel_fake_command-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: siegel-fake-command\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[siegel]\nfake_command = siegel_fake_command\n")
    return site


def siegel(site: Path, mark: Path, *args: str | Path, config: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path]),
           "FAKE_PLUGIN_MARK": str(mark)}
    env.pop("SIEGEL_CONFIG", None)
    if config is not None:
        env["SIEGEL_CONFIG"] = str(config)
    return subprocess.run([sys.executable, "-m", "siegel", *map(str, args)], env=env,
                          cwd=site, capture_output=True, text=True, timeout=120, check=False)


def initialised(tmp_path: Path, site: Path, blocked: list[str]) -> Path:
    result = siegel(site, tmp_path / "init-mark", "init", tmp_path / "gw")
    assert result.returncode == 0, result.stderr
    config = tmp_path / "gw" / "siegel.toml"
    if blocked:
        config.write_text(config.read_text(encoding="utf-8")
                          + f"\n[plugins]\nblocked = {json.dumps(blocked)}\n", encoding="utf-8")
    return config


def test_an_installed_plugin_adds_its_command_and_is_listed(tmp_path, site):
    config = initialised(tmp_path, site, blocked=[])
    mark = tmp_path / "mark"
    result = siegel(site, mark, "fake-hello", "--help")
    assert result.returncode == 0, result.stderr
    listed = siegel(site, mark, "plugins", "--json", "--config", config)
    assert listed.returncode == 0, listed.stderr
    assert "fake_command" in {p["name"] for p in json.loads(listed.stdout)["plugins"]}
    assert mark.read_text() == "imported"


def test_a_blocked_plugin_is_not_imported_adds_no_command_and_is_not_listed(tmp_path, site):
    config = initialised(tmp_path, site, blocked=["fake_command"])
    mark = tmp_path / "mark"
    result = siegel(site, mark, "fake-hello", config=config)
    assert result.returncode == 2
    assert "No such command 'fake-hello'" in result.stderr
    listed = siegel(site, mark, "plugins", "--json", "--config", config)
    assert listed.returncode == 0, listed.stderr
    names = {p["name"] for p in json.loads(listed.stdout)["plugins"]}
    assert "fake_command" not in names
    assert "smtp_relay" in names
    checked = siegel(site, mark, "config", "check", f"--config={config}")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not mark.exists()  # never imported


def test_the_config_named_after_the_subcommand_counts_too(tmp_path):
    assert config_path_in(["certs", "list", "-c", "x.toml"]) == Path("x.toml")
    assert config_path_in(["plugins", "--config=y.toml"]) == Path("y.toml")
    assert config_path_in(["plugins"]) == Path(os.environ.get("SIEGEL_CONFIG", "siegel.toml"))


def test_an_unreadable_blocked_list_loads_no_plugin_commands(tmp_path):
    config = tmp_path / "siegel.toml"
    config.write_text("[plugins]\nblocked = 'not a list'\n")
    assert blocked_for_commands(config) is None
    assert blocked_for_commands(tmp_path / "missing.toml") == ()
