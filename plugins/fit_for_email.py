"""Built-in classifier: is the content fit for e-mail at all?

The district's rule (seed 000_1253fbd76cd12a7e.txt, section 1) says e-mail is not suitable for
content with legal consequences, because receipt cannot be proven. Configured phrases either warn
the sender (the message goes on, protected as it must be) or hold the message in quarantine until
an administrator releases it.
"""

from __future__ import annotations

import functools
import re
from typing import Literal

import attrs

from siegel import Classifier, ConfigSection, Finding, Level, RecipientContext, Text, hookimpl

SECTION = "fit_for_email"


@attrs.frozen(kw_only=True)
class FitForEmailSettings:
    #: Phrases that indicate content with legal consequences (case-insensitive, whole words).
    phrases: tuple[str, ...] = ()
    #: "warn": tell the sender and deliver; "hold": quarantine until released.
    action: Literal["warn", "hold"] = "warn"
    scope: Literal["external", "all"] = "external"


@functools.lru_cache(maxsize=64)
def _phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(" + "|".join(re.escape(p) for p in phrases) + r")(?!\w)",
                      re.IGNORECASE)


async def classify(ctx: RecipientContext) -> Finding | None:
    settings: FitForEmailSettings = ctx.settings(SECTION)
    if not settings.phrases or (settings.scope == "external" and ctx.is_internal):
        return None
    pattern = _phrase_pattern(settings.phrases)
    match = pattern.search(ctx.text)
    if match is None:
        return None
    phrase = next((p for p in settings.phrases if p.lower() == match.group(1).lower()),
                  match.group(1))
    reason = Text(
        de=f"Inhalt mit möglichen Rechtsfolgen ({phrase!r}): E-Mail ist dafür nicht geeignet, "
        "der Zugang kann nicht nachgewiesen werden",
        en=f"content with possible legal consequences ({phrase!r}): e-mail is not suitable, "
        "receipt cannot be proven")
    if settings.action == "hold":
        return Finding(level=Level.QUARANTINE, code="content.legal-consequences", reason=reason,
                       warn_sender=False)
    return Finding(level=Level.PLAIN, code="content.legal-consequences", reason=reason,
                   warn_sender=True)


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=FitForEmailSettings,
                          description="Phrases that mark content not fit for e-mail")]


@hookimpl
def siegel_register_classifiers() -> list[Classifier]:
    return [Classifier(name=SECTION, classify=classify,
                       description="Content with legal consequences does not belong in e-mail")]
