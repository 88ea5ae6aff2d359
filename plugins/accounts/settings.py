"""``[settings.accounts]``: the sign-in's rules for a tenant."""

from __future__ import annotations

from typing import Literal

import attrs

from siegel.settings import positive

SECTION = "accounts"


@attrs.frozen(kw_only=True)
class AccountsSettings:
    #: "required": after the password every account must use a second factor (TOTP or a
    #: passkey), and one without is led to set one up before it reaches anything else;
    #: "optional": each account decides.
    second_factor: Literal["optional", "required"] = "optional"
    #: The shortest password the account page accepts (plugins such as the password PDF may
    #: ask for more; the longest rule wins).
    minimum_password_length: int = attrs.field(default=12, validator=positive)
    #: Sender of the account's mails (password changed); default: the tenant's notice address.
    mail_from: str | None = None
