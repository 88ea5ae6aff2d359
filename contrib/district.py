"""The district's plugin set (Landkreis/Stadt Göttingen, Jobcenter).

Implements the organisational rule "E-Mail-Verschlüsselung" (seed 000_1253fbd76cd12a7e.txt):

* internal are the four domains named in section 1: goettingen.de, landkreisgoettingen.de,
  gab-suedniedersachsen.de, arbeitsagentur.de (exact match; ``x@evil-goettingen.de`` and
  ``x@goettingen.de.evil.example`` are external);
* customer-related mail (Kundenbezug) to anyone else must be encrypted: the sender marks it with the
  "Automatisch verschlüsseln" trigger, and content rules catch customer and
  Bedarfsgemeinschaft numbers as a safety net;
* mail without customer reference may go to outside recipients as it is;
* e-mail is not suitable for content with legal consequences: the sender is warned.

* protection: password-protected PDF (AES-256); on first contact the recipient chooses the password
  within 5 days and the message is held until then; every carrier mail has a reply link and a
  password link. Set ``[settings.password_pdf] portal_url`` to the portal's public address.
"""

from __future__ import annotations

from typing import Any

from siegel import PluginSet, hookimpl

DISTRICT_INTERNAL_DOMAINS = (
    "goettingen.de",
    "landkreisgoettingen.de",
    "gab-suedniedersachsen.de",
    "arbeitsagentur.de",
)

#: Kundennummer of the Bundesagentur für Arbeit: three digits, a letter, six digits (123A456789).
CUSTOMER_NUMBER = r"(?<![0-9A-Za-z])\d{3}[A-Z]\d{6}(?![0-9A-Za-z])"
#: Nummer der Bedarfsgemeinschaft: five digits, "BG", seven digits (12345BG1234567).
BG_NUMBER = r"(?<![0-9A-Za-z])\d{5}\s?BG\s?\d{7}(?![0-9A-Za-z])"


def district_settings() -> dict[str, Any]:
    """The district's classification and PDF settings (the city uses them too)."""
    return {
        "recipient_scope": {"external": "plain"},
        "sender_trigger": {
            "header": "X-Siegel-Encrypt",
            "subject_tags": ["[verschlüsseln]", "[Automatisch verschlüsseln]", "[secure]"],
        },
        "content_rules": {"rules": [
            {"name": "kundennummer", "pattern": CUSTOMER_NUMBER, "ignore_case": False,
             "description_de": "Kundennummer", "description_en": "customer number"},
            {"name": "bg-nummer", "pattern": BG_NUMBER, "ignore_case": False,
             "description_de": "Nummer der Bedarfsgemeinschaft",
             "description_en": "benefit community number"},
        ]},
        "password_pdf": {"hold_days": 5, "carrier_subject": "neutral"},
        "fit_for_email": {
            "phrases": [
                "Rechtsfolgenbelehrung", "Rechtsbehelfsbelehrung", "Mitwirkungspflicht",
                "Mitwirkungspflichten", "Versagung", "Entziehung", "Sanktion",
                "Leistungsminderung",
            ],
            "action": "warn",
        },
    }


@hookimpl
def siegel_register_plugin_sets() -> list[PluginSet]:
    return [PluginSet(
        name="district",
        description="Jobcenter Landkreis/Stadt Göttingen: customer-related mail leaves encrypted",
        plugins=(
            "recipient_scope", "sender_trigger", "content_rules", "fit_for_email",
            "password_pdf", "accounts", "smtp_relay", "sender_notices", "audit_log",
        ),
        protection=("password_pdf",),
        internal_domains=DISTRICT_INTERNAL_DOMAINS,
        settings=district_settings(),
    )]
