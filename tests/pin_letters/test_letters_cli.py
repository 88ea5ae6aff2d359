"""``siegel letters``: request, render one PDF for printing (read back with pdftotext and
checked with qpdf), list; the PIN read from the paper confirms the account."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pin_helpers import ANNA, BERND, PIN_TEXT, pdf_pages, qpdf_check

from siegel import Address, IdentityLevel
from siegel.commands import open_offline
from siegel.plugins.pin_letters.letters import LetterBook, LetterStatus, Outcome

ANNA_POSTAL = ["--name", "Anna Müller", "--supplement", "c/o Weiß", "--street", "Hauptstraße 5a",
               "--postcode", "37073", "--city", "Göttingen"]
BERND_POSTAL = ["--name", "Bernd Łukaszewski", "--street", "Postfach 12 34 56", "--postcode",
                "10115", "--city", "Berlin"]
MM = 72 / 25.4


@pytest.fixture
def gateway(siegel_cli):
    text = siegel_cli.config.read_text(encoding="utf-8")
    text = text.replace('plugin_set = "baseline"', 'plugin_set = "baseline"\nplugins = ["pin_letters"]', 1)
    text += ('\n[tenants.demo.settings.pin_letters]\n'
             'letterhead_lines = ["Markt 1, 37073 Göttingen", "Telefon 0551 400-0"]\n'
             'return_address = "Demo-Behörde · Markt 1 · 37073 Göttingen"\n')
    siegel_cli.config.write_text(text, encoding="utf-8")

    async def accounts():
        async with open_offline(siegel_cli.config) as offline:
            for address in (ANNA, BERND):
                await offline.accounts("demo").open(Address.parse(address))

    asyncio.run(accounts())
    return siegel_cli


def window_text(path, page: int) -> str:
    """The text behind a DL envelope's window: the DIN 5008 form B address field (85 x 45 mm,
    20 mm from the left, 45 mm from the top)."""
    return subprocess.run(
        ["pdftotext", "-f", str(page), "-l", str(page), "-x", str(int(20 * MM)),
         "-y", str(int(45 * MM)), "-W", str(int(85 * MM)), "-H", str(int(45 * MM)),
         "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def test_render_prints_every_pending_letter_once_and_the_pin_confirms(gateway, tmp_path):
    for postal, address in ((ANNA_POSTAL, ANNA), (BERND_POSTAL, BERND)):
        result = gateway("letters", "request", "--address", address, *postal)
        assert result.exit_code == 0, result.output
    output = tmp_path / "letters.pdf"
    result = gateway("letters", "render", "--tenant", "demo", "--output", output)
    assert result.exit_code == 0, result.output
    assert "wrote 2 letters" in result.output
    assert output.stat().st_mode & 0o077 == 0  # it holds PINs: the owner's alone
    assert "No syntax or stream encoding errors" in qpdf_check(output)
    pages = pdf_pages(output)
    today = datetime.now(ZoneInfo("Europe/Berlin")).strftime("%d.%m.%Y")
    assert len(pages) == 2
    pins = {}
    for page, (address, lines) in enumerate(((ANNA, ["Anna Müller", "c/o Weiß", "Hauptstraße 5a",
                                                     "37073 Göttingen"]),
                                            (BERND, ["Bernd Łukaszewski", "Postfach 12 34 56",
                                                     "10115 Berlin"])), start=1):
        text = pages[page - 1]
        window = [line.strip() for line in window_text(output, page).splitlines() if line.strip()]
        assert window == ["Demo-Behörde · Markt 1 · 37073 Göttingen", *lines]
        assert address in text and "Demo-Behörde" in text and "Markt 1, 37073 Göttingen" in text
        assert "Gültig bis:" in text and "Valid until" in text.replace("\n", " ")
        assert today in text  # the date in the tenant's zone (Europe/Berlin)
        assert "http://127.0.0.1:8025/t/demo/pin-letter/confirm" in text
        found = PIN_TEXT.search(text)
        assert found, text
        pins[address] = found.group(1)
    assert pins[ANNA] != pins[BERND]

    listed = json.loads(gateway("letters", "list", "--json").output)
    assert {(entry["address"], entry["status"]) for entry in listed} == {
        (ANNA, "printed"), (BERND, "printed")}
    # Nothing left to print; the file is not touched.
    again = gateway("letters", "render", "--output", tmp_path / "none.pdf")
    assert again.exit_code == 0 and "no pending letters" in again.output
    assert not (tmp_path / "none.pdf").exists()

    async def confirm() -> tuple[Outcome, Outcome, IdentityLevel | None]:
        async with open_offline(gateway.config) as offline:
            book = LetterBook(offline, "demo")
            crossed = await book.confirm(Address.parse(ANNA), pins[BERND].replace("-", ""))
            right = await book.confirm(Address.parse(ANNA), pins[ANNA].replace("-", ""))
            account = await offline.accounts("demo").get(Address.parse(ANNA))
            return crossed, right, account.level if account else None

    assert asyncio.run(confirm()) == (Outcome.REFUSED, Outcome.CONFIRMED, IdentityLevel.CONFIRMED)


def test_render_again_gives_a_new_pin_and_the_old_one_stops(gateway, tmp_path):
    assert gateway("letters", "request", "--address", ANNA, *ANNA_POSTAL).exit_code == 0
    first, second = tmp_path / "first.pdf", tmp_path / "second.pdf"
    assert gateway("letters", "render", "--output", first).exit_code == 0
    result = gateway("letters", "render", "--output", second, "--again", ANNA)
    assert result.exit_code == 0, result.output
    old = PIN_TEXT.search(pdf_pages(first)[0]).group(1)
    new = PIN_TEXT.search(pdf_pages(second)[0]).group(1)
    assert old != new

    async def outcomes() -> list[Outcome]:
        async with open_offline(gateway.config) as offline:
            book = LetterBook(offline, "demo")
            letter = await book.get(Address.parse(ANNA))
            assert letter is not None and letter.status is LetterStatus.PRINTED
            return [await book.confirm(Address.parse(ANNA), pin.replace("-", ""))
                    for pin in (old, new)]

    assert asyncio.run(outcomes()) == [Outcome.REFUSED, Outcome.CONFIRMED]


def test_request_errors_name_the_option_and_the_account_must_exist(gateway):
    bad = gateway("letters", "request", "--address", ANNA, *ANNA_POSTAL[:-4],
                  "--postcode", "3707", "--city", "Göttingen")
    assert bad.exit_code == 2 and "--postcode: A German postcode has five digits" in bad.output
    unknown = gateway("letters", "request", "--address", "nobody@example.net", *ANNA_POSTAL)
    assert unknown.exit_code == 1
    assert "no account for nobody@example.net: the recipient registers first" in unknown.output
    listed = gateway("letters", "list")
    assert listed.exit_code == 0 and listed.output.strip() == "no letters"
