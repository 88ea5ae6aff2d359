"""Built-in classifier: named content patterns (customer numbers, case numbers) that make a message
customer-related.

Each rule is a regular expression checked against the subject, the readable body text and the
attachment names. Reasons name the rule, never the matched text: that text is personal data.
"""

from __future__ import annotations

import asyncio
import re
from typing import Literal

import attrs

from siegel import (
    Classifier,
    ConfigSection,
    Finding,
    Level,
    RecipientContext,
    SettingError,
    Text,
    hookimpl,
)

SECTION = "content_rules"

Where = Literal["subject", "body", "attachment_names"]


def _valid_pattern(_instance: object, _attribute: object, value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise SettingError(
            "pattern", f"{value!r} is not a valid regular expression: {exc}") from None


@attrs.frozen(kw_only=True)
class ContentRule:
    name: str
    pattern: str = attrs.field(validator=_valid_pattern)
    #: What a match means: "protect" (customer-related) or "quarantine" (must not go by e-mail).
    level: Literal["protect", "quarantine"] = "protect"
    ignore_case: bool = True
    #: "external": only for external recipients; "all": also internal ones.
    scope: Literal["external", "all"] = "external"
    where: tuple[Where, ...] = ("subject", "body", "attachment_names")
    #: German and English description of what the rule finds, for reasons and notices.
    description_de: str = ""
    description_en: str = ""

    @property
    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)


@attrs.frozen(kw_only=True)
class ContentRulesSettings:
    rules: tuple[ContentRule, ...] = ()


def _haystacks(ctx: RecipientContext, where: tuple[Where, ...]) -> list[str]:
    texts = []
    if "subject" in where:
        texts.append(ctx.subject)
    if "body" in where:
        texts.append(ctx.body_text)
    if "attachment_names" in where:
        texts += ctx.attachment_names
    return texts


async def classify(ctx: RecipientContext) -> list[Finding]:
    # Reading the body and matching patterns is CPU work: in a thread, the event loop (and the
    # listener with it) stays responsive, and the pipeline's time limit can end the wait.
    return await asyncio.to_thread(_findings, ctx)


def _findings(ctx: RecipientContext) -> list[Finding]:
    settings: ContentRulesSettings = ctx.settings(SECTION)
    findings = []
    for rule in settings.rules:
        if rule.scope == "external" and ctx.is_internal:
            continue
        pattern = rule.compiled
        if any(pattern.search(text) for text in _haystacks(ctx, rule.where)):
            what_de = rule.description_de or rule.name
            what_en = rule.description_en or rule.name
            findings.append(Finding(
                level=Level.PROTECT if rule.level == "protect" else Level.QUARANTINE,
                code=f"content.{rule.name}",
                reason=Text(f"Inhaltsregel {rule.name!r}: {what_de} gefunden",
                            f"content rule {rule.name!r}: {what_en} found")))
    return findings


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=ContentRulesSettings,
                          description="Named patterns that mark a message as customer-related")]


@hookimpl
def siegel_register_classifiers() -> list[Classifier]:
    return [Classifier(name=SECTION, classify=classify,
                       description="Customer or case numbers in subject, body or attachment names")]
