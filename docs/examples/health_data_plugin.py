"""health_data: health data never leaves the authority by e-mail without a person's review.

A siegel plugin with a config section, a classifier and a rewriter (the tutorial in
docs/writing-plugins.rst):

* a copy to an external recipient that mentions one of the configured keywords is quarantined,
  with a reason the sender can read; an administrator may release it after review;
* internal copies that mention them leave marked ``Sensitivity: Private`` (RFC 2156), so that
  mail clients show them as private.
"""

from __future__ import annotations

import attrs

from siegel import (
    Classifier,
    ConfigSection,
    Finding,
    Level,
    RecipientContext,
    Rewriter,
    SettingError,
    Text,
    hookimpl,
    mime,
)

SECTION = "health_data"


def _keywords(_instance: object, _attribute: object, value: tuple[str, ...]) -> None:
    if any(not keyword.strip() for keyword in value):
        raise SettingError("keywords", "an empty keyword would match every message")


@attrs.frozen(kw_only=True)
class HealthDataSettings:
    """``[settings.health_data]``: every field needs a default."""

    #: Words that mark health data, found case-insensitively anywhere in the subject or the body
    #: (so "Gesundheitsdaten" also finds "Gesundheitsdatenblatt").
    keywords: tuple[str, ...] = attrs.field(default=("Gesundheitsdaten",), validator=_keywords)
    #: Mark internal copies that mention a keyword as "Sensitivity: Private".
    mark_internal: bool = True


def mentioned(ctx: RecipientContext) -> str | None:
    """The first keyword the copy mentions, or None."""
    settings: HealthDataSettings = ctx.settings(SECTION)
    text = ctx.text.casefold()
    return next((k for k in settings.keywords if k.casefold() in text), None)


async def classify(ctx: RecipientContext) -> Finding | None:
    if ctx.is_internal:
        return None
    keyword = mentioned(ctx)
    if keyword is None:
        return None
    return Finding(
        level=Level.QUARANTINE,
        code="health-data",
        reason=Text(
            de=f"Gesundheitsdaten ({keyword!r}) an externe Empfänger nur nach Prüfung",
            en=f"health data ({keyword!r}) to external recipients only after review",
        ),
    )


def mark_private(raw: mime.RawMessage, ctx: RecipientContext) -> None:
    settings: HealthDataSettings = ctx.settings(SECTION)
    if settings.mark_internal and ctx.is_internal and mentioned(ctx):
        raw.replace("Sensitivity", "Private")


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=HealthDataSettings,
                          description="Keywords that mark health data")]


@hookimpl
def siegel_register_classifiers() -> list[Classifier]:
    return [Classifier(name="health_data", classify=classify,
                       description="Health data to external recipients is quarantined")]


@hookimpl
def siegel_register_rewriters() -> list[Rewriter]:
    return [Rewriter(name="health_data_private", rewrite=mark_private,
                     description="Marks internal copies with health data as private")]
