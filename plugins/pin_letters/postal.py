"""A postal address in Germany, checked as Deutsche Post reads the address field of a letter
(DIN 5008): name, an optional supplement (c/o, floor), street and house number or a
post office box, a five-digit postcode and the town. Letters go to addresses in Germany only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

import attrs

from siegel import Text
from siegel.pdf_fonts import has_unrenderable, register_fonts

#: Characters of one line of the address field (85 mm at 10 pt).
MAX_LINE: Final = 40
_POSTCODE = re.compile(r"\d{5}")
# A house number: digits, perhaps a letter or a range ("12", "12a", "12 a", "3-5", "7/1").
_STREET = re.compile(r"^(?P<street>.*\D)\s+(?P<number>\d+\s?[a-zA-Z]?(?:\s?[-/]\s?\d+\s?[a-zA-Z]?)?)$")
_POST_BOX = re.compile(r"^Postfach\s+\d[\d ]*$", re.IGNORECASE)

FIELDS: Final = ("name", "supplement", "street", "postcode", "city")

_REQUIRED: Final = {
    "name": Text(de="Geben Sie Ihren Vor- und Nachnamen ein.",
                 en="Enter your first name and surname."),
    "street": Text(de="Geben Sie Straße und Hausnummer (oder Postfach) ein.",
                   en="Enter the street and house number (or a post office box)."),
    "postcode": Text(de="Geben Sie die Postleitzahl ein.", en="Enter the postcode."),
    "city": Text(de="Geben Sie den Ort ein.", en="Enter the town or city."),
}


@attrs.frozen(kw_only=True)
class PostalAddress:
    """Where a letter goes (already checked: build it with :func:`check_address`)."""

    name: str
    supplement: str = ""
    street: str
    postcode: str
    city: str

    @property
    def lines(self) -> tuple[str, ...]:
        """The lines of the address field, top to bottom (DIN 5008: no blank line, the town
        line last)."""
        return tuple(line for line in (self.name, self.supplement, self.street,
                                       f"{self.postcode} {self.city}") if line)

    def as_dict(self) -> dict[str, str]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PostalAddress:
        return cls(**{name: str(data.get(name, "")) for name in FIELDS})


def _clean(value: str) -> str:
    value = unicodedata.normalize("NFC", value)
    return " ".join(value.split())


def check_address(form: Mapping[str, Any]) -> tuple[PostalAddress | None, dict[str, Text]]:
    """The address from a form (``name``, ``supplement``, ``street``, ``postcode``, ``city``),
    or ``None`` and what is wrong, by field, in both languages."""
    register_fonts()
    values = {name: _clean(str(form.get(name) or "")) for name in FIELDS}
    errors: dict[str, Text] = {}
    for name, value in values.items():
        if not value:
            if name in _REQUIRED:
                errors[name] = _REQUIRED[name]
            continue
        if any(unicodedata.category(c).startswith("C") for c in value):
            errors[name] = Text(de="Dieses Feld enthält Steuerzeichen.",
                                en="This field contains control characters.")
        elif len(value) > MAX_LINE:
            errors[name] = Text(
                de=f"Höchstens {MAX_LINE} Zeichen (eine Zeile im Anschriftfeld).",
                en=f"At most {MAX_LINE} characters (one line of the address field).")
        elif has_unrenderable(value):
            errors[name] = Text(
                de="Dieses Feld enthält Zeichen, die wir nicht drucken können "
                   "(bitte lateinische Schrift).",
                en="This field contains characters we cannot print (please use Latin script).")
    street = values["street"]
    if "street" not in errors and street and not (_STREET.match(street)
                                                  or _POST_BOX.match(street)):
        errors["street"] = Text(
            de="Geben Sie die Hausnummer nach der Straße an (z. B. „Hauptstraße 5a“) oder ein "
               "Postfach („Postfach 12 34 56“).",
            en="Give the house number after the street (e.g. “Hauptstraße 5a”) or a post "
               "office box (“Postfach 12 34 56”).")
    postcode = values["postcode"]
    if "postcode" not in errors and postcode and (not _POSTCODE.fullmatch(postcode)
                                                  or postcode.startswith("00")):
        errors["postcode"] = Text(
            de="Eine Postleitzahl in Deutschland hat fünf Ziffern (z. B. 37073). Briefe gehen "
               "nur an Anschriften in Deutschland.",
            en="A German postcode has five digits (e.g. 37073). Letters go to addresses in "
               "Germany only.")
    city = values["city"]
    if "city" not in errors and city and any(c.isdigit() for c in city):
        errors["city"] = Text(de="Geben Sie den Ort ohne Ziffern an.",
                              en="Give the town without digits.")
    if errors:
        return None, errors
    return PostalAddress(**values), {}
