"""``siegel_register_postbox_topics``: topics come per tenant from the plugins it enables, are
attributed to their plugin, and a name used twice is refused with both plugins named."""

from __future__ import annotations

import pytest

from siegel import Address, PluginError, PluginRegistry, PostboxTopic, Text, hookimpl
from siegel.testing import HarnessFactory


class Catalogue:
    @hookimpl
    def siegel_register_postbox_topics(self, tenant):
        return [PostboxTopic(name="income", label=Text(de="Einkommen", en="Income"),
                             recipient=f"leistung@{tenant.id}.behoerde.example")]


class Duplicate:
    @hookimpl
    def siegel_register_postbox_topics(self, tenant):
        return [PostboxTopic(name="income", label=Text(de="Noch einmal", en="Again"),
                             recipient="andere@behoerde.example")]


class Wrong:
    @hookimpl
    def siegel_register_postbox_topics(self, tenant):
        return [{"name": "income"}]


def test_a_topic_validates_its_name_and_recipient() -> None:
    topic = PostboxTopic(name="a.b-c_1", label=Text(de="x", en="x"), recipient="a@b.example")
    assert topic.recipient == Address.parse("a@b.example")
    with pytest.raises(ValueError):
        PostboxTopic(name="with space", label=Text(de="x", en="x"), recipient="a@b.example")


async def test_topics_come_from_the_enabled_plugins_only(siegel_harness: HarnessFactory) -> None:
    async with siegel_harness(plugins=[("catalogue", Catalogue())]) as harness:
        tenant = harness.config.tenants["test"]
        [topic] = harness.registry.postbox_topics(tenant)
        assert (topic.name, topic.plugin) == ("income", "catalogue")
        assert str(topic.recipient) == "leistung@test.behoerde.example"
    registry = PluginRegistry.load(entry_points=False, extra=[("catalogue", Catalogue())])
    other = type("T", (), {"id": "x", "enabled_plugins": ("something_else",)})()
    assert registry.postbox_topics(other) == []  # type: ignore[arg-type]


def test_a_topic_name_used_twice_names_both_plugins() -> None:
    registry = PluginRegistry.load(entry_points=False, extra=[("catalogue", Catalogue()),
                                                              ("duplicate", Duplicate())])
    tenant = type("T", (), {"id": "x", "enabled_plugins": ("catalogue", "duplicate")})()
    with pytest.raises(PluginError, match="'catalogue' and plugin 'duplicate'"):
        registry.postbox_topics(tenant)  # type: ignore[arg-type]


def test_a_wrong_answer_names_the_plugin() -> None:
    registry = PluginRegistry.load(entry_points=False, extra=[("wrong", Wrong())])
    tenant = type("T", (), {"id": "x", "enabled_plugins": ("wrong",)})()
    with pytest.raises(PluginError, match=r"plugin 'wrong'.*expected PostboxTopic"):
        registry.postbox_topics(tenant)  # type: ignore[arg-type]
