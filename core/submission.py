"""Accepting a message, whichever door it comes through: the SMTP listener (:mod:`siegel.gateway`),
the Python API (:mod:`siegel.embed`) and the HTTP API (:mod:`siegel.http_api`).

All three store a message with :func:`store` (durable before the answer; every failure becomes the
SMTP reply the listener gives for it), and check who may send as whom with :func:`sender_refusal`
and :func:`header_sender_refusal`. The listener checks the envelope command by command (``MAIL``,
``RCPT``, end of ``DATA``); the two APIs get the whole transaction at once and run the same checks
in the same order with :func:`accept`. Every refusal is a :class:`~siegel.admission.Refused`
carrying the listener's reply, so the APIs give the same answers (the HTTP API maps them to status
codes, :func:`siegel.http_api.http_status`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

import attrs

from siegel import admission
from siegel.addresses import Address, InvalidAddress
from siegel.admission import Refused, parse_smtp_address, tenant_id
from siegel.config import Config, ListenerConfig
from siegel.runtime import NoTenant, Runtime
from siegel.store import StoreError

log = logging.getLogger(__name__)


class Permit(Protocol):
    """Who sends, when the door knows it: an SMTP AUTH user (:class:`siegel.smtp_auth.SmtpUser`)
    or an HTTP API client. It may send only as its tenant's addresses, and of those only as
    ``senders`` when that is not empty (lower case)."""

    @property
    def name(self) -> str: ...

    @property
    def tenant(self) -> str: ...

    @property
    def senders(self) -> tuple[str, ...]: ...


@attrs.frozen(kw_only=True)
class Limits:
    """The size limits of a door, as a listener has them."""

    max_message_size: int
    max_header_size: int
    max_recipients: int

    @classmethod
    def of_listeners(cls, config: Config) -> Limits:
        """The strictest limits of the configured listeners (the defaults when there are none),
        so that nothing gets in through the Python API that the listener would refuse."""
        listeners = config.listeners or (ListenerConfig(),)
        return cls(max_message_size=min(item.max_message_size for item in listeners),
                   max_header_size=min(item.max_header_size for item in listeners),
                   max_recipients=min(item.max_recipients for item in listeners))


def permitted(config: Config, permit: Permit, sender: Address | None) -> bool:
    if sender is None or tenant_id(config.tenant_of_sender(sender)) != permit.tenant:
        return False
    return not permit.senders or str(sender).lower() in permit.senders


def sender_refusal(config: Config, permit: Permit | None, address: str) -> str | None:
    """Why ``permit`` may not use ``address`` as envelope sender, or None."""
    if permit is None:
        return None
    sender = None if admission.is_null_sender(address) else parse_smtp_address(address)
    if permitted(config, permit, sender):
        return None
    log.warning("%s may not send as %s", permit.name, address or "<>")
    return f"553 5.7.1 User {permit.name} may not send as <{address.strip('<>')}>"


async def header_sender_refusal(config: Config, permit: Permit | None, raw: bytes) -> str | None:
    """The ``From:`` of a message sent by ``permit`` must name only senders it may use, as the
    envelope sender must."""
    from siegel.smtp_auth import header_senders

    if permit is None:
        return None
    senders = await asyncio.to_thread(header_senders, raw)
    if not senders:
        return "550 5.7.1 The From header is missing or cannot be read"
    for text in senders:
        try:
            sender = parse_smtp_address(text)
        except InvalidAddress as exc:
            return f"550 5.7.1 Invalid address in the From header: {exc}"
        if not permitted(config, permit, sender):
            log.warning("%s may not send with From: %s", permit.name, sender)
            return f"550 5.7.1 User {permit.name} may not send as {sender} (From header)"
    return None


async def store(runtime: Runtime, raw: bytes, sender: str | None, recipients: Sequence[str]) -> str:
    """Store an admitted message durably and queue it; returns its id once it is on disk.
    Raises :class:`Refused` with the listener's reply when it cannot (``451`` when the store
    fails: nothing was accepted, the client must try again)."""
    try:
        return await runtime.submit(raw, sender, recipients)
    except NoTenant as exc:
        raise Refused(f"550 5.7.1 {exc}") from None
    except InvalidAddress as exc:
        raise Refused(f"553 5.1.3 {exc}") from None
    except StoreError:
        log.exception("could not store a message; answering 451")
        raise Refused("451 4.3.0 Message not stored (temporary problem); please try again "
                      "later") from None
    except Exception:
        log.exception("unexpected error while accepting a message; answering 451")
        raise Refused("451 4.3.0 Message not stored (internal error); please try again "
                      "later") from None


async def accept(runtime: Runtime, raw: bytes, sender: str | None, recipients: Sequence[str], *,
                 limits: Limits, permit: Permit | None = None) -> str:
    """One whole SMTP transaction's checks, in the listener's order, then :func:`store`.

    ``sender`` and ``recipients`` are read as the listener reads ``MAIL FROM`` and ``RCPT TO``
    (``None`` or ``""``: the null sender). Unlike the listener, which refuses one recipient and
    goes on with the others, a refused recipient refuses the whole submission: an application
    gets one answer per message. Bounces (mail to a VERP bounce address) come only through SMTP.
    Raises :class:`Refused`."""
    config = runtime.config
    mail_from = admission.smtp_path(sender or "")
    admission.check_sender(mail_from)
    refusal = sender_refusal(config, permit, mail_from)
    if refusal is not None:
        raise Refused(refusal)
    accepted: list[str] = []
    for text in recipients:
        path = admission.smtp_path(text)
        recipient = admission.check_recipient(config, path, mail_from, accepted,
                                              limits.max_recipients)
        if runtime.bounce_token(recipient) is not None:
            raise Refused("550 5.7.1 Bounces are taken only by the SMTP listener")
        accepted.append(path)
    if not accepted:
        raise Refused("554 5.5.1 No valid recipients")
    admission.check_data(raw, limits.max_message_size)
    admission.check_header_block(raw, limits.max_header_size)
    refusal = await header_sender_refusal(config, permit, raw)
    if refusal is not None:
        raise Refused(refusal)
    return await store(runtime, raw, None if admission.is_null_sender(mail_from) else mail_from,
                       accepted)


__all__ = ["Limits", "Permit", "Refused", "accept", "header_sender_refusal", "permitted",
           "sender_refusal", "store"]
