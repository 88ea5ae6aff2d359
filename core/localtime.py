"""Times as clerks and citizens read them: in the tenant's time zone, with the zone named.

Everything inside siegel is UTC (the store, audit events, deadlines); a time becomes local only
where a person reads it: notices, invitations, password mails, replies, PDF headers, portal pages.
Month names and zone abbreviations come from the Unicode CLDR through Babel, so German readers
see "MEZ"/"MESZ" and English readers "CET"/"CEST", and a zone without a common abbreviation is
named by its offset ("GMT-05:00") rather than not at all.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime

from babel.dates import format_datetime

#: The zone a tenant's times are shown in unless it sets ``time_zone``.
DEFAULT_TIME_ZONE = "Europe/Berlin"

# English as written in Europe (CLDR "en_150"): it names the central European zone CET/CEST,
# where plain "en" (US English) has only "GMT+1".
_LOCALES = {"de": "de_DE", "en": "en_150"}
_PATTERNS = {"de": "d. MMMM y, HH:mm 'Uhr'", "en": "d MMMM y, HH:mm"}


class UnknownTimeZone(ValueError):
    """A time zone name the zoneinfo database does not know."""


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone called ``name`` (IANA, e.g. ``Europe/Berlin``); :class:`UnknownTimeZone` with
    what to do otherwise."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        if not zoneinfo.available_timezones():
            raise UnknownTimeZone(
                f"{name!r}: this system has no time zone data (install Debian's tzdata or the "
                "tzdata Python package)") from None
        raise UnknownTimeZone(f"unknown time zone {name!r}; use an IANA name such as "
                              f"{DEFAULT_TIME_ZONE!r} or 'UTC'") from None


def zone_name(moment: datetime, zone: zoneinfo.ZoneInfo, language: str) -> str:
    """The zone's name at ``moment`` as readers of ``language`` know it: MEZ/MESZ, CET/CEST,
    UTC; or the offset (GMT-05:00) where the language has no short name for it."""
    locale = _LOCALES.get(language, _LOCALES["en"])
    name = str(format_datetime(moment, "zzz", tzinfo=zone, locale=locale))
    if name[:1] in "+-":
        name = str(format_datetime(moment, "ZZZZ", tzinfo=zone, locale=locale))
    return name


def format_moment(moment: datetime, zone: zoneinfo.ZoneInfo, language: str) -> str:
    """``moment`` (timezone-aware) in ``zone`` for readers of ``language`` ("de" or "en"):
    "3. Dezember 2026, 17:05 Uhr (MEZ)" or "3 December 2026, 17:05 CET"."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no zone to convert from; use an aware one")
    locale = _LOCALES.get(language, _LOCALES["en"])
    pattern = _PATTERNS.get(language, _PATTERNS["en"])
    text = str(format_datetime(moment, pattern, tzinfo=zone, locale=locale))
    name = zone_name(moment, zone, language)
    return f"{text} ({name})" if language == "de" else f"{text} {name}"
