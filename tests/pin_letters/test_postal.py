"""German postal addresses as the letter's address field needs them."""

from __future__ import annotations

import pytest

from siegel.plugins.pin_letters.postal import check_address

GOOD = {"name": "Anna Müller", "street": "Hauptstraße 5a", "postcode": "37073",
        "city": "Göttingen"}


@pytest.mark.parametrize("street", ["Hauptstraße 5a", "Am Markt 1-3", "Weender Landstr. 12 b",
                                    "Straße des 17. Juni 100", "Postfach 12 34 56", "Kurze Str. 7/1"])
def test_streets_with_a_number_or_a_post_office_box(street):
    address, errors = check_address({**GOOD, "street": street})
    assert errors == {} and address is not None
    assert address.lines[-2:] == (street, "37073 Göttingen")


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("name", "", "Vor- und Nachnamen"),
    ("street", "Hauptstraße", "Hausnummer"),
    ("postcode", "3707", "fünf Ziffern"),
    ("postcode", "00123", "fünf Ziffern"),
    ("postcode", "SW1A 1AA", "nur an Anschriften in Deutschland"),
    ("city", "Göttingen 3", "ohne Ziffern"),
    ("name", "A" * 41, "Höchstens 40 Zeichen"),
    ("name", "Anna\u0000Müller", "Steuerzeichen"),
    ("name", "محمد علي", "nicht drucken"),
])
def test_each_problem_is_named_at_its_field(field, value, fragment):
    address, errors = check_address({**GOOD, field: value})
    assert address is None
    assert list(errors) == [field]
    assert fragment in errors[field].de and errors[field].en


def test_spaces_are_tidied_and_the_supplement_is_optional():
    address, _ = check_address({**GOOD, "name": "  Anna   Müller ", "supplement": " c/o  Weiß "})
    assert address is not None
    assert address.lines == ("Anna Müller", "c/o Weiß", "Hauptstraße 5a", "37073 Göttingen")
