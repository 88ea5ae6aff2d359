"""Built-in classifier: is the recipient inside the tenant's trusted network?

Internal means: the domain after the last ``@`` is one of the tenant's own or internal domains
(exact match after case folding and IDNA normalisation), or a subdomain of an
``internal_subdomains`` entry, and the local part does not route elsewhere (``%``, ``!``, a
quoted ``@``: :func:`siegel.internal_match` decides, in the pipeline's ``ctx.internal``).
Everything else is external; ``external = "protect"`` (the default) demands protection for every
external recipient, ``"plain"`` leaves that to other classifiers (e.g. the district protects only
customer-related mail).
"""

from __future__ import annotations

from typing import Literal

import attrs

from siegel import Classifier, ConfigSection, Finding, Level, RecipientContext, Text, hookimpl

SECTION = "recipient_scope"


@attrs.frozen(kw_only=True)
class RecipientScopeSettings:
    #: What every external recipient needs by itself.
    external: Literal["plain", "protect"] = "protect"


async def classify(ctx: RecipientContext) -> Finding:
    if ctx.internal is not None:
        rule = ctx.internal.rule + (" (mit Subdomains)" if ctx.internal.subdomain else "")
        rule_en = ctx.internal.rule + (" (with subdomains)" if ctx.internal.subdomain else "")
        return Finding(
            level=Level.PLAIN, code="recipient.internal",
            reason=Text(de=f"{ctx.recipient.display} ist intern (Domain {rule})",
                        en=f"{ctx.recipient.display} is internal (domain {rule_en})"))
    settings: RecipientScopeSettings = ctx.settings(SECTION)
    if settings.external == "protect":
        return Finding(
            level=Level.PROTECT, code="recipient.external",
            reason=Text(de=f"{ctx.recipient.display} ist extern; externe Post wird geschützt",
                        en=f"{ctx.recipient.display} is external; external mail is protected"))
    return Finding(
        level=Level.PLAIN, code="recipient.external",
        reason=Text(de=f"{ctx.recipient.display} ist extern",
                    en=f"{ctx.recipient.display} is external"))


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=RecipientScopeSettings,
                          description="Whether external recipients need protection by themselves")]


@hookimpl
def siegel_register_classifiers() -> list[Classifier]:
    return [Classifier(name=SECTION, classify=classify,
                       description="Internal or external recipient (exact domain match)")]
