"""Built-in notifier: tells the sender what happened to their message, in German and English.

Notices go only to senders inside the tenant's trusted network: they may name the subject, and a
notice to an outside address would be backscatter. They are sent with the null sender and
``Auto-Submitted: auto-generated`` (RFC 3834) so that no mail system answers them.
"""

from __future__ import annotations

import email.utils
import string
from email.message import EmailMessage
from email.policy import SMTP
from importlib import resources
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


def _template(language: str, kind: NoticeKind, folder: ConfigPath | None
              ) -> tuple[str, string.Template]:
    own = Path(folder, language, f"{kind.value}.txt") if folder else None
    if own is not None and own.is_file():
        text = own.read_text(encoding="utf-8")
    else:
        text = resources.files("siegel.plugins").joinpath(
            "templates", language, f"{kind.value}.txt").read_text(encoding="utf-8")
    title, _, body = text.partition("\n")
    return title.strip(), string.Template(body)


def render(notice: Notice, tenant: Tenant, settings: SenderNoticeSettings) -> EmailMessage:
    assert notice.sender is not None
    titles: list[str] = []
    bodies: list[str] = []
    for language in settings.languages:
        title, template = _template(language, notice.kind, settings.templates)
        titles.append(title)
        withheld = "(nicht angezeigt)" if language == "de" else "(not shown)"
        bodies.append(template.safe_substitute(
            recipient=notice.recipient.display,
            subject=(notice.subject or "") if settings.include_subject else withheld,
            received=notice.at.strftime("%d.%m.%Y %H:%M UTC") if language == "de"
            else notice.at.strftime("%Y-%m-%d %H:%M UTC"),
            message_id=notice.message_id,
            reasons="\n".join(f"  - {r.get(language)}" for r in notice.reasons) or "  -",
        ))
    message = EmailMessage(policy=SMTP)
    message["From"] = email.utils.formataddr((f"siegel – {tenant.name}", tenant.notice_from))
    message["To"] = notice.sender.display
    subject = " / ".join(titles)
    if settings.include_subject and notice.subject:
        subject += f": {notice.subject}"
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(notice.at)
    message["Message-ID"] = email.utils.make_msgid(domain=tenant.notice_from.rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"
    message["X-Siegel-Notice"] = notice.kind.value
    message["X-Siegel-Message-Id"] = notice.message_id
    separator = "\n\n" + "-" * 72 + "\n\n"
    message.set_content(separator.join(bodies), charset="utf-8")
    return message


async def notify(notice: Notice, tenant: Tenant) -> list[SystemMail]:
    settings: SenderNoticeSettings = tenant.settings[SECTION]
    if notice.kind.value not in settings.send or notice.sender is None:
        return []
    if tenant.internal.match(notice.sender.domain) is None:
        return []
    message = render(notice, tenant, settings)
    return [SystemMail(mail_from="", recipients=(str(notice.sender),),
                       raw=message.as_bytes(policy=SMTP), channel=tenant.delivery_channel)]


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=SenderNoticeSettings,
                          description="Which notices senders get, and in which languages")]


@hookimpl
def siegel_register_notifiers() -> list[Notifier]:
    return [Notifier(name="sender", notify=notify,
                     description="Tells internal senders about quarantine, delay, failure, success")]
