"""Built-in classifier and rewriter: the sender asks for protection.

Like the district's Outlook button "Automatisch verschlüsseln" (seed 000_1253fbd76cd12a7e.txt): a
header set by the mail client, or a tag in the subject, makes every external recipient's copy
``PROTECT``. The header and the tag are instructions to the gateway, so they are removed before the
copy is protected or delivered (internal copies included). Notices to the sender repeat the subject
as the copy left: the pipeline runs the tenant's rewriters for it, so :func:`remove_tags` is the one
place that decides what a subject looks like without its tags.
"""

from __future__ import annotations

import re

import attrs

from siegel import (
    Classifier,
    ConfigSection,
    Finding,
    Level,
    RecipientContext,
    Rewriter,
    Text,
    hookimpl,
    mime,
)

SECTION = "sender_trigger"


@attrs.frozen(kw_only=True)
class SenderTriggerSettings:
    #: Header the mail client sets; empty to disable.
    header: str = "X-Siegel-Encrypt"
    #: Header values that count as "yes" (compared case-insensitively).
    header_values: tuple[str, ...] = ("yes", "true", "1", "ja", "on")
    #: Subject tags that count as a request (case-insensitive), e.g. "[vertraulich]".
    subject_tags: tuple[str, ...] = ("[secure]", "[verschlüsseln]")


def _tag_pattern(tags: tuple[str, ...]) -> re.Pattern[str] | None:
    if not tags:
        return None
    return re.compile("|".join(re.escape(tag) for tag in tags), re.IGNORECASE)


def remove_tags(subject: str, tags: tuple[str, ...]) -> str:
    """``subject`` without the trigger ``tags`` (case-insensitive) and the spaces they leave."""
    pattern = _tag_pattern(tags)
    if pattern is None or not pattern.search(subject):
        return subject
    return re.sub(r"\s{2,}", " ", pattern.sub("", subject)).strip()


def requested(ctx: RecipientContext) -> str | None:
    """How the sender asked for protection (for the reason), or None."""
    settings: SenderTriggerSettings = ctx.settings(SECTION)
    if settings.header:
        wanted = {v.lower() for v in settings.header_values}
        for value in ctx.email.get_all(settings.header, []):
            if str(value).strip().lower() in wanted:
                return f"header {settings.header}"
    pattern = _tag_pattern(settings.subject_tags)
    if pattern and pattern.search(ctx.subject):
        return "subject tag"
    return None


async def classify(ctx: RecipientContext) -> Finding | None:
    how = requested(ctx)
    if how is None:
        return None
    if ctx.is_internal:
        return Finding(
            level=Level.PLAIN, code="sender.requested",
            reason=Text(de=f"Absender verlangt Verschlüsselung ({how}); Empfänger ist intern",
                        en=f"sender asked for encryption ({how}); recipient is internal"))
    return Finding(
        level=Level.PROTECT, code="sender.requested",
        reason=Text(de=f"Absender verlangt Verschlüsselung ({how})",
                    en=f"sender asked for encryption ({how})"))


def rewrite(raw: mime.RawMessage, ctx: RecipientContext) -> None:
    settings: SenderTriggerSettings = ctx.settings(SECTION)
    if settings.header:
        raw.remove(settings.header)
    subject = ctx.subject
    cleaned = remove_tags(subject, settings.subject_tags)
    if cleaned != subject:
        raw.replace("Subject", cleaned)


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=SenderTriggerSettings,
                          description="Header and subject tags with which a sender asks for protection")]


@hookimpl
def siegel_register_classifiers() -> list[Classifier]:
    return [Classifier(name=SECTION, classify=classify,
                       description="The sender asked for protection (header or subject tag)")]


@hookimpl
def siegel_register_rewriters() -> list[Rewriter]:
    return [Rewriter(name=SECTION, rewrite=rewrite,
                     description="Removes the trigger header and subject tag")]
