"""``siegel explain``: a dry run of the pipeline for one message, without side effects.

For each recipient it shows whether the recipient is internal, every finding with its reason, the
verdict, and which protection method would be chosen (every method's ``can_serve`` answer). It
never protects, delivers, stores or notifies: it is the tool to test a rule before enabling it.

It predicts the live gateway because it runs the same code: the listener's envelope checks
(:mod:`siegel.admission`, via :func:`admit`) and the pipeline's decision
(:meth:`~siegel.pipeline.Pipeline.decide`). Only the protection itself and the delivery are left
out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs

from siegel import admission
from siegel.accounts import NAMESPACE as ACCOUNTS_NAMESPACE
from siegel.accounts import Accounts
from siegel.addresses import Address, InvalidAddress, internal_match
from siegel.clock import SystemClock, new_message_id
from siegel.config import Config
from siegel.manager import PluginRegistry
from siegel.mime import UNREADABLE, Unreadable
from siegel.model import (
    AuditEvent,
    Envelope,
    IdentityLevel,
    Level,
    Message,
    Notice,
    SystemMail,
    Verdict,
)
from siegel.pipeline import Action, MethodChoice, Pipeline
from siegel.plugin import Clock, RecipientContext, Services, required_level
from siegel.runtime import tenant_for
from siegel.state import PluginState, ReadOnlyPluginState
from siegel.store import MessageStore


@attrs.frozen(kw_only=True)
class ReadingReport:
    """What the content checks could read in a copy: how many parts, which attachments had their
    text extracted (``None``: no rule needed it), and each part that could not be read."""

    parts_read: int
    attachments: int
    extracted: int | None
    unreadable: tuple[Unreadable, ...]

    @classmethod
    def of(cls, ctx: RecipientContext) -> ReadingReport:
        reading = ctx.reading
        attachment_paths = {a.path for a in reading.attachments}
        extraction = ctx.extraction
        unreadable = reading.unreadable + (extraction.unreadable if extraction else ())
        return cls(parts_read=len({p.path for p in reading.texts} - attachment_paths),
                   attachments=len(reading.attachments),
                   extracted=len(extraction.texts) if extraction else None,
                   unreadable=unreadable)

    def text(self, language: str) -> str:
        de = language != "en"

        def count(n: int, one: tuple[str, str], many: tuple[str, str]) -> str:
            return f"{n} {(one if n == 1 else many)[0 if de else 1]}"

        parts = [count(self.parts_read, ("Teil gelesen", "part read"),
                       ("Teile gelesen", "parts read"))]
        if self.attachments and self.extracted is None:
            parts.append(count(self.attachments, (
                "Anhang nicht gelesen (keine Regel braucht ihn)",
                "attachment not read (no rule needs it)"), (
                "Anhänge nicht gelesen (keine Regel braucht sie)",
                "attachments not read (no rule needs them)")))
        elif self.attachments:
            parts.append(count(self.extracted or 0, (
                "Anhang mit Text gelesen", "attachment text extracted"), (
                "Anhänge mit Text gelesen", "attachment texts extracted")))
        if self.unreadable:
            parts.append(count(len(self.unreadable), ("Teil nicht lesbar", "part unreadable"),
                               ("Teile nicht lesbar", "parts unreadable"))
                         + ": " + "; ".join(self._part(u, de) for u in self.unreadable))
        return ", ".join(parts)

    @staticmethod
    def _part(part: Unreadable, de: bool) -> str:
        why = UNREADABLE.get(part.problem)
        return f"{part.path} {part.content_type} ({why.get('de' if de else 'en') if why else part.problem})"


@attrs.frozen(kw_only=True)
class RecipientExplanation:
    """One recipient in a dry run: internal or not (and by which rule), the verdict with its
    findings, the protection methods asked (``choice.tried``), and the ``outcome`` in words
    (``deliver unchanged``, ``protect with password_pdf``, ``quarantine (...)``)."""

    recipient: Address
    internal: bool
    internal_rule: str | None
    verdict: Verdict
    choice: MethodChoice | None
    outcome: str
    reading: ReadingReport | None = None
    #: The identity level the recipient's account needs to read the copy (in a postbox).
    required_level: IdentityLevel = IdentityLevel.MAILBOX


@attrs.frozen(kw_only=True)
class RefusedRecipient:
    """A recipient the listener refuses at ``RCPT``, with its answer."""

    address: str
    reply: str


@attrs.frozen(kw_only=True)
class Explanation:
    """What ``siegel explain`` shows for a message: its tenant and sender, each recipient the
    listener accepts (:class:`RecipientExplanation`), those it refuses at ``RCPT``, and a
    ``problem`` that stops the whole message (it is then quarantined)."""

    tenant: str
    sender: Address | None
    recipients: tuple[RecipientExplanation, ...]
    problem: str | None = None
    refused: tuple[RefusedRecipient, ...] = ()


@attrs.frozen(kw_only=True)
class Admission:
    """What the listener would accept of an envelope: the sender and recipients it answers 250
    for, and the answer for each recipient it refuses."""

    sender: Address | None
    recipients: tuple[Address, ...]
    refused: tuple[RefusedRecipient, ...]


def admit(config: Config, sender: str | None, recipients: Sequence[str],
          raw: bytes | None = None) -> Admission:
    """Run an envelope (and, given ``raw``, the message) through the listener's own checks, in
    one transaction, as typed at the command line (``<...>``, source routes and comments are
    read as the listener reads them). Raises :class:`~siegel.admission.Refused` when the
    listener refuses the sender at ``MAIL`` or the message at the end of ``DATA``. Where
    listeners differ, the strictest limits apply."""
    mail_from = admission.smtp_path(sender or "")
    parsed_sender = admission.check_sender(mail_from)
    max_recipients = min((listener.max_recipients for listener in config.listeners),
                         default=100)
    accepted: list[str] = []
    parsed: list[Address] = []
    refused: list[RefusedRecipient] = []
    for text in recipients:
        try:
            path = admission.smtp_path(text)
            parsed.append(admission.check_recipient(config, path, mail_from, accepted,
                                                    max_recipients))
            accepted.append(path)
        except admission.Refused as refusal:
            refused.append(RefusedRecipient(address=text, reply=refusal.reply))
    if raw is not None and parsed:
        admission.check_data(raw, min((listener.max_message_size
                                       for listener in config.listeners), default=0))
        if config.listeners:
            admission.check_header_block(raw, min(listener.max_header_size
                                                  for listener in config.listeners))
    return Admission(sender=parsed_sender, recipients=tuple(parsed), refused=tuple(refused))


def header_envelope(message_bytes: bytes) -> tuple[str | None, list[str]]:
    """Sender and recipients (as written) from From/To/Cc/Bcc, for messages given without an
    envelope."""
    from siegel.model import parse_email

    parsed = parse_email(message_bytes)
    sender = None
    from_header = parsed.get("from")
    if from_header is not None and getattr(from_header, "addresses", None):
        sender = str(from_header.addresses[0].addr_spec)
    recipients: list[str] = []
    for name in ("to", "cc", "bcc"):
        for header in parsed.get_all(name, []):
            recipients.extend(str(a.addr_spec) for a in getattr(header, "addresses", ()))
    if not recipients:
        raise InvalidAddress("the message has no To, Cc or Bcc recipients; give --to")
    return sender, recipients


def envelope_from_headers(message_bytes: bytes) -> tuple[Address | None, list[Address]]:
    """Sender and recipients from From/To/Cc/Bcc, parsed (raises
    :class:`~siegel.InvalidAddress`)."""
    sender, recipients = header_envelope(message_bytes)
    return (Address.parse(sender) if sender else None), [Address.parse(r) for r in recipients]


class DryRun:
    """Services for a dry run: time passes, plugin state can be read (when a store is given),
    nothing is stored, sent, released or written."""

    def __init__(self, clock: Clock | None = None, store: MessageStore | None = None,
                 config: Config | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._store = store
        self._config = config

    @property
    def clock(self) -> Clock:
        return self._clock

    async def send_system_mail(self, tenant: str, mail: SystemMail) -> str:
        raise DryRunViolation("a dry run must not send mail")

    async def release(self, message_id: str, recipient: Address) -> None:
        raise DryRunViolation("a dry run must not release messages")

    async def submit_portal_message(self, tenant: str, raw: bytes, *, mail_from: Address,
                                    recipients: Sequence[Address]) -> str:
        raise DryRunViolation("a dry run must not submit messages")

    async def report(self, tenant: str, *, notices: Sequence[Notice] = (),
                     events: Sequence[AuditEvent] = ()) -> None:
        raise DryRunViolation("a dry run must not send notices or record events")

    def state(self, namespace: str) -> PluginState:
        if self._store is None:
            raise DryRunViolation(f"this dry run has no store to read plugin state ({namespace})")
        return ReadOnlyPluginState(self._store, namespace, self._clock)

    def accounts(self, tenant: str) -> Accounts:
        return Accounts(self.state(ACCOUNTS_NAMESPACE), tenant)

    def portal_link(self, tenant: str, path: str) -> str:
        if self._config is None:
            raise DryRunViolation("this dry run has no configuration to build portal links")
        return self._config.portal_link(tenant, path)


class DryRunViolation(RuntimeError):
    """A plugin tried to cause a side effect during ``siegel explain``."""


async def explain(config: Config, registry: PluginRegistry, raw: bytes, sender: Address | None,
                  recipients: Sequence[Address], tenant_id: str | None = None,
                  services: Services | None = None,
                  refused: Sequence[RefusedRecipient] = ()) -> Explanation:
    """What the pipeline would decide for each recipient (:meth:`Pipeline.decide`, the live
    pipeline's own decision). Raises :class:`NoTenant` when the message belongs to no tenant and
    none is given. ``refused`` are recipients :func:`admit` refused; they are shown as such."""
    services = services or DryRun(config=config)
    tenant = config.tenants[tenant_id] if tenant_id else tenant_for(config, sender, recipients)
    message = Message(id=new_message_id(), tenant=tenant.id,
                      envelope=Envelope(sender, tuple(recipients)), raw=raw,
                      received_at=services.clock.now())
    pipeline = Pipeline(config, registry, services)
    results = []
    problem = None
    for recipient in dict.fromkeys(recipients):
        plan = await pipeline.decide(message, tenant, recipient)
        if plan.ctx is None:
            problem = plan.reasons[0].en
            internal = internal_match(tenant.internal, recipient)
        else:
            internal = plan.ctx.internal
        if plan.action is Action.QUARANTINE:
            # The findings are listed with the verdict; any other stop says its own reason.
            classified = plan.verdict is not None and plan.verdict.level is Level.QUARANTINE
            outcome = "quarantine" if classified or not plan.reasons else (
                f"quarantine ({plan.reasons[-1].en})")
        elif plan.action is Action.DELIVER:
            outcome = "deliver (rewritten)" if plan.rewritten else "deliver unchanged"
        else:
            assert plan.choice is not None and plan.choice.method is not None
            outcome = f"protect with {plan.choice.method.name}"
        results.append(RecipientExplanation(
            recipient=recipient, internal=internal is not None,
            internal_rule=internal.rule if internal else None,
            verdict=plan.verdict or Verdict([]), choice=plan.choice, outcome=outcome,
            reading=_reading(plan.ctx), required_level=required_level(tenant, plan.verdict)))
    return Explanation(tenant=tenant.id, sender=sender, recipients=tuple(results),
                       problem=problem, refused=tuple(refused))


def _reading(ctx: RecipientContext | None) -> ReadingReport | None:
    if ctx is None:
        return None
    try:
        return ReadingReport.of(ctx)
    except Exception:  # the verdict already says what a broken message means
        return None


def as_json(explanation: Explanation, language: str = "en") -> str:
    return json.dumps({
        "tenant": explanation.tenant,
        "sender": str(explanation.sender) if explanation.sender else None,
        "problem": explanation.problem,
        "recipients": [{
            "recipient": str(r.recipient),
            "internal": r.internal,
            "internal_rule": r.internal_rule,
            "verdict": r.verdict.level.name.lower(),
            "outcome": r.outcome,
            "required_level": r.required_level.label,
            "reading": None if r.reading is None else {
                "parts_read": r.reading.parts_read,
                "attachments": r.reading.attachments,
                "attachments_extracted": r.reading.extracted,
                "unreadable": [{"part": u.path, "content_type": u.content_type,
                                "problem": u.problem,
                                "reason": UNREADABLE[u.problem].get(language)
                                if u.problem in UNREADABLE else u.problem}
                               for u in r.reading.unreadable],
            },
            "findings": [{
                "level": f.level.name.lower(), "code": f.code, "source": f.source,
                "reason": f.reason.get(language), "warn_sender": f.warn_sender,
            } for f in r.verdict.findings],
            "methods": [{"method": name, "available": a.available, "reason": a.reason.get(language)}
                        for name, a in (r.choice.tried if r.choice else ())],
        } for r in explanation.recipients],
        "refused": [{"recipient": r.address, "reply": r.reply} for r in explanation.refused],
    }, ensure_ascii=False, indent=2)


def as_text(explanation: Explanation, language: str = "de") -> str:
    lines = [f"tenant: {explanation.tenant}",
             f"sender: {explanation.sender.display if explanation.sender else '<>'}"]
    if explanation.problem:
        lines.append(f"problem: {explanation.problem} -> quarantine")
    for r in explanation.recipients:
        where = f"internal ({r.internal_rule})" if r.internal else "external"
        lines.append("")
        lines.append(f"{r.recipient.display}: {where}")
        lines.append(f"  verdict: {r.verdict.level.name}  ->  {r.outcome}")
        lines.append(f"  {'Identitätsstufe zum Lesen' if language != 'en' else 'identity level to read'}"
                     f": {r.required_level.label}")
        if r.reading is not None:
            lines.append(f"  {'gelesen' if language != 'en' else 'reading'}: "
                         f"{r.reading.text(language)}")
        for f in r.verdict.findings:
            flag = " [warns sender]" if f.warn_sender else ""
            lines.append(f"  - {f.level.name:<10} {f.source}/{f.code}: {f.reason.get(language)}{flag}")
        for name, availability in (r.choice.tried if r.choice else ()):
            mark = "yes" if availability.available else "no"
            lines.append(f"  method {name}: {mark} ({availability.reason.get(language)})")
    for refused in explanation.refused:
        lines.append("")
        lines.append(f"{refused.address}: refused at RCPT -> {refused.reply}")
    return "\n".join(lines)
