"""The postbox's settings (``[settings.postbox]``, ``[tenants.ID.settings.postbox]``)."""

from __future__ import annotations

import re
from typing import Literal

import attrs

from siegel import Address, ConfigPath, InvalidAddress, SettingError
from siegel.portal import FILE_SIGNATURES
from siegel.settings import not_negative, positive

SECTION = "postbox"


def _topic_name(_instance: object, _attribute: object, value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        raise SettingError("name", f"{value!r}: letters, digits, '.', '-' and '_' only")


def _address(_instance: object, _attribute: object, value: str) -> None:
    try:
        Address.parse(value)
    except InvalidAddress as exc:
        raise SettingError("recipient", f"{value!r} is not a mail address: {exc}") from None


def _upload_types(_instance: object, attribute: attrs.Attribute[tuple[str, ...]],
                  value: tuple[str, ...]) -> None:
    unknown = [t for t in value if t not in FILE_SIGNATURES]
    if unknown or not value:
        raise SettingError(attribute.name, f"{', '.join(unknown) or 'nothing'}: choose from "
                           f"{', '.join(FILE_SIGNATURES)} (checked by content)")


@attrs.frozen(kw_only=True)
class TopicSetting:
    """A topic users may write a new message about (``[[...postbox.topics]]``)."""

    name: str = attrs.field(validator=_topic_name)
    label_de: str
    label_en: str
    #: The authority's mailbox that receives messages on this topic.
    recipient: str = attrs.field(validator=_address)


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
    #: Whether users may write new messages to the authority (replies are always possible).
    new_messages: bool = True
    #: The topics of new messages (plugins may add their own through
    #: ``siegel_register_postbox_topics``). Without any topic there is no "new message" page.
    topics: tuple[TopicSetting, ...] = ()
    #: Attachments of replies and new messages: how many, how large each, which types.
    upload_max_files: int = attrs.field(default=5, validator=positive)
    upload_max_kb: int = attrs.field(default=1024, validator=positive)
    upload_types: tuple[str, ...] = attrs.field(default=tuple(FILE_SIGNATURES),
                                                validator=_upload_types)
