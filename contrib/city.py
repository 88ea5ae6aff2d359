"""The city's plugin set (Stadt Göttingen).

Section 3 of the district's rule (seed 000_1253fbd76cd12a7e.txt) only points to an intranet page we
do not have. We model the city as: the same internal domains and the same rule for customer-related
mail as the district, protected with S/MIME where a valid certificate of the recipient is known,
otherwise with the password PDF. Never plain text: if neither can serve, the copy is quarantined.

S/MIME uses the ``strict`` profile (TR-02102-1 algorithms, only for recipients whose program is
known to read them, from harvested capabilities or ``[settings.smime.recipients]``): every other
recipient gets the password PDF, which every citizen can open.

A city tenant must name its S/MIME identity and trust anchors in ``[tenants.ID.settings.smime]``
(``pkcs12`` or ``certificate`` + ``private_key``, and ``trust_anchors``).
"""

from __future__ import annotations

from siegel import PluginSet, hookimpl
from siegel.contrib.district import DISTRICT_INTERNAL_DOMAINS, district_settings


@hookimpl
def siegel_register_plugin_sets() -> list[PluginSet]:
    return [PluginSet(
        name="city",
        description="Stadt Göttingen: S/MIME where a certificate is known, else password PDF",
        plugins=(
            "recipient_scope", "sender_trigger", "content_rules", "fit_for_email",
            "smime", "password_pdf", "accounts", "smtp_relay", "sender_notices", "audit_log",
        ),
        protection=("smime", "password_pdf"),
        internal_domains=DISTRICT_INTERNAL_DOMAINS,
        settings={**district_settings(), "smime": {"profile": "strict"}},
    )]
