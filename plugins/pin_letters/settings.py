"""The ``pin_letters`` settings section (``[settings.pin_letters]``, per tenant
``[tenants.ID.settings.pin_letters]``)."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from siegel import SettingError, Tenant
from siegel.settings import positive

SECTION = "pin_letters"


def _lines(_instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if len(value) > 3:
        raise SettingError(attribute.name, f"at most 3 lines fit under the name, not {len(value)}")
    for line in value:
        if len(line) > 60:
            raise SettingError(attribute.name, f"{line[:20]!r}...: at most 60 characters a line")


@attrs.frozen(kw_only=True)
class PinLetterSettings:
    #: How long a printed PIN can be entered, in days from printing.
    valid_days: float = attrs.field(default=30.0, validator=positive)
    #: Wrong entries after which the letter is void (a new one must be requested).
    max_attempts: int = attrs.field(default=5, validator=positive)
    #: The authority's letterhead: up to 3 lines under its name (address, telephone, web).
    letterhead_lines: tuple[str, ...] = attrs.field(default=(), validator=_lines)
    #: The small return line above the address (Rücksendeangabe); default: the tenant's name
    #: and the first letterhead line.
    return_address: str = ""
    #: DIN 5008 form: "B" (address field 45 mm from the top, for DL window envelopes) or "A".
    form: Literal["A", "B"] = "B"


def settings_of(tenant: Tenant) -> PinLetterSettings:
    value = tenant.settings[SECTION]
    assert isinstance(value, PinLetterSettings)
    return value
