"""A message's HTML body as the postbox page shows it: sanitised by nh3 (the Rust ammonia
library), so that nothing from a message ever runs or loads.

What is kept: text structure (paragraphs, lists, tables, emphasis, quotes) and links to http,
https and mailto addresses (opened with ``rel="noopener noreferrer nofollow"``). What goes:
scripts, styles and their content, event handlers, forms, frames, images (remote ones would tell
the sender when a message was read; the portal's CSP blocks them as a second line) and headings
(their levels would break the page's own outline; their text stays). Nothing is rewritten into
the page's ids: ``id`` and ``class`` attributes are dropped.
"""

from __future__ import annotations

import html
import re

import nh3

TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "dd", "del", "div", "dl",
    "dt", "em", "hr", "i", "ins", "kbd", "li", "ol", "p", "pre", "q", "s", "small", "span",
    "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
})
ATTRIBUTES = {"a": {"href", "title"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan",
                                                                          "scope"},
              "abbr": {"title"}, "*": {"lang", "dir"}}
DROPPED_WITH_CONTENT = frozenset({"script", "style", "title", "head", "template", "noscript",
                                  "object", "embed", "iframe", "frame", "frameset", "svg", "math",
                                  "textarea", "select", "button"})
URL_SCHEMES = frozenset({"http", "https", "mailto"})
_IMAGE = re.compile(r"<img\b", re.IGNORECASE)


def sanitise(body: str) -> str:
    """``body`` (an HTML document or fragment) as HTML that is safe to put into a page."""
    return nh3.clean(body, tags=set(TAGS), clean_content_tags=set(DROPPED_WITH_CONTENT),
                     attributes={k: set(v) for k, v in ATTRIBUTES.items()},
                     url_schemes=set(URL_SCHEMES), link_rel="noopener noreferrer nofollow",
                     strip_comments=True, url_relative="deny")


def had_images(body: str) -> bool:
    """Whether the message's HTML showed images (the page says they are not shown)."""
    return _IMAGE.search(body) is not None


def plain_text(body: str) -> str:
    """A plain-text body, escaped for a ``<pre>``-like block (the template keeps line breaks)."""
    return html.escape(body)
