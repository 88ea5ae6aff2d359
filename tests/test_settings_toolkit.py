"""The settings toolkit (siegel.settings): shared validators that raise SettingError with the
field's name, so the configuration names the key path; the documented example runs here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import attrs
import pytest

from siegel import ConfigError, SettingError, settings
from siegel.config import config_from_mapping
from siegel.manager import PluginRegistry
from siegel.testing import default_config

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "archive_settings_plugin.py"


def example_module():
    spec = importlib.util.spec_from_file_location("archive_settings_plugin", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # attrs resolves the annotations through it
    spec.loader.exec_module(module)
    return module


def load(tmp_path, archive):
    registry = PluginRegistry.load(extra=[("archive", example_module())])
    data = default_config()
    data["tenants"]["test"]["plugins"] = ["archive"]
    data["tenants"]["test"]["settings"] = {"archive": archive}
    return config_from_mapping(data, registry, source="siegel.toml", base_dir=tmp_path)


def test_the_documented_settings_report_every_problem_with_its_key_path(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {"host": "https://archiv", "port": 0, "timeout_seconds": -1,
                        "ca_file": "missing.pem", "report_to": "not an address"})
    prefix = "tenants.test.settings.archive"
    problems = sorted(caught.value.problems)
    assert problems[0] == f"{prefix}.ca_file: cannot read {tmp_path / 'missing.pem'}: " \
                          "No such file or directory"
    assert problems[1] == f"{prefix}.host: a host name, not a URL"
    assert problems[2] == f"{prefix}.port: must be between 1 and 65535, not 0"
    assert problems[3].startswith(f"{prefix}.report_to: 'not an address' is not an e-mail address")
    assert problems[4] == f"{prefix}.timeout_seconds: must be greater than 0, not -1.0"
    assert len(problems) == 5


def test_the_documented_settings_accept_good_values(tmp_path):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    tenant = load(tmp_path, {"port": 8443, "ca_file": "ca.pem",
                             "report_to": "archiv@behoerde.example"}).tenants["test"]
    archive = tenant.settings["archive"]
    assert (archive.port, archive.ca_file) == (8443, str(tmp_path / "ca.pem"))


@attrs.frozen
class One:
    value: object


def check(validator, value):
    validator(One(value), attrs.fields(One).value, value)


@pytest.mark.parametrize(("validator", "good", "bad", "message"), [
    (settings.positive, 0.5, 0, "must be greater than 0, not 0"),
    (settings.not_negative, 0, -1, "must be 0 or more, not -1"),
    (settings.port, 1, 65536, "must be between 1 and 65535, not 65536"),
    (settings.listen_port, 0, -1, "must be between 0 and 65535, not -1"),
    (settings.networks, ("10.0.0.0/8", "::1"), ("10.0.0.300",),
     "'10.0.0.300' is not an address or network"),
    (settings.address, "a@b.example", "a@", "'a@' is not an e-mail address"),
])
def test_validators_raise_setting_errors_with_the_key(validator, good, bad, message):
    check(validator, good)
    with pytest.raises(SettingError) as caught:
        check(validator, bad)
    assert caught.value.key == "value"
    assert str(caught.value).startswith(message)


def test_readable_file_names_the_file_not_its_content(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("user:hunter2")
    check(settings.readable_file, str(secret))
    check(settings.readable_file, None)
    with pytest.raises(SettingError) as caught:
        check(settings.readable_file, str(tmp_path))  # a folder
    assert str(tmp_path) in str(caught.value)
    assert "hunter2" not in str(caught.value)
