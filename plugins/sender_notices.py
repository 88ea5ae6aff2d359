"""Built-in notifier: tells the sender what happened to their message, in German and English.

Notices go only to senders inside the tenant's trusted network: they may name the subject, and a
notice to an outside address would be backscatter. They are sent with the null sender and
``Auto-Submitted: auto-generated`` (RFC 3834) so that no mail system answers them.
"""

from __future__ import annotations

import email.utils
from pathlib import Path
from typing import Literal

import attrs

from siegel import (
    ConfigPath,
    ConfigSection,
    Notice,
    NoticeKind,
    Notifier,
    SettingError,
    SystemMail,
    Tenant,
    hookimpl,
    mailtext,
)

SECTION = "sender_notices"

_ALL_KINDS = tuple(kind.value for kind in NoticeKind)


def _known_kinds(_instance: object, _attribute: object, value: tuple[str, ...]) -> None:
    unknown = sorted(set(value) - set(_ALL_KINDS))
    if unknown:
        raise SettingError("send", f"unknown notice kinds {unknown}; known: {list(_ALL_KINDS)}")


def _template_folder(_instance: object, _attribute: object, value: ConfigPath | None) -> None:
    if value is not None and not Path(value).is_dir():
        raise SettingError("templates", f"{value} is not a folder")


@attrs.frozen(kw_only=True)
class SenderNoticeSettings:
    #: Which notices senders get.
    send: tuple[str, ...] = attrs.field(default=_ALL_KINDS, validator=_known_kinds)
    #: Languages, in order; German first by default.
    languages: tuple[Literal["de", "en"], ...] = ("de", "en")
    #: Whether notices repeat the subject (it can contain personal data).
    include_subject: bool = True
    #: A folder with the tenant's own texts, ``de/<kind>.txt`` and ``en/<kind>.txt`` (first line:
    #: the subject; then the body with $recipient, $subject, $received, $message_id, $reasons).
    #: Missing files fall back to the built-in texts.
    templates: ConfigPath | None = attrs.field(default=None, validator=_template_folder)


def render(notice: Notice, tenant: Tenant, settings: SenderNoticeSettings) -> mailtext.Mail:
    assert notice.sender is not None
    values: dict[str, dict[str, str]] = {}
    for language in settings.languages:
        withheld = "(nicht angezeigt)" if language == "de" else "(not shown)"
        values[language] = {
            "recipient": notice.recipient.display,
            "subject": (notice.subject or "") if settings.include_subject else withheld,
            "received": tenant.format_time(notice.received_at, language),
            "message_id": notice.message_id,
            "reasons": "\n".join(f"  - {r.get(language)}" for r in notice.reasons) or "  -",
        }
    message = mailtext.compose(
        package="siegel.plugins", name=notice.kind.value, languages=settings.languages,
        values=values, sender=email.utils.formataddr((f"siegel – {tenant.name}", tenant.notice_from)),
        to=notice.sender.display, override=settings.templates,
        subject_suffix=f": {notice.subject}" if settings.include_subject and notice.subject else "",
        message_id_domain=tenant.notice_from.rpartition("@")[2])
    message.set("Date", email.utils.format_datetime(notice.at.astimezone(tenant.time_zone)))
    message.add("X-Siegel-Notice", notice.kind.value)
    message.add("X-Siegel-Message-Id", notice.message_id)
    return message


async def notify(notice: Notice, tenant: Tenant) -> list[SystemMail]:
    settings: SenderNoticeSettings = tenant.settings[SECTION]
    if notice.kind.value not in settings.send or notice.sender is None:
        return []
    if tenant.internal.match(notice.sender.domain) is None:
        return []
    message = render(notice, tenant, settings)
    return [SystemMail(mail_from="", recipients=(str(notice.sender),),
                       raw=message.to_bytes(), channel=tenant.delivery_channel)]


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=SenderNoticeSettings,
                          description="Which notices senders get, and in which languages")]


@hookimpl
def siegel_register_notifiers() -> list[Notifier]:
    return [Notifier(name="sender", notify=notify,
                     description="Tells internal senders about quarantine, delay, failure, success")]
