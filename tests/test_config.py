"""Configuration errors name the key path and what is wrong; unknown keys are errors."""

from __future__ import annotations

import pytest

from siegel.config import ConfigError, config_from_mapping, load_config
from siegel.manager import PluginRegistry


@pytest.fixture(scope="module")
def registry():
    return PluginRegistry.load()


def tenant(**extra):
    return {"name": "T", "domains": ["t.example"], "plugin_set": "baseline", **extra}


def problems(registry, tmp_path, data):
    with pytest.raises(ConfigError) as info:
        config_from_mapping(data, registry, source="siegel.toml", base_dir=tmp_path)
    return info.value.problems


def test_a_minimal_config_is_valid_with_secure_defaults(registry, tmp_path):
    config = config_from_mapping({"tenants": {"t": tenant()}}, registry, source="x",
                                 base_dir=tmp_path)
    t = config.tenants["t"]
    assert t.notice_from == "postmaster@t.example"
    assert t.settings["relay"].tls == "starttls-required"
    assert t.settings["relay"].verify_certificate is True
    assert t.settings["recipient_scope"].external == "protect"
    assert config.listeners[0].host == "127.0.0.1"
    assert config.listeners[0].allowed_clients == ("127.0.0.0/8", "::1/128")


@pytest.mark.parametrize(("data", "expected"), [
    ({"tenants": {"t": tenant(domain=["x"])}}, "tenants.t.domain: unknown key"),
    ({"listeners": [{"port": "25"}], "tenants": {"t": tenant()}},
     "listeners[0].port: expected a number, got str '25'"),
    ({"listeners": [{"port": 70000}], "tenants": {"t": tenant()}},
     "listeners[0].port: must be between 0 and 65535, not 70000"),
    ({"listeners": [{"starttls": "required"}], "tenants": {"t": tenant()}},
     "listeners[0].starttls: 'required' needs tls_certificate and tls_key"),
    ({"listeners": [{"allowed_clients": ["10.0.0.0/33"]}], "tenants": {"t": tenant()}},
     "listeners[0].allowed_clients"),
    ({"store": {"backend": "oracle"}, "tenants": {"t": tenant()}}, "store.backend"),
    ({"delivery": {"concurrency": 0}, "tenants": {"t": tenant()}},
     "delivery.concurrency: must be greater than 0, not 0"),
    ({"tenants": {"t": tenant(plugin_set="schule")}},
     "tenants.t.plugin_set: unknown plugin set 'schule' (known: baseline, city, district, postbox)"),
    ({"tenants": {"t": tenant(plugins=["nonexistent"])}},
     "tenants.t: enables plugin 'nonexistent', which is not installed"),
    ({"tenants": {"t": tenant(protection=["vault"])}},
     "tenants.t.protection: unknown protection method 'vault'"),
    ({"tenants": {"t": tenant(protection=["smime"])}},
     "tenants.t.protection: method 'smime' belongs to plugin 'smime', which this tenant does not "
     "enable"),
    ({"tenants": {"t": tenant(domains=["not a domain"])}}, "tenants.t.domains: "),
    ({"tenants": {"t": tenant(domains=[])}},
     "tenants.t.domains: a tenant needs at least one own domain"),
    ({"tenants": {"t": tenant(), "u": tenant(domains=["T.example"])}},
     "tenants.u.domains: t.example belongs to tenant 't' already"),
    ({"tenants": {"t": tenant(settings={"relay": {"prot": 25}})}},
     "tenants.t.settings.relay.prot: unknown key"),
    ({"tenants": {"t": tenant(plugin_set="district",
                              settings={"password_pdf": {"render_processes": -1}})}},
     "tenants.t.settings.password_pdf.render_processes: must be 0 or more, not -1"),
    ({"tenants": {"t": tenant(settings={"relay": {"port": True}})}},
     "tenants.t.settings.relay.port: expected a number, got bool True"),
    ({"tenants": {"t": tenant(settings={"relay": {"host": "mail.example", "tls": "none"}})}},
     "tls = 'none' would send mail unencrypted to mail.example"),
    ({"tenants": {"t": tenant(settings={"nonsense": {}})}},
     "tenants.t.settings.nonsense: no loaded plugin reads this section"),
    ({"settings": {"nonsense": {}}, "tenants": {"t": tenant()}},
     "settings.nonsense: no loaded plugin reads this section"),
    ({"tenants": {"t": tenant(settings={"content_rules": {"rules": [
        {"name": "x", "pattern": "([unclosed"}]}})}},
     "tenants.t.settings.content_rules.rules[0].pattern: '([unclosed' is not a valid "
     "regular expression: unterminated character set at position 1"),
    ({"tenants": {"t": tenant(settings={"sender_notices": {"send": ["everything"]}})}},
     "tenants.t.settings.sender_notices.send: unknown notice kinds ['everything']"),
    ({"tenants": {"t": tenant(plugin_set=None, plugins=[])}},
     "tenants.t: enables no plugins"),
    ({"tenants": {"t": tenant(plugin_set=None, plugins=["smtp_relay", "sender_notices"])}},
     "tenants.t: enables no classifier"),
    ({"tenants": {"t": tenant(delivery_channel="e-akte")}},
     "tenants.t.delivery_channel: unknown delivery channel 'e-akte'"),
    ({}, "tenants: at least one tenant is needed"),
    ({"tenants": {"t": {"domains": ["t.example"], "plugin_set": "baseline"}}},
     "tenants.t.name: required key is missing"),
])
def test_errors_name_the_key_path(registry, tmp_path, data, expected):
    found = problems(registry, tmp_path, data)
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once(registry, tmp_path):
    found = problems(registry, tmp_path, {"tenants": {
        "a": tenant(plugin_set="nope"), "b": tenant(domains=["b.example"], protection=["x"])}})
    assert len(found) == 2


def test_settings_merge_plugin_set_then_global_then_tenant(registry, tmp_path):
    data = {"settings": {"relay": {"host": "relay.example", "port": 587}},
            "tenants": {"t": tenant(plugin_set="district",
                                    settings={"relay": {"port": 2525}})}}
    config = config_from_mapping(data, registry, source="x", base_dir=tmp_path)
    t = config.tenants["t"]
    assert (t.settings["relay"].host, t.settings["relay"].port) == ("relay.example", 2525)
    assert t.settings["recipient_scope"].external == "plain"  # from the district set
    assert len(t.settings["content_rules"].rules) == 2


def test_file_errors(registry, tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.toml", registry)
    broken = tmp_path / "broken.toml"
    broken.write_text("[tenants.t\nname = 1\n")
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 1"):
        load_config(broken, registry)
    error = ConfigError("f.toml", ["a: x", "b: y"])
    assert str(error) == "f.toml: configuration errors\n  a: x\n  b: y"
