"""WCAG 2.1 AA contrast of the portal's colours, computed from portal.css.

Text needs 4.5:1 (1.4.3); input borders and focus indicators 3:1 (1.4.11). axe checks the
rendered pages too (test_portal_browser.py); this test names the pair that fails.
"""

from __future__ import annotations

import re

import pytest

from siegel.portal.app import STATIC

CSS = (STATIC / "portal.css").read_text(encoding="utf-8")
COLOURS = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})\s*;", CSS))


def luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_known_values():
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#767676", "#ffffff"), 2) == 4.54


@pytest.mark.parametrize(("foreground", "background", "minimum"), [
    ("text", "page-bg", 4.5),
    ("muted-text", "page-bg", 4.5),
    ("link", "page-bg", 4.5),
    ("link-visited", "page-bg", 4.5),
    ("link-hover", "page-bg", 4.5),
    ("error", "page-bg", 4.5),
    ("header-text", "header-bg", 4.5),
    ("footer-text", "footer-bg", 4.5),
    ("link", "footer-bg", 4.5),
    ("button-text", "button-bg", 4.5),
    ("button-text", "button-hover-bg", 4.5),
    ("focus-text", "focus-bg", 4.5),
    ("text", "notice-bg", 4.5),
    ("link", "notice-bg", 4.5),
    ("text", "success-bg", 4.5),
    ("input-border", "page-bg", 3.0),
    ("error", "page-bg", 3.0),
    ("focus-text", "page-bg", 3.0),      # the dark focus outline on light backgrounds
    ("focus-bg", "header-bg", 3.0),      # the yellow focus background in the dark header
])
def test_contrast(foreground, background, minimum):
    ratio = contrast(COLOURS[foreground], COLOURS[background])
    assert ratio >= minimum, f"{foreground} on {background}: {ratio:.2f}:1 < {minimum}:1"


def test_every_colour_in_the_stylesheet_is_a_checked_variable():
    """Colours outside :root would escape the contrast check."""
    body = CSS.split("}", 1)[1]   # everything after the :root block
    literal = re.findall(r"#[0-9a-fA-F]{3,6}\b", body)
    assert literal == []
