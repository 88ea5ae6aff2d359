"""Identity levels required to read and write: tenant and plugin-set defaults, classifier
findings, ``RecipientContext.required_level`` and ``siegel explain``."""

from __future__ import annotations

from typing import Any

import pytest

from siegel import Classifier, Finding, IdentityLevel, Level, PluginSet, Text, hookimpl
from siegel.addresses import Address
from siegel.config import ConfigError, config_from_mapping
from siegel.explain import as_json, as_text, explain
from siegel.manager import PluginRegistry
from siegel.testing import make_message

CITIZEN = "buerger@example.net"


class Decisions:
    """A classifier that asks for a confirmed account for decisions ("Bescheid"), and a plugin
    set whose tenants need one to write."""

    @hookimpl
    def siegel_register_classifiers(self) -> list[Classifier]:
        async def classify(ctx: Any) -> Finding | None:
            if "Bescheid" not in ctx.subject:
                return None
            return Finding(level=Level.PROTECT, code="decision", reason=Text(de="Bescheid",
                                                                              en="decision"),
                           identity_level="confirmed")
        return [Classifier(name="decisions", classify=classify)]

    @hookimpl
    def siegel_register_plugin_sets(self) -> list[PluginSet]:
        return [PluginSet(name="strict", plugins=["recipient_scope", "smtp_relay", "decisions"],
                          write_level=IdentityLevel.CONFIRMED)]


@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    return PluginRegistry.load(extra=[("decisions", Decisions())])


def load(registry: PluginRegistry, tmp_path: Any, **tenant: Any) -> Any:
    data = {"tenants": {"t": {"name": "T", "domains": ["t.example"], "plugin_set": "strict",
                              **tenant}}}
    return config_from_mapping(data, registry, source="siegel.toml", base_dir=tmp_path)


def test_levels_default_to_the_plugin_sets_then_mailbox(registry, tmp_path):
    tenant = load(registry, tmp_path).tenants["t"]
    assert tenant.read_level is IdentityLevel.MAILBOX
    assert tenant.write_level is IdentityLevel.CONFIRMED  # the set's
    tenant = load(registry, tmp_path, read_level="confirmed", write_level="mailbox").tenants["t"]
    assert (tenant.read_level, tenant.write_level) == (IdentityLevel.CONFIRMED,
                                                       IdentityLevel.MAILBOX)
    baseline = load(registry, tmp_path, plugin_set="baseline").tenants["t"]
    assert (baseline.read_level, baseline.write_level) == (IdentityLevel.MAILBOX,) * 2


def test_a_bad_level_is_an_error_that_names_the_key(registry, tmp_path):
    with pytest.raises(ConfigError) as info:
        load(registry, tmp_path, read_level="pin", write_level=2)
    problems = info.value.problems
    assert ("tenants.t.read_level: unknown identity level 'pin'; known: mailbox, confirmed"
            in problems)
    assert any(p.startswith("tenants.t.write_level: ") for p in problems), problems


def test_findings_and_plugin_sets_take_levels_by_name():
    finding = Finding(level=Level.PROTECT, code="x", reason=Text(de="x", en="x"),
                      identity_level="confirmed")
    assert finding.identity_level is IdentityLevel.CONFIRMED
    assert Finding(level=Level.PLAIN, code="x", reason=Text(de="", en="")).identity_level is None
    with pytest.raises(ValueError, match="unknown identity level"):
        PluginSet(name="x", plugins=[], read_level="passport")


async def test_the_copy_needs_the_highest_level_and_explain_shows_it(registry, tmp_path):
    config = load(registry, tmp_path)
    sender = Address.parse("amt@t.example")
    results = {}
    for subject in ("Bescheid vom 3. Dezember", "Termin"):
        raw = make_message(sender=str(sender), to=CITIZEN, subject=subject)
        explanation = await explain(config, registry, raw, sender, [Address.parse(CITIZEN)])
        results[subject] = explanation
    decision = results["Bescheid vom 3. Dezember"].recipients[0]
    assert decision.required_level is IdentityLevel.CONFIRMED
    assert results["Termin"].recipients[0].required_level is IdentityLevel.MAILBOX
    assert "Identitätsstufe zum Lesen: confirmed" in as_text(results["Bescheid vom 3. Dezember"])
    assert '"required_level": "mailbox"' in as_json(results["Termin"])
    # The tenant's read level is the floor for every copy.
    strict = load(registry, tmp_path, read_level="confirmed")
    raw = make_message(sender=str(sender), to=CITIZEN, subject="Termin")
    explained = await explain(strict, registry, raw, sender, [Address.parse(CITIZEN)])
    assert explained.recipients[0].required_level is IdentityLevel.CONFIRMED


async def test_the_context_tells_the_level_the_pipeline_decided(siegel_harness):
    config = {"tenants": {"test": {"read_level": "mailbox"}}}
    async with siegel_harness(config=config, plugins=[("decisions", Decisions())]) as harness:
        raw = make_message(to=CITIZEN, subject="Bescheid")
        ctx = harness.context(raw, CITIZEN)
        assert ctx.required_level is IdentityLevel.MAILBOX  # not classified yet
        plan = await harness.runtime.pipeline.decide(ctx.message, ctx.tenant, ctx.recipient)
        assert plan.outgoing is not None
        assert plan.outgoing.required_level is IdentityLevel.CONFIRMED
