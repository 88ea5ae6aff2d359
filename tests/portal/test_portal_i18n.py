"""German first, English on request; every text in both catalogs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from portal_demo_plugin import DemoPlugin

from siegel.model import Text
from siegel.portal.i18n import (
    LOCALES,
    CatalogError,
    Translator,
    load_catalogs,
    negotiate_language,
    parse_accept_language,
)
from siegel.portal.templates import TEMPLATES

PORTAL = Path(LOCALES).parent


def test_both_catalogs_hold_the_same_keys_and_no_empty_texts():
    catalogs = load_catalogs(LOCALES)
    assert set(catalogs["de"]) == set(catalogs["en"])
    for language, catalog in catalogs.items():
        for key, text in catalog.items():
            assert text.strip(), f"{language}: {key} is empty"
    # the same placeholders in both languages
    for key in catalogs["de"]:
        placeholders = [set(re.findall(r"{(\w+)}", catalogs[lang][key])) for lang in ("de", "en")]
        assert placeholders[0] == placeholders[1], key


def test_every_key_the_portal_uses_exists():
    catalog = load_catalogs(LOCALES)["de"]
    sources = [p.read_text(encoding="utf-8") for p in TEMPLATES.glob("*.html")]
    sources += [p.read_text(encoding="utf-8") for p in PORTAL.glob("*.py")]
    used = set()
    for source in sources:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z][a-z_-]*(?:\.[a-z0-9_-]+)+)["']""", source))
    used = {key for key in used if not key.startswith("x.")}   # examples in forms.html
    assert used, "no keys found: the pattern is broken"
    # keys built at run time
    used |= {f"session_expired.{r}" for r in ("idle", "absolute", "invalid")}
    used |= {f"session.notice.{r}" for r in ("idle", "absolute", "invalid")}
    used |= {f"csrf.reason.{r}" for r in ("token", "no-session", "origin")}
    used |= {f"error.{s}.{part}" for s in ("400", "404", "405", "413", "429", "500", "other")
             for part in ("title", "text")}
    missing = sorted(key for key in used if key not in catalog)
    assert missing == []


def test_an_incomplete_catalog_is_refused(tmp_path):
    (tmp_path / "de.json").write_text('{"a": "A", "b": "B"}', encoding="utf-8")
    (tmp_path / "en.json").write_text('{"a": "A"}', encoding="utf-8")
    with pytest.raises(CatalogError, match=r"en\.json: missing b"):
        load_catalogs(tmp_path)


def test_translator_formats_and_accepts_text_values():
    t = Translator({"de": {"x": "Hallo {name}"}, "en": {"x": "Hello {name}"}}, "en")
    assert t("x", name="Erika") == "Hello Erika"
    assert t(Text(de="Ja", en="Yes")) == "Yes"
    assert t("missing.key") == "missing.key"


@pytest.mark.parametrize(("header", "expected"), [
    ("en-US,en;q=0.9", "en"),
    ("de-DE,de;q=0.9,en;q=0.8", "de"),
    ("fr-FR, en;q=0.5", "en"),
    ("en;q=0.3, de", "de"),
    ("fr, it", "de"),
    ("", "de"),
    ("*", "de"),
    ("en;q=0", "de"),
    ("garbage;;q=x,,", "de"),
])
def test_accept_language(header, expected):
    assert negotiate_language(query=None, cookie=None, accept_language=header) == expected


def test_query_beats_cookie_beats_browser_and_tenant_language_is_the_fallback():
    assert negotiate_language(query="en", cookie="de", accept_language="de") == "en"
    assert negotiate_language(query="xx", cookie="en", accept_language="de") == "en"
    assert negotiate_language(query=None, cookie=None, accept_language="fr",
                              fallback="en") == "en"
    assert parse_accept_language("da, en-gb;q=0.8, en;q=0.7") == ["da", "en", "en"]


async def test_pages_are_german_by_default_and_english_on_request(portal):
    async with portal() as p:
        german = await p.client.get("/t/test/contact")
        assert '<html lang="de">' in german.text and "Ihr Name" in german.text
        english = await p.client.get("/t/test/contact?lang=en")
        assert '<html lang="en">' in english.text and "Your name" in english.text
        assert "siegel_lang=en" in english.headers["set-cookie"]
        remembered = await p.client.get("/t/test/contact")
        assert '<html lang="en">' in remembered.text
        back = await p.client.get("/t/test/?lang=de")
        assert '<html lang="de">' in back.text


async def test_browser_preference_chooses_english(portal):
    async with portal() as p:
        page = await p.client.get("/t/test/", headers={"accept-language": "en-GB,en;q=0.9"})
        assert '<html lang="en">' in page.text and "Welcome" in page.text


async def test_tenant_language_is_the_fallback(portal):
    async with portal(config={"tenants": {"test": {"language": "en"}}}) as p:
        page = await p.client.get("/t/test/", headers={"accept-language": "fr"})
        assert '<html lang="en">' in page.text


async def test_language_switcher_links_keep_the_page_and_its_query(portal):
    async with portal(plugins=[("demo", DemoPlugin())]) as p:
        page = await p.client.get("/t/test/hello?x=1&lang=en")
        assert '<a href="?x=1&amp;lang=de" lang="de" hreflang="de">Deutsch</a>' in page.text
        assert ('<a href="?x=1&amp;lang=en" lang="en" hreflang="en" aria-current="true">English'
                in page.text)


async def test_validation_messages_are_translated(portal):
    async with portal() as p:
        from portal_helpers import csrf_token
        page = await p.client.get("/t/test/contact?lang=en")
        response = await p.client.post("/t/test/contact", data={
            "csrf_token": csrf_token(page.text), "name": "", "email": "x", "message": ""})
        assert response.status_code == 422
        assert "Enter your name." in response.text
        assert "Enter an email address in the format name@example.com." in response.text
        assert "<title>Error: Contact" in response.text
