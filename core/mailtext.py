"""Texts of the mails siegel writes itself (notices, invitations): German first, then English.

A text template is a file ``LANG/NAME.txt`` in a package (or a tenant's own folder, which wins):
the first line is the subject, the rest the body, with ``$name`` placeholders
(:class:`string.Template`). :func:`compose` puts the languages one after the other into one mail.
"""

from __future__ import annotations

import email.utils
import string
from collections.abc import Iterable, Mapping
from email.message import EmailMessage
from email.policy import SMTP
from importlib import resources
from pathlib import Path

import attrs

SEPARATOR = "\n\n" + "-" * 72 + "\n\n"


@attrs.frozen
class TextTemplate:
    subject: str
    body: string.Template


def load(package: str, language: str, name: str, override: str | Path | None = None
         ) -> TextTemplate:
    """``LANG/NAME.txt`` from ``override`` if it has it, else from ``package``'s ``templates``."""
    own = Path(override, language, f"{name}.txt") if override else None
    if own is not None and own.is_file():
        text = own.read_text(encoding="utf-8")
    else:
        text = resources.files(package).joinpath("templates", language, f"{name}.txt").read_text(
            encoding="utf-8")
    subject, _, body = text.partition("\n")
    return TextTemplate(subject.strip(), string.Template(body))


def compose(
    *,
    package: str,
    name: str,
    languages: Iterable[str],
    values: Mapping[str, Mapping[str, str]] | Mapping[str, str],
    sender: str,
    to: str,
    override: str | Path | None = None,
    subject_suffix: str = "",
    message_id_domain: str | None = None,
) -> EmailMessage:
    """A plain-text mail with the template in every language, German first if asked so.

    ``values`` is either one mapping for all languages or one per language code.
    """
    subjects: list[str] = []
    bodies: list[str] = []
    for language in languages:
        template = load(package, language, name, override)
        per_language = values.get(language) if isinstance(values.get(language), Mapping) else values
        assert isinstance(per_language, Mapping)
        subjects.append(string.Template(template.subject).safe_substitute(per_language))
        bodies.append(template.body.safe_substitute(per_language).strip() + "\n")
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = " / ".join(subjects) + subject_suffix
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email.utils.make_msgid(
        domain=message_id_domain or sender.rpartition("@")[2].rstrip(">") or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(SEPARATOR.join(bodies), charset="utf-8")
    return message
