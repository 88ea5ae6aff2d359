"""``siegel config check`` reports every problem of a file at once, each with its key path, and
exits with 2: a mistake in one table does not hide the mistakes in the others."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from siegel.cli import cli
from siegel.config import ConfigError, config_from_mapping
from siegel.manager import PluginRegistry

# Independent mistakes, in every kind of table the file has.
SEVERAL_MISTAKES = """\
colour = "blue"

[[listeners]]
port = "25"

[[listeners]]
port = 70000
max_recipients = 0
starttls = "required"

[store]
retention_days = 0
key_file = "keys/nowhere.key"

[delivery]
concurrency = 0
poll_seconds = -1

[settings.virus_scan]
enabled = true

[tenants.amt]
name = "Stadtverwaltung"
domains = ["stadt.example"]
plugin_set = "school"
protect = ["smime"]

[tenants.kreis]
name = "Landkreis"
domains = ["kreis.example"]
plugin_set = "baseline"

[tenants.kreis.settings.relay]
host = "mail.kreis.example"
port = 0
tls = "none"
idle_seconds = -5

[tenants.schule]
name = "Schule"
domain = ["schule.example"]
"""

EXPECTED = [
    "colour: unknown key",
    "store.retention_days: must be greater than 0, not 0.0",
    "delivery.concurrency: must be greater than 0, not 0",
    "delivery.poll_seconds: must be greater than 0, not -1.0",
    "listeners[0].port: expected a number, got str '25'",
    "listeners[1].port: must be between 0 and 65535, not 70000",
    "listeners[1].max_recipients: must be greater than 0, not 0",
    "tenants.schule.domain: unknown key",
    "tenants.schule.domains: required key is missing",
    "tenants.amt.protect: unknown key",
    "tenants.amt.plugin_set: unknown plugin set 'school' (known: baseline, city, district, postbox)",
    "tenants.kreis.settings.relay.idle_seconds: must be 0 or more, not -5.0",
    "tenants.kreis.settings.relay.port: must be between 1 and 65535, not 0",
    "tenants.kreis.settings.relay.tls: tls = 'none' would send mail unencrypted to "
    "mail.kreis.example; use TLS, or set allow_plaintext_remote = true if that network segment "
    "is trusted",
    "settings.virus_scan: no loaded plugin reads this section",
    "listeners[1].starttls: 'required' needs tls_certificate and tls_key",
]


def test_config_check_lists_every_mistake_with_its_path(tmp_path: Path):
    config = tmp_path / "siegel.toml"
    config.write_text(SEVERAL_MISTAKES, encoding="utf-8")
    result = CliRunner().invoke(cli, ["config", "check", "--config", str(config)])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{config}: configuration errors"
    reported = [line.strip() for line in lines[1:]]
    key_problem = (f"store.key_file: {tmp_path / 'keys' / 'nowhere.key'}: store key file not "
                   "found (run 'siegel init')")
    assert sorted(reported) == sorted([*EXPECTED, key_problem])
    assert "OK" not in result.output


def test_the_same_problems_come_from_the_loader(tmp_path: Path):
    import tomllib

    with pytest.raises(ConfigError) as info:
        config_from_mapping(tomllib.loads(SEVERAL_MISTAKES), PluginRegistry.load(),
                            source="siegel.toml", base_dir=tmp_path)
    assert sorted(info.value.problems) == sorted(EXPECTED)


def test_fixing_every_reported_problem_leaves_a_valid_file(tmp_path: Path):
    """Nothing was hidden: after fixing what was reported (and only that), the file is valid."""
    fixed = (SEVERAL_MISTAKES
             .replace('colour = "blue"\n', "")
             .replace('port = "25"', "port = 2525")
             .replace("port = 70000\nmax_recipients = 0\nstarttls = \"required\"",
                      "port = 2526")
             .replace("retention_days = 0", "retention_days = 7")
             .replace('key_file = "keys/nowhere.key"\n', "")
             .replace("concurrency = 0\npoll_seconds = -1", "concurrency = 2")
             .replace("[settings.virus_scan]\nenabled = true\n", "")
             .replace('plugin_set = "school"\nprotect = ["smime"]', 'plugin_set = "baseline"')
             .replace("port = 0\ntls = \"none\"\nidle_seconds = -5", "port = 25")
             .replace('domain = ["schule.example"]',
                      'domains = ["schule.example"]\nplugin_set = "baseline"'))
    (tmp_path / "siegel.toml").write_text(fixed, encoding="utf-8")
    assert CliRunner().invoke(cli, ["init", str(tmp_path)]).exit_code == 0
    result = CliRunner().invoke(cli, ["config", "check", "--config", str(tmp_path / "siegel.toml")])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("OK")
