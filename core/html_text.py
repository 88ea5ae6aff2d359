"""The one HTML-to-text conversion of siegel: what a reader of an HTML mail sees, as text.

Used by the content checks (:func:`siegel.mime.read_message`) and by the password PDF, which
shows an HTML-only message as this text. The standard library's HTML parser (the tokenizer that
browsers' rules describe) rather than regular expressions or a converter such as html2text:
nothing in the markup is loaded or run, and every character a reader sees is kept.

What the page shows: text, with paragraphs and headings apart (a blank line), line breaks and
other block elements on lines of their own, list items as ``• item``, table cells separated by
``  |  ``, preformatted text with its lines, an image's alternative text as ``[alt]``, and a
link's text followed by its target ``<https://...>`` where the target is a web or mail address
that the text does not already show (the target is what the reader would follow). Inline tags
join their neighbours (``12<b>3</b>45`` reads ``12345``).

What only the source shows (the content of ``script``, ``style``, ``template``, ``title`` and
``head``, comments, and attribute values) is left out of the page's text. The content checks
ask for it too (``with_source=True``): it follows the page's text on lines of its own, because a
recipient can read it in the source view of a mail program.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Final

__all__ = ["html_to_text"]

_SOURCE_ONLY: Final = frozenset({"script", "style", "template", "title", "head"})
_BLOCKS: Final = frozenset({
    "address", "article", "aside", "blockquote", "caption", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "main",
    "nav", "ol", "option", "p", "pre", "section", "table", "tbody", "thead", "tfoot", "tr", "ul",
})
#: Block elements that stand apart by a blank line rather than a line break.
_PARAGRAPHS: Final = frozenset({"p", "h1", "h2", "h3", "table"})
_SHOWN_LINK: Final = re.compile(r"(?i)(https?|mailto):")
# Marks a line break inside <pre> until the whitespace of the rest has been collapsed.
_PRE_BREAK: Final = "\x00"


class _HtmlText(HTMLParser):
    """Collects the page's text and, apart, what only the source shows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.shown: list[str] = []
        self.source: list[str] = []
        self._source_depth = 0
        self._pre_depth = 0
        self._links: list[str | None] = []
        self._link_text_start: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.source.extend(value for name, value in attrs if value and name != "style")
        if tag == "body":
            # An unclosed <head> must not swallow the body.
            self._source_depth = 0
            return
        if tag in _SOURCE_ONLY:
            self._source_depth += 1
            return
        if self._source_depth:
            return
        attributes = dict(attrs)
        if tag == "br":
            self.shown.append("\n")
        elif tag == "li":
            self.shown.append("\n• ")
        elif tag in ("td", "th"):
            self.shown.append("\t")
        elif tag == "hr":
            self.shown.append("\n" + "—" * 20 + "\n")
        elif tag == "img":
            alt = (attributes.get("alt") or "").strip()
            if alt:
                self.shown.append(f"[{alt}]")
        elif tag == "a":
            self._links.append(attributes.get("href"))
            self._link_text_start.append(len(self.shown))
        elif tag in _BLOCKS:
            self.shown.append("\n\n" if tag in _PARAGRAPHS else "\n")
        if tag == "pre":
            self._pre_depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in ("br", "hr", "img", "a"):
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SOURCE_ONLY:
            self._source_depth = max(0, self._source_depth - 1)
            return
        if self._source_depth:
            return
        if tag == "a" and self._links:
            href = (self._links.pop() or "").strip()
            start = self._link_text_start.pop()
            text = "".join(self.shown[start:]).strip()
            # Links become visible text, never clickable: the reader sees where it points.
            if _SHOWN_LINK.match(href) and href.removeprefix("mailto:") != text:
                self.shown.append(f" <{href}>")
        elif tag in _BLOCKS:
            self.shown.append("\n\n" if tag in _PARAGRAPHS else "\n")
        if tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)

    def handle_data(self, data: str) -> None:
        # As the HTML standard does: a NUL character is shown as the replacement character.
        data = data.replace("\x00", "\ufffd")
        if self._source_depth:
            self.source.append(data)
        elif self._pre_depth:
            # Keep line structure: protect newlines from the whitespace collapse below.
            self.shown.append(data.replace("\n", _PRE_BREAK))
        else:
            self.shown.append(re.sub(r"\s+", " ", data))

    def handle_comment(self, data: str) -> None:
        self.source.append(data)

    def page_text(self) -> str:
        lines = []
        for line in "".join(self.shown).split("\n"):
            line = re.sub(r"[ \t]*\t[ \t]*", "\t", line).strip(" ")
            line = line.strip("\t").replace("\t", "  |  ")
            lines.append(line.replace(_PRE_BREAK, "\n"))
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")

    def source_text(self) -> str:
        return "\n".join(re.sub(r"[ \t\r\f\v]+", " ", part) for part in self.source)


def html_to_text(markup: str, *, with_source: bool = False) -> str:
    """The text a reader of the HTML ``markup`` sees, as the password PDF shows it (see
    :mod:`siegel.html_text`); nothing in it is loaded or run.

    With ``with_source`` (for content checks) what only the page's source shows follows on
    lines of its own: the content of script, style, template, title and head elements,
    comments and attribute values other than ``style``.

    >>> html_to_text('<p>Hallo <b>Frau Müller</b></p><ul><li>eins<li>zwei</ul>')
    'Hallo Frau Müller\\n\\n• eins\\n• zwei'
    >>> html_to_text('<a href="https://amt.example/a">Antrag</a> <img src="x.png" alt="Wappen">')
    'Antrag <https://amt.example/a> [Wappen]'
    >>> html_to_text('<p title="Kd.-Nr. 4711">Text<!-- intern --></p>', with_source=True)
    'Text\\nKd.-Nr. 4711\\n intern '
    """
    parser = _HtmlText()
    parser.feed(markup)
    parser.close()
    text = parser.page_text()
    if with_source and parser.source:
        text += "\n" + parser.source_text()
    return text
