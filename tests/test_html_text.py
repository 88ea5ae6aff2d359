"""The one HTML-to-text conversion (siegel.html_text): what it keeps of what a reader sees, and
that the content checks and the password PDF read HTML through it alike."""

from __future__ import annotations

import doctest
import re
from email.message import EmailMessage

import pytest

from siegel import html_text, mime
from siegel.mime import html_to_text

PAGE = """<html><head><title>Titel im Kopf</title><style>p { color: red }</style></head><body>
<h1>Bescheid</h1>
<p>Ihre <b>Kundennummer</b>: 12<i>34</i>56</p>
<img src="https://tracker.example/pixel.gif" alt="Stadtwappen">
<img src="leer.gif" alt="">
<ul><li>Antrag</li><li>Nachweis</li></ul>
<ol><li>erstens<li>zweitens</ol>
<table><caption>Gebühren</caption><tr><th>Posten</th><th>Betrag</th></tr>
<tr><td>Ausweis</td><td>37,00 €</td></tr></table>
<select><option>Köln</option><option>Bonn</option></select>
<p><a href="https://amt.example/termin">Termin buchen</a>,
<a href="mailto:post@amt.example">post@amt.example</a>,
<a href="javascript:alert(1)">hier</a>, <a href="#oben">nach oben</a></p>
<!-- intern: Sachbearbeiterin Meier -->
<div title="Kd.-Nr. 998877" data-akte="AZ 17/2026">Text</div>
<script>var geheim = "im Skript";</script>
</body></html>"""


def test_the_page_text_keeps_what_a_reader_sees() -> None:
    text = html_to_text(PAGE)
    lines = text.split("\n")
    assert lines[0] == "Bescheid"
    assert "Ihre Kundennummer: 123456" in lines  # inline tags join their neighbours
    assert "[Stadtwappen]" in lines  # alternative text; an empty one adds nothing
    assert "[]" not in text
    assert "• Antrag\n• Nachweis" in text  # list items, also unclosed ones
    assert "• erstens\n• zweitens" in text
    assert "Gebühren" in lines  # a table caption on a line of its own
    assert re.search(r"Posten  \|  Betrag\n+Ausweis  \|  37,00 €", text)  # cells separated
    assert re.search(r"Köln\n+Bonn", text)  # options apart, not "KölnBonn"
    # A link's target where the reader would follow it; not repeated where the text shows it;
    # never a script or a jump within the page.
    assert "Termin buchen <https://amt.example/termin>" in text
    assert "post@amt.example," in text and "<mailto:" not in text
    assert "hier," in text and "javascript" not in text
    assert "nach oben" in text and "#oben" not in text
    assert "Text" in lines


def test_the_page_text_leaves_out_what_only_the_source_shows() -> None:
    text = html_to_text(PAGE)
    for hidden in ("Titel im Kopf", "color", "tracker", "leer.gif", "intern", "998877",
                   "AZ 17/2026", "im Skript"):
        assert hidden not in text


def test_with_source_the_content_checks_also_get_what_the_source_shows() -> None:
    page = html_to_text(PAGE)
    checked = html_to_text(PAGE, with_source=True)
    assert checked.startswith(page + "\n")  # the same page text, then the source's
    source = checked[len(page):].split("\n")
    for shown in ("Titel im Kopf", "p { color: red }", "https://tracker.example/pixel.gif",
                  " intern: Sachbearbeiterin Meier ", "Kd.-Nr. 998877", "AZ 17/2026",
                  'var geheim = "im Skript";', "javascript:alert(1)"):
        assert shown in source


def test_style_attributes_are_not_source_text() -> None:
    assert html_to_text('<p style="color: red">rot</p>', with_source=True) == "rot"


@pytest.mark.parametrize(("markup", "text"), [
    ("<pre>Aktenzeichen:\n  4711/2025</pre>", "Aktenzeichen:\n  4711/2025"),
    ("Zeile 1<br>Zeile 2<hr>Zeile 3", "Zeile 1\nZeile 2\n" + "—" * 20 + "\nZeile 3"),
    ("<p>Absatz  mit\n Umbruch</p><p>zweiter</p>", "Absatz mit Umbruch\n\nzweiter"),
    ("<html><head><title>x</title><body><p>Sichtbar</p>", "Sichtbar"),  # unclosed head
    ("Frau&nbsp;M&uuml;ller &amp; Co &#8364;", "Frau Müller & Co €"),
    ("a\x00b", "a\ufffdb"),  # NUL is shown as the replacement character, as browsers do
    ("", ""),
])
def test_structure(markup: str, text: str) -> None:
    assert html_to_text(markup) == text


def test_the_examples_in_the_docstrings_hold() -> None:
    result = doctest.testmod(html_text)
    assert result.attempted >= 3
    assert result.failed == 0


def html_message(markup: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@amt.example", "b@example.org", "HTML"
    message.set_content(markup, subtype="html")
    return message


def test_the_content_checks_read_html_through_it() -> None:
    reading = mime.read_message(html_message(PAGE))
    # The part's header fields are read too (as the source view shows them), as their own text.
    [part] = [text for text in reading.texts if not text.text.startswith("From: ")]
    assert part.content_type == "text/html"
    assert part.text == html_to_text(PAGE + "\n", with_source=True)
    # What the old classifier conversion dropped from the page's reading is there.
    assert "Termin buchen <https://amt.example/termin>" in part.text
    assert "Posten  |  Betrag" in part.text
