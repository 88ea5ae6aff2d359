"""The fonts of the PDFs siegel and its plugins write (the password PDF, PIN letters):
DejaVu Sans, which covers the Latin, Greek and Cyrillic scripts, embedded as a subset.

reportlab keeps registered fonts in module-level state; :func:`register_fonts` is cheap after the
first call.
"""

from __future__ import annotations

import functools
import unicodedata
from importlib import resources
from typing import Final

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

FONT_REGULAR: Final = "SiegelDejaVuSans"
FONT_BOLD: Final = "SiegelDejaVuSans-Bold"


@functools.cache
def register_fonts() -> None:
    """Register :data:`FONT_REGULAR` and :data:`FONT_BOLD` (and their family) with reportlab."""
    folder = resources.files(__package__).joinpath("fonts")
    for font_name, file_name in (
        (FONT_REGULAR, "DejaVuSans.ttf"),
        (FONT_BOLD, "DejaVuSans-Bold.ttf"),
    ):
        with resources.as_file(folder.joinpath(file_name)) as path:
            pdfmetrics.registerFont(TTFont(font_name, str(path)))
    pdfmetrics.registerFontFamily(
        FONT_REGULAR,
        normal=FONT_REGULAR,
        bold=FONT_BOLD,
        italic=FONT_REGULAR,
        boldItalic=FONT_BOLD,
    )


def has_unrenderable(text: str) -> bool:
    """True if ``text`` has characters without a glyph in the font, or right-to-left
    characters (reportlab lays out without the bidi algorithm, so they come out reversed).
    Call :func:`register_fonts` first."""
    if text.isascii():
        return False
    covered = pdfmetrics.getFont(FONT_REGULAR).face.charToGlyph
    return any(
        (ord(ch) not in covered and ch != "\n") or unicodedata.bidirectional(ch) in ("R", "AL")
        for ch in set(text)
    )


__all__ = ["FONT_BOLD", "FONT_REGULAR", "has_unrenderable", "register_fonts"]
