"""Built-in classifier: named content patterns (customer numbers, case numbers) that make a message
customer-related.

Each rule is a regular expression checked against the subject, the readable text (every part a
recipient could read, and the text of PDF and office attachments) and the attachment names, as a
reader sees them (:func:`siegel.mime.searchable`: no invisible characters, full-width folded).
Reasons name the rule, never the matched text: that text is personal data.

A part that cannot be read counts against the message, not for it: for an external recipient, when
a rule that reads the body applies, an unreadable part is a finding of its own (``unreadable``:
by default as strict as the strictest such rule), so that a tenant whose rules can quarantine
cannot be bypassed with an encrypted PDF or an unknown charset. Attachments are read only when
such a rule applies, once per copy.
"""

from __future__ import annotations

import asyncio
import re
from typing import Literal

import attrs

from siegel import (
    Classifier,
    ConfigSection,
    Extraction,
    ExtractLimits,
    Finding,
    Level,
    RecipientContext,
    SettingError,
    Text,
    hookimpl,
)
from siegel.mime import Unreadable, searchable
from siegel.settings import positive

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


def _content_types(_instance: object, attribute: attrs.Attribute[tuple[str, ...]],
                   value: tuple[str, ...]) -> None:
    for item in value:
        if not re.fullmatch(r"[a-z0-9!#$&^_.+-]+/([a-z0-9!#$&^_.+-]+|\*)", item):
            raise SettingError(attribute.name, f"{item!r} is not a content type like "
                               "'image/png' or 'image/*' (lower case)")


@attrs.frozen(kw_only=True)
class ContentRulesSettings:
    rules: tuple[ContentRule, ...] = ()
    #: How an unreadable part counts for an external recipient: "strictest" (as the strictest
    #: rule that reads the body and applies), "protect" or "quarantine".
    unreadable: Literal["strictest", "protect", "quarantine"] = "strictest"
    #: Content types whose unreadable parts do not count (e.g. "image/*" for logos).
    ignore_unreadable: tuple[str, ...] = attrs.field(default=(), validator=_content_types)
    #: Read the text of PDF, office and zip attachments; when false, such an attachment counts
    #: as unreadable.
    read_attachments: bool = True
    attachment_seconds: float = attrs.field(default=20.0, validator=positive)
    attachment_max_mb: float = attrs.field(default=25.0, validator=positive)
    attachment_memory_mb: int = attrs.field(default=1024, validator=positive)

    @property
    def limits(self) -> ExtractLimits:
        return ExtractLimits(seconds=self.attachment_seconds,
                             max_bytes=int(self.attachment_max_mb * 1024 * 1024),
                             memory_bytes=self.attachment_memory_mb * 1024 * 1024)


class _Haystacks:
    """The texts rules search, each made searchable once per copy, not once per rule."""

    def __init__(self, ctx: RecipientContext, attachment_text: str) -> None:
        self._ctx = ctx
        self._attachment_text = attachment_text
        self._made: dict[Where, list[str]] = {}

    def _texts(self, where: Where) -> list[str]:
        if where not in self._made:
            raw = ([self._ctx.subject_text] if where == "subject" else
                   [self._ctx.body_text, self._attachment_text] if where == "body" else
                   list(self._ctx.attachment_names))
            self._made[where] = [searchable(text) for text in raw]
        return self._made[where]

    def __call__(self, where: tuple[Where, ...]) -> list[str]:
        return [text for place in where for text in self._texts(place)]


def _ignored(part: Unreadable, patterns: tuple[str, ...]) -> bool:
    """Whether an unreadable part may be let go: only a file that is of a type without text
    (a picture), never one that could not be read for another reason (an encrypted PDF that the
    sender labelled image/png)."""
    maintype = part.content_type.partition("/")[0]
    return part.problem == "not-text" and (
        part.content_type in patterns or f"{maintype}/*" in patterns)


def _rule_level(rule: ContentRule) -> Level:
    return Level.PROTECT if rule.level == "protect" else Level.QUARANTINE


def unreadable_finding(parts: list[Unreadable], level: Level) -> Finding:
    """The finding for parts that could not be read; the reason names parts, never content."""
    shown = parts[:5]
    more_de = f" und {len(parts) - 5} weitere" if len(parts) > 5 else ""
    more_en = f" and {len(parts) - 5} more" if len(parts) > 5 else ""
    return Finding(level=level, code="content.unreadable", reason=Text(
        "Nicht lesbarer Inhalt kann nicht geprüft werden: "
        + "; ".join(p.reason.de for p in shown) + more_de,
        "content that cannot be read cannot be checked: "
        + "; ".join(p.reason.en for p in shown) + more_en))


async def classify(ctx: RecipientContext) -> list[Finding]:
    settings: ContentRulesSettings = ctx.settings(SECTION)
    rules = [rule for rule in settings.rules
             if not (rule.scope == "external" and ctx.is_internal)]
    body_rules = [rule for rule in rules if "body" in rule.where]
    extraction = None
    if body_rules and settings.read_attachments:
        extraction = await ctx.attachment_text(settings.limits)
    # Reading the body and matching patterns is CPU work: in a thread, the event loop (and the
    # listener with it) stays responsive, and the pipeline's time limit can end the wait.
    return await asyncio.to_thread(_findings, ctx, settings, rules, body_rules, extraction)


def _findings(ctx: RecipientContext, settings: ContentRulesSettings, rules: list[ContentRule],
              body_rules: list[ContentRule], extraction: Extraction | None) -> list[Finding]:
    attachment_text = ""
    unreadable: list[Unreadable] = []
    if body_rules:
        unreadable += ctx.reading.unreadable
        if extraction is not None:
            attachment_text = extraction.text
            unreadable += extraction.unreadable
        else:
            unreadable += (Unreadable(path=a.path, content_type=a.content_type,
                                      problem="not-extracted")
                           for a in ctx.reading.attachments)
    findings = []
    haystacks = _Haystacks(ctx, attachment_text)
    for rule in rules:
        pattern = rule.compiled
        if any(pattern.search(text) for text in haystacks(rule.where)):
            what_de = rule.description_de or rule.name
            what_en = rule.description_en or rule.name
            findings.append(Finding(
                level=_rule_level(rule),
                code=f"content.{rule.name}",
                reason=Text(f"Inhaltsregel {rule.name!r}: {what_de} gefunden",
                            f"content rule {rule.name!r}: {what_en} found")))
    counted = [p for p in unreadable if not _ignored(p, settings.ignore_unreadable)]
    if counted and not ctx.is_internal:
        level = (max(_rule_level(rule) for rule in body_rules)
                 if settings.unreadable == "strictest"
                 else Level.PROTECT if settings.unreadable == "protect" else Level.QUARANTINE)
        findings.append(unreadable_finding(counted, level))
    return findings


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=ContentRulesSettings,
                          description="Named patterns that mark a message as customer-related")]


@hookimpl
def siegel_register_classifiers() -> list[Classifier]:
    return [Classifier(name=SECTION, classify=classify,
                       description="Customer or case numbers in subject, body, attachments or their names")]
