"""Texts in German and English, and which of the two a visitor gets.

Catalogs are flat JSON objects (``key -> text``) in ``locales/de.json`` and ``locales/en.json``;
both must hold exactly the same keys, which :func:`load_catalogs` checks. Texts may contain
``{name}`` placeholders, filled by ``t(key, name=...)``. Plugins can bring their own catalogs
(``portal_locales/`` next to the module that defines their endpoints) or pass
:class:`siegel.Text` values, which carry both languages already.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from siegel.model import Text

log = logging.getLogger(__name__)

Language = Literal["de", "en"]
LANGUAGES: tuple[Language, ...] = ("de", "en")
DEFAULT_LANGUAGE: Language = "de"
LOCALES = Path(__file__).parent / "locales"

Catalogs = Mapping[Language, Mapping[str, str]]


class CatalogError(Exception):
    """A catalog is missing, unreadable, or the languages do not hold the same keys."""


def load_catalogs(folder: Path) -> dict[Language, dict[str, str]]:
    """Read ``de.json`` and ``en.json`` from ``folder`` and check they hold the same keys."""
    catalogs: dict[Language, dict[str, str]] = {}
    for language in LANGUAGES:
        path = folder / f"{language}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CatalogError(f"{path}: cannot read the catalog: {exc}") from None
        if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise CatalogError(f"{path}: expected one JSON object of strings")
        catalogs[language] = data
    missing = {
        language: sorted(set(catalogs[other]) - set(catalogs[language]))
        for language in LANGUAGES for other in LANGUAGES if other != language
    }
    problems = [f"{folder / (lang + '.json')}: missing {', '.join(keys)}"
                for lang, keys in missing.items() if keys]
    if problems:
        raise CatalogError("; ".join(problems))
    return catalogs


def merge_catalogs(*layers: Catalogs) -> dict[Language, dict[str, str]]:
    """Later layers win key by key (a plugin's catalog over the portal's)."""
    merged: dict[Language, dict[str, str]] = {language: {} for language in LANGUAGES}
    for layer in layers:
        for language in LANGUAGES:
            merged[language].update(layer.get(language, {}))
    return merged


class Translator:
    """``t(key_or_text, **params)`` for one language."""

    def __init__(self, catalogs: Catalogs, language: Language) -> None:
        self.language = language
        self._catalog = catalogs[language]

    def __call__(self, key: str | Text, /, **params: object) -> str:
        if isinstance(key, Text):
            text = key.get(self.language)
        else:
            found = self._catalog.get(key)
            if found is None:
                log.warning("portal text %r is missing in the %s catalog", key, self.language)
                return key
            text = found
        return text.format_map(params) if params else text


_QUALITY = re.compile(r"^\s*q\s*=\s*([0-9.]+)\s*$")


def parse_accept_language(header: str) -> list[str]:
    """Primary language tags from ``Accept-Language``, best first (``q=0`` left out)."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")):
        tag, *params = item.strip().split(";")
        tag = tag.strip().lower()
        if not tag:
            continue
        quality = 1.0
        for param in params:
            match = _QUALITY.match(param)
            if match:
                try:
                    quality = float(match.group(1))
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, index, tag.split("-")[0]))
    return [tag for _q, _i, tag in sorted(ranked)]


def as_language(value: str | None) -> Language | None:
    return value if value in LANGUAGES else None


def negotiate_language(
    *,
    query: str | None,
    cookie: str | None,
    accept_language: str | None,
    fallback: Language = DEFAULT_LANGUAGE,
) -> Language:
    """``?lang=`` wins, then the language cookie, then the browser's preference, then
    ``fallback`` (the tenant's language, German unless configured otherwise)."""
    for explicit in (query, cookie):
        language = as_language(explicit)
        if language is not None:
            return language
    for tag in parse_accept_language(accept_language or ""):
        if tag == "*":
            return fallback
        language = as_language(tag)
        if language is not None:
            return language
    return fallback
