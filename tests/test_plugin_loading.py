"""Plugin discovery and registration, with real entry points from a fake distribution."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from siegel import Classifier, Finding, Level, PluginSet, Text, hookimpl
from siegel.config import ConfigError, config_from_mapping
from siegel.manager import PluginError, PluginRegistry


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution 'siegel-fake' on sys.path with two plugins in group 'siegel': one works,
    one fails to import."""
    site = tmp_path / "site"
    (site / "siegel_fake_plugins").mkdir(parents=True)
    (site / "siegel_fake_plugins" / "__init__.py").write_text("")
    (site / "siegel_fake_plugins" / "good.py").write_text(textwrap.dedent("""
        from siegel import Classifier, Finding, Level, Text, hookimpl

        async def classify(ctx):
            return Finding(level=Level.PROTECT, code="fake", reason=Text("fake", "fake"))

        @hookimpl
        def siegel_register_classifiers():
            return [Classifier(name="fake_classifier", classify=classify)]
    """))
    (site / "siegel_fake_plugins" / "broken.py").write_text("import does_not_exist_anywhere\n")
    dist = site / "siegel_fake-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: siegel-fake\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[siegel]\nfake_good = siegel_fake_plugins.good\nfake_broken = siegel_fake_plugins.broken\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in [m for m in sys.modules if m.startswith("siegel_fake_plugins")]:
        del sys.modules[name]


def test_builtins_load_first_and_are_plugins_like_any_other():
    registry = PluginRegistry.load()
    names = list(registry.plugins)
    assert {"recipient_scope", "sender_trigger", "content_rules", "fit_for_email", "smtp_relay",
            "sender_notices", "audit_log", "baseline", "district"} <= set(names)
    assert all(registry.plugins[n].origin == "builtin" for n in names)
    assert registry.classifiers["recipient_scope"].plugin == "recipient_scope"
    assert registry.delivery_channels["smtp"].plugin == "smtp_relay"


def test_third_party_entry_point_loads_and_a_broken_one_is_reported(fake_distribution):
    registry = PluginRegistry.load()
    assert registry.plugins["fake_good"].origin == "entry point"
    assert registry.plugins["fake_good"].distribution == "siegel-fake"
    assert registry.classifiers["fake_classifier"].plugin == "fake_good"
    failure = registry.failures["fake_broken"]
    assert "ModuleNotFoundError" in failure.error and "does_not_exist_anywhere" in failure.error
    # built-ins loaded before third-party plugins
    order = list(registry.plugins)
    assert order.index("smtp_relay") < order.index("fake_good")


def test_a_tenant_enabling_a_plugin_that_failed_to_load_fails_the_config(fake_distribution,
                                                                         tmp_path):
    registry = PluginRegistry.load()
    data = {"tenants": {"t": {"name": "T", "domains": ["t.example"], "plugin_set": "baseline",
                              "plugins": ["fake_broken"]}}}
    with pytest.raises(ConfigError) as info:
        config_from_mapping(data, registry, source="x.toml", base_dir=tmp_path)
    assert ("tenants.t: enables plugin 'fake_broken', which failed to load: "
            "ModuleNotFoundError") in str(info.value)


def test_misspelled_hook_fails_loudly():
    class Typo:
        @hookimpl
        def siegel_register_clasifiers(self):
            return []

    with pytest.raises(PluginError, match="siegel_register_clasifiers"):
        PluginRegistry.load(entry_points=False, extra=[("typo", Typo())])


def test_duplicate_names_are_refused_naming_both_plugins():
    async def classify(ctx):
        return None

    class A:
        @hookimpl
        def siegel_register_classifiers(self):
            return [Classifier(name="same", classify=classify)]

    class B(A):
        pass

    with pytest.raises(PluginError, match="registered by both plugin 'a' and plugin 'b'"):
        PluginRegistry.load(entry_points=False, extra=[("a", A()), ("b", B())])


def test_wrong_registration_type_names_the_plugin():
    class Wrong:
        @hookimpl
        def siegel_register_plugin_sets(self):
            return [{"name": "x"}]

    with pytest.raises(PluginError, match=r"plugin 'wrong'.*returned dict, expected PluginSet"):
        PluginRegistry.load(entry_points=False, extra=[("wrong", Wrong())])


def test_registration_objects_validate_their_names():
    with pytest.raises(ValueError, match="must start with a lower-case letter"):
        PluginSet(name="Bad Name", plugins=())


def test_blocked_builtin_is_not_loaded():
    registry = PluginRegistry.load(blocked=["fit_for_email"])
    assert "fit_for_email" not in registry.plugins
    assert "fit_for_email" not in registry.classifiers


def test_per_tenant_plugin_sets_select_classifiers(tmp_path, siegel_harness):
    registry = PluginRegistry.load()
    data = {
        "settings": {"relay": {"tls": "none"}},
        "tenants": {
            "district": {"name": "D", "domains": ["d.example"], "plugin_set": "district"},
            "small": {"name": "S", "domains": ["s.example"],
                      "plugins": ["recipient_scope", "smtp_relay"]},
        }}
    config = config_from_mapping(data, registry, source="x", base_dir=tmp_path)
    district = {c.name for c in registry.enabled(registry.classifiers,
                                                 config.tenants["district"].enabled_plugins)}
    small = {c.name for c in registry.enabled(registry.classifiers,
                                              config.tenants["small"].enabled_plugins)}
    assert district == {"recipient_scope", "sender_trigger", "content_rules", "fit_for_email"}
    assert small == {"recipient_scope"}
    assert "goettingen.de" in config.tenants["district"].internal
    assert "goettingen.de" not in config.tenants["small"].internal


async def test_hook_calls_can_be_recorded(siegel_harness):
    calls: list[str] = []

    class Marker:
        @hookimpl
        def siegel_register_classifiers(self):
            async def classify(ctx):
                return Finding(level=Level.PLAIN, code="m", reason=Text("m", "m"))
            return [Classifier(name="marker", classify=classify)]

    async with siegel_harness(plugins=[("marker", Marker())]) as harness:
        undo = harness.registry.pm.add_hookcall_monitoring(
            lambda name, impls, kwargs: calls.append(name), lambda *args: None)
        try:
            from siegel import AuditEvent
            harness.registry.pm.hook.siegel_audit_event(
                event=AuditEvent(at=harness.clock.now(), kind="test"))
        finally:
            undo()
    assert calls == ["siegel_audit_event"]
