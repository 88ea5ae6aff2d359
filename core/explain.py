"""``siegel explain``: a dry run of the pipeline for one message, without side effects.

For each recipient it shows whether the recipient is internal, every finding with its reason, the
verdict, and which protection method would be chosen (every method's ``can_serve`` answer). It
never protects, delivers, stores or notifies: it is the tool to test a rule before enabling it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from siegel.addresses import Address, InvalidAddress
from siegel.clock import SystemClock, new_message_id
from siegel.config import Config
from siegel.manager import PluginRegistry
from siegel.mime import UNREADABLE, Unreadable
from siegel.model import Envelope, Level, Message, SystemMail, Verdict
from siegel.pipeline import MethodChoice, Pipeline, StageFailure
from siegel.plugin import Clock, RecipientContext, Services
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
    recipient: Address
    internal: bool
    internal_rule: str | None
    verdict: Verdict
    choice: MethodChoice | None
    outcome: str
    reading: ReadingReport | None = None


@attrs.frozen(kw_only=True)
class Explanation:
    tenant: str
    sender: Address | None
    recipients: tuple[RecipientExplanation, ...]
    problem: str | None = None


def envelope_from_headers(message_bytes: bytes) -> tuple[Address | None, list[Address]]:
    """Sender and recipients from From/To/Cc/Bcc, for messages given without an envelope."""
    from siegel.model import parse_email

    parsed = parse_email(message_bytes)
    sender = None
    from_header = parsed.get("from")
    if from_header is not None and getattr(from_header, "addresses", None):
        first = from_header.addresses[0]
        sender = Address.parse(first.addr_spec)
    recipients: list[Address] = []
    for name in ("to", "cc", "bcc"):
        for header in parsed.get_all(name, []):
            for address in getattr(header, "addresses", ()):
                recipients.append(Address.parse(address.addr_spec))
    if not recipients:
        raise InvalidAddress("the message has no To, Cc or Bcc recipients; give --to")
    return sender, recipients


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

    def state(self, namespace: str) -> PluginState:
        if self._store is None:
            raise DryRunViolation(f"this dry run has no store to read plugin state ({namespace})")
        return ReadOnlyPluginState(self._store, namespace, self._clock)

    def portal_link(self, tenant: str, path: str) -> str:
        if self._config is None:
            raise DryRunViolation("this dry run has no configuration to build portal links")
        return self._config.portal_link(tenant, path)


class DryRunViolation(RuntimeError):
    """A plugin tried to cause a side effect during ``siegel explain``."""


async def explain(config: Config, registry: PluginRegistry, raw: bytes, sender: Address | None,
                  recipients: Sequence[Address], tenant_id: str | None = None,
                  services: Services | None = None) -> Explanation:
    """What the pipeline would decide for each recipient. Raises :class:`NoTenant` when the
    message belongs to no tenant and none is given."""
    services = services or DryRun(config=config)
    tenant = config.tenants[tenant_id] if tenant_id else tenant_for(config, sender, recipients)
    message = Message(id=new_message_id(), tenant=tenant.id,
                      envelope=Envelope(sender, tuple(recipients)), raw=raw,
                      received_at=services.clock.now())
    pipeline = Pipeline(config, registry, services)
    try:
        message.parsed.get_body()
    except Exception as exc:
        return Explanation(tenant=tenant.id, sender=sender, recipients=(),
                           problem=f"not readable MIME: {type(exc).__name__}: {exc}")
    results = []
    for recipient in dict.fromkeys(recipients):
        ctx = pipeline.context(message, tenant, recipient)
        try:
            ctx = await pipeline.transform(ctx)
        except StageFailure as failure:
            results.append(RecipientExplanation(
                recipient=recipient, internal=ctx.is_internal,
                internal_rule=ctx.internal.rule if ctx.internal else None,
                verdict=Verdict([]), choice=None,
                outcome=f"quarantine ({failure.reason.en})"))
            continue
        verdict = await pipeline.classify(ctx)
        try:
            reading: ReadingReport | None = ReadingReport.of(ctx)
        except Exception:  # the verdict above already says what a broken message means
            reading = None
        choice = None
        if verdict.level is Level.QUARANTINE:
            outcome = "quarantine"
        elif verdict.level is Level.PLAIN:
            outcome = "deliver unchanged" if not _rewrites(pipeline, ctx) else "deliver (rewritten)"
        else:
            try:
                out_ctx = attrs.evolve(pipeline.rewrite(ctx), verdict=verdict)
            except Exception as exc:
                outcome = f"quarantine (rewriter failed: {exc})"
            else:
                choice = await pipeline.choose_method(out_ctx)
                outcome = (f"protect with {choice.method.name}" if choice.method
                           else "quarantine (no protection method can serve this recipient)")
        results.append(RecipientExplanation(
            recipient=recipient, internal=ctx.is_internal,
            internal_rule=ctx.internal.rule if ctx.internal else None,
            verdict=verdict, choice=choice, outcome=outcome, reading=reading))
    return Explanation(tenant=tenant.id, sender=sender, recipients=tuple(results))


def _rewrites(pipeline: Any, ctx: Any) -> bool:
    try:
        return bool(pipeline.rewrite(ctx) is not ctx)
    except Exception:
        return True


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
        if r.reading is not None:
            lines.append(f"  {'gelesen' if language != 'en' else 'reading'}: "
                         f"{r.reading.text(language)}")
        for f in r.verdict.findings:
            flag = " [warns sender]" if f.warn_sender else ""
            lines.append(f"  - {f.level.name:<10} {f.source}/{f.code}: {f.reason.get(language)}{flag}")
        for name, availability in (r.choice.tried if r.choice else ()):
            mark = "yes" if availability.available else "no"
            lines.append(f"  method {name}: {mark} ({availability.reason.get(language)})")
    return "\n".join(lines)
