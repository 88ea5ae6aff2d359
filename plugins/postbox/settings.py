"""The postbox's settings (``[settings.postbox]``, ``[tenants.ID.settings.postbox]``)."""

from __future__ import annotations

from typing import Literal

import attrs

from siegel import ConfigPath
from siegel.settings import not_negative, positive

SECTION = "postbox"


@attrs.frozen(kw_only=True)
class PostboxSettings:
    #: How long the first message for an address without an account waits for the registration
    #: (the invitation's link is valid as long).
    hold_days: float = attrs.field(default=5.0, validator=positive)
    #: Whom the method serves: "everyone" (without an account: invitation, the copy held), or
    #: only "account" holders (others go to the next method in the tenant's ``protection``).
    serve: Literal["everyone", "account"] = "everyone"
    #: Messages expire (are erased) this many days after delivery; 0: never.
    retention_days: float = attrs.field(default=365.0, validator=not_negative)
    #: The account is told this many days before its messages expire.
    expiry_notice_days: float = attrs.field(default=14.0, validator=not_negative)
    #: Deleted messages stay in the bin this many days, then are erased.
    bin_days: float = attrs.field(default=30.0, validator=positive)
    #: The sender is told when a message lies unopened this many days; 0: never.
    not_retrieved_days: float = attrs.field(default=7.0, validator=not_negative)
    #: Notice mails to the account: "neutral" subject (default), or the message's "original" one.
    notice_subject: Literal["neutral", "original"] = "neutral"
    #: Whether an account that never chose gets notice mails (seed 003: opt-in, so off).
    notices_default: bool = False
    minimum_password_length: int = attrs.field(default=12, validator=positive)
    #: Sender of invitations and notice mails; default: the tenant's notice address.
    mail_from: str | None = None
    #: A folder with the tenant's own texts (``de/invitation.txt`` ...), as for the password PDF.
    templates: ConfigPath | None = None
