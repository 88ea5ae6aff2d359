"""The pipeline: classify, choose a protection method, protect, deliver, notify — per recipient.

It fails closed. Every path that cannot prove a copy may leave ends in ``quarantined`` (or ``held``),
never in a delivery: a classifier that raises or times out, a protection method that fails or
returns the message unchanged, a rewriter that breaks, an unknown tenant, unparseable MIME. The only
copies handed to a delivery channel are the original (or rewritten) bytes of a copy whose verdict is
``PLAIN``, and the output of a protection method for a copy whose verdict is ``PROTECT``.

Over 600 lines because the invariant above is checked by reading the stages top to
bottom in one place; split across files, a reviewer could no longer see every path a copy takes
to a delivery channel at once.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import TypeVar

import attrs

from siegel import bounces, mime
from siegel.addresses import Address, internal_match
from siegel.config import Config, Tenant
from siegel.manager import PluginRegistry
from siegel.model import (
    AuditEvent,
    Availability,
    DeliveryResult,
    DeliveryStatus,
    Finding,
    HeaderFieldTooLarge,
    Held,
    Level,
    Message,
    Notice,
    NoticeKind,
    Origin,
    Outgoing,
    Protected,
    RecipientState,
    RetryLater,
    Text,
    Verdict,
    parse_email,
)
from siegel.plugin import ProtectionMethod, RecipientContext, Services
from siegel.store import Job, RecipientUpdate, StoreError

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class _Unreadable(Exception):
    def __init__(self, reason: Text) -> None:
        self.reason = reason
        super().__init__(reason.en)


class StageFailure(Exception):
    """A plugin failed in a stage; ``reason`` says which plugin, where and how."""

    def __init__(self, reason: Text) -> None:
        self.reason = reason
        super().__init__(reason.en)


@attrs.frozen(kw_only=True)
class MethodChoice:
    """Which protection method serves a recipient, and what every method tried said."""

    method: ProtectionMethod | None
    tried: tuple[tuple[str, Availability], ...]


class Action(enum.Enum):
    """What the pipeline decided to do with one copy."""

    QUARANTINE = "quarantine"
    DELIVER = "deliver"
    PROTECT = "protect"


@attrs.frozen(kw_only=True)
class Plan:
    """What the pipeline decides for one copy before anything leaves or is protected.

    :meth:`Pipeline.decide` makes it for the live pipeline and for ``siegel explain`` alike, so the
    two cannot disagree; a new reason to stop a copy belongs in ``decide``, not in ``process``.
    """

    action: Action
    #: Why: the deciding findings, or the failure that stopped the copy.
    reasons: tuple[Text, ...]
    #: The copy as classified; ``None`` when the message could not even be read.
    ctx: RecipientContext | None
    #: ``None`` when the copy was stopped before it was classified.
    verdict: Verdict | None = None
    level: Level | None = None
    #: The copy as it leaves (after the rewriters), for DELIVER and PROTECT.
    outgoing: RecipientContext | None = None
    #: Every method's answer; ``method`` is set for PROTECT.
    choice: MethodChoice | None = None

    @property
    def rewritten(self) -> bool:
        return self.outgoing is not None and self.outgoing.raw is not (
            self.ctx.raw if self.ctx else None)


@attrs.frozen(kw_only=True)
class Decision:
    """What processing a job decided; the runtime stores it in one transaction."""

    update: RecipientUpdate
    notices: tuple[Notice, ...] = ()
    events: tuple[AuditEvent, ...] = ()


def _failure_finding(code: str, reason: Text) -> Finding:
    return Finding(level=Level.QUARANTINE, code=code, reason=reason, source="siegel",
                   releasable=False)


def _as_findings(result: object) -> list[Finding] | None:
    """A classifier's answer as findings; None when it is not a valid answer."""
    if result is None:
        return []
    if isinstance(result, Finding):
        return [result]
    if isinstance(result, list | tuple | set | frozenset):
        items = list(result)
        return items if all(isinstance(item, Finding) for item in items) else None
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"raised {type(exc).__name__}: {exc}"


def _prepared(ctx: RecipientContext) -> RecipientContext:
    """Read what classifiers read (subject, attachment names, body text) once, here, on the
    reading thread, instead of on the event loop by each classifier."""
    ctx.subject  # noqa: B018
    ctx.attachment_names  # noqa: B018
    ctx.body_text  # noqa: B018
    return ctx


class Pipeline:
    def __init__(self, config: Config, registry: PluginRegistry, services: Services) -> None:
        self.config = config
        self.registry = registry
        self.services = services

    @property
    def now(self) -> datetime:
        return self.services.clock.now()

    async def _guarded(self, awaitable: Awaitable[object], seconds: float, what: Text, *,
                       late_fails: bool = True) -> object:
        """Await a plugin's callable with a time-out. Its answer is untrusted: callers check its
        type, because a plugin that returns the wrong thing must quarantine, not crash or leak.

        With ``late_fails``, an answer that comes after ``seconds`` counts as timed out too (see
        below). Deliveries pass False: a copy delivered late is still delivered, and calling it
        failed would deliver it again."""
        started = time.monotonic()
        try:
            # asyncio.timeout, unlike wait_for, runs the plugin in this task instead of a new one.
            async with asyncio.timeout(seconds):
                result = await awaitable
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s %s", what.en, _describe(exc), exc_info=not isinstance(exc, TimeoutError))
            raise StageFailure(
                Text(de=f"{what.de}: {_describe(exc)}", en=f"{what.en}: {_describe(exc)}")
            ) from exc
        # asyncio.timeout only fires at an await: a plugin computing without awaiting can
        # overrun it and still return. Its answer then counts as timed out all the same.
        took = time.monotonic() - started
        if late_fails and took > seconds:
            log.warning("%s took %.1f s without yielding to the event loop (limit %g s)",
                        what.en, took, seconds)
            raise StageFailure(Text(
                de=f"{what.de}: Zeitlimit überschritten ({took:.1f} s, erlaubt {seconds:g} s)",
                en=f"{what.en}: timed out ({took:.1f} s, limit {seconds:g} s)"))
        return result

    # -- contexts ---------------------------------------------------------------------------

    def context(self, message: Message, tenant: Tenant, recipient: Address) -> RecipientContext:
        email = message.parsed
        return RecipientContext(
            message=message, raw=message.raw, email=email, recipient=recipient, tenant=tenant,
            internal=internal_match(tenant.internal, recipient), services=self.services,
        )

    # -- the stages -------------------------------------------------------------------------

    async def read(self, message: Message, tenant: Tenant, recipient: Address) -> RecipientContext:
        """Parse the copy and read what classifiers ask for (subject, body text, attachment
        names), in a thread and within the classify time limit, so that a pathological message
        never holds up the event loop (the listener answers other clients meanwhile). Raises
        :class:`StageFailure` when the message is not readable MIME, has an oversized header
        block, or takes too long to read.

        A thread that overruns cannot be stopped; it is left to finish and its result is
        discarded. Header blocks are limited (``delivery.max_header_size``) before any field is
        parsed, and so are single fields (:data:`siegel.model.MAX_PARSED_FIELD_CHARS`), which
        bounds what such a thread can cost: the email package parses folded encoded words and
        long parameter lists in time that grows faster than the field.
        """

        def read() -> RecipientContext:
            self._check_header_blocks(message.parsed, Text(de="Kopfbereich", en="header block"))
            ctx = self.context(message, tenant, recipient)
            # Header access is where the lenient parser can still fail; make it fail here.
            ctx.email.get_body()
            return _prepared(ctx)

        return await self._read_off_loop(read, the_message=Text(de="der Nachricht", en="the message"),
                                         quote_error=True)

    def _check_header_blocks(self, email: EmailMessage, what: Text) -> None:
        limit = self.config.delivery.max_header_size
        oversized = mime.oversized_header_blocks(email, limit)
        if oversized:
            parts = ", ".join(oversized[:5])
            raise _Unreadable(Text(de=f"{what.de} größer als {limit} Bytes ({parts})",
                                   en=f"{what.en} larger than {limit} bytes ({parts})"))

    async def _read_off_loop(self, read: Callable[[], RecipientContext], *, the_message: Text,
                             quote_error: bool) -> RecipientContext:
        """Run ``read`` in a thread within the classify time limit and turn what can go wrong
        into a :class:`StageFailure` (``the_message``: what was read, in the genitive)."""
        seconds = self.config.delivery.classify_timeout_seconds
        try:
            return await self._off_loop(read, seconds)
        except _Unreadable as exc:
            raise StageFailure(exc.reason) from exc
        except HeaderFieldTooLarge as exc:
            raise StageFailure(Text(de=f"Zu großes Kopffeld ({exc})",
                                    en=f"header field too large ({exc})")) from exc
        except TimeoutError as exc:
            raise StageFailure(Text(
                de=f"Das Lesen {the_message.de} dauerte länger als {seconds:g} s",
                en=f"reading {the_message.en} took longer than {seconds:g} s")) from exc
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if quote_error else type(exc).__name__
            raise StageFailure(Text(
                de=f"Der Inhalt {the_message.de} ist kein lesbares MIME ({error})",
                en=f"{the_message.en} is not readable MIME ({error})")) from exc

    @staticmethod
    async def _off_loop(function: Callable[[], _T], seconds: float) -> _T:
        """Run CPU-bound ``function`` in a thread; TimeoutError after ``seconds`` (the thread
        runs on to its end, its result unused)."""
        async with asyncio.timeout(seconds):
            return await asyncio.to_thread(function)

    async def transform(self, ctx: RecipientContext) -> RecipientContext:
        """Let the tenant's transformers turn the copy into another; raises :class:`StageFailure`."""
        for transformer in self.registry.enabled(self.registry.transformers,
                                                 ctx.tenant.enabled_plugins):
            what = Text(de=f"Umwandler {transformer.name!r} (Plugin {transformer.plugin!r})",
                        en=f"transformer {transformer.name!r} (plugin {transformer.plugin!r})")
            result = await self._guarded(transformer.transform(ctx),
                                         self.config.delivery.protect_timeout_seconds, what)
            if result is None:
                continue
            if not isinstance(result, bytes) or not result:
                raise StageFailure(Text(de=f"{what.de} lieferte keine Nachricht",
                                        en=f"{what.en} returned no message"))
            ctx = await self._read_transformed(ctx, result)
        return ctx

    async def _read_transformed(self, ctx: RecipientContext, raw: bytes) -> RecipientContext:
        """The context of a transformer's output, read like the received copy (see :meth:`read`):
        a decrypted message gets the same header limit and is parsed off the event loop."""

        def read() -> RecipientContext:
            email = parse_email(raw)
            self._check_header_blocks(email, Text(de="Kopfbereich der umgewandelten Nachricht",
                                                  en="header block of the transformed message"))
            return _prepared(attrs.evolve(ctx, raw=raw, email=email))

        return await self._read_off_loop(
            read, the_message=Text(de="der umgewandelten Nachricht", en="the transformed message"),
            quote_error=False)

    async def classify(self, ctx: RecipientContext) -> Verdict:
        """Ask every classifier the tenant enables; the strictest finding wins."""
        classifiers = self.registry.enabled(self.registry.classifiers, ctx.tenant.enabled_plugins)
        timeout = self.config.delivery.classify_timeout_seconds

        async def ask(classifier_name: str, plugin: str, call: Awaitable[object]) -> list[Finding]:
            what = Text(de=f"Klassifizierer {classifier_name!r} (Plugin {plugin!r})",
                        en=f"classifier {classifier_name!r} (plugin {plugin!r})")
            try:
                result = await self._guarded(call, timeout, what)
            except StageFailure as failure:
                return [_failure_finding("classifier-failed", failure.reason)]
            findings = _as_findings(result)
            if findings is None:
                return [_failure_finding("classifier-failed", Text(
                    de=f"{what.de} lieferte kein Finding ({type(result).__name__})",
                    en=f"{what.en} returned no Finding ({type(result).__name__})"))]
            return [attrs.evolve(f, source=f.source or classifier_name) for f in findings]

        results = await asyncio.gather(*(
            ask(c.name, c.plugin, c.classify(ctx)) for c in classifiers
        ))
        findings = [finding for group in results for finding in group]
        if not classifiers:
            # The configuration check refuses such a tenant; should one slip through, nothing
            # unclassified leaves.
            findings.append(_failure_finding("no-classifiers", Text(
                de="Für diesen Mandanten ist kein Klassifizierer aktiv",
                en="no classifier is enabled for this tenant")))
        return Verdict(findings)

    def rewrite(self, ctx: RecipientContext) -> RecipientContext:
        """The copy as it leaves: the tenant's rewriters edit its header block (``ctx`` itself
        when none changes anything); raises :class:`StageFailure`."""
        raw = mime.RawMessage(ctx.raw)
        for rewriter in self.registry.enabled(self.registry.rewriters, ctx.tenant.enabled_plugins):
            try:
                rewriter.rewrite(raw, ctx)
            except Exception as exc:
                raise StageFailure(Text(
                    de=f"Umschreiber {rewriter.name!r} (Plugin {rewriter.plugin!r}): {_describe(exc)}",
                    en=f"rewriter {rewriter.name!r} (plugin {rewriter.plugin!r}): {_describe(exc)}",
                )) from exc
        if not raw.changed:
            return ctx
        return attrs.evolve(ctx, raw=raw, email=raw.parsed(ctx.email))

    async def choose_method(self, ctx: RecipientContext) -> MethodChoice:
        """Walk the tenant's preference list; the first method that can serve wins."""
        tried: list[tuple[str, Availability]] = []
        for name in ctx.tenant.protection:
            method = self.registry.protection_methods[name]
            what = Text(de=f"Schutzverfahren {name!r} (Plugin {method.plugin!r}), Prüfung",
                        en=f"protection method {name!r} (plugin {method.plugin!r}), can_serve")
            try:
                availability = await self._guarded(
                    method.can_serve(ctx), self.config.delivery.protect_timeout_seconds, what)
            except StageFailure as failure:
                availability = Availability.no(failure.reason)
            if not isinstance(availability, Availability):
                availability = Availability.no(Text(de=f"{what.de}: ungültige Antwort",
                                                    en=f"{what.en}: invalid answer"))
            tried.append((name, availability))
            if availability.available:
                return MethodChoice(method=method, tried=tuple(tried))
        return MethodChoice(method=None, tried=tuple(tried))

    # -- one job ----------------------------------------------------------------------------

    def _event(self, kind: str, message: Message, job: Job, **detail: str) -> AuditEvent:
        return AuditEvent(at=self.now, kind=kind, tenant=message.tenant, message_id=message.id,
                          recipient=str(job.recipient), detail=detail)

    def notice_subject(self, message: Message, recipient: Address) -> str | None:
        """The subject as ``recipient``'s copy leaves, for notices: the tenant's rewriters remove
        what was meant for the gateway (a trigger tag), in notices exactly as in the copy. None
        when it cannot be read, or a rewriter fails (then no subject is better than one that
        repeats an instruction)."""
        tenant = self.config.tenants.get(message.tenant)
        try:
            if tenant is None:
                return mime.subject_of(message.parsed)
            return self.rewrite(self.context(message, tenant, recipient)).subject
        except Exception:
            return None

    def notice(self, kind: NoticeKind, message: Message, recipient: Address,
               reasons: Iterable[Text], *, read_subject: bool = True) -> Notice:
        """A notice about ``recipient``'s copy of ``message``; without ``read_subject`` the
        subject is left out (reading it may be what failed or took so long)."""
        subject = self.notice_subject(message, recipient) if read_subject else None
        return Notice(kind=kind, tenant=message.tenant, message_id=message.id,
                      sender=message.envelope.mail_from, recipient=recipient,
                      subject=subject, reasons=tuple(reasons),
                      at=self.now, received_at=message.received_at)

    def _notice(self, kind: NoticeKind, message: Message, job: Job,
                reasons: Iterable[Text], *, read_subject: bool = True) -> Notice:
        return self.notice(kind, message, job.recipient, reasons, read_subject=read_subject)

    def quarantine(self, message: Message, job: Job, reasons: Iterable[Text], *,
                   level: Level | None = None, notify: bool = True,
                   read_subject: bool = True) -> Decision:
        reasons = tuple(reasons)
        notices = (self._notice(NoticeKind.QUARANTINED, message, job, reasons,
                                read_subject=read_subject),) if (
            notify and message.origin is Origin.SMTP) else ()
        return Decision(
            update=RecipientUpdate(state=RecipientState.QUARANTINED,
                                   detail=reasons[-1].en if reasons else "quarantined",
                                   reasons=[r.en for r in reasons], level=level,
                                   attempts=job.attempts),
            notices=notices,
            events=(self._event("quarantined", message, job,
                                reasons="; ".join(r.en for r in reasons)),),
        )

    def poison(self, message: Message, job: Job) -> Decision:
        """Quarantine a copy whose processing kept being cut off (a *poison message*): its
        earlier starts never finished, so the process crashed, hung or was stopped each time.
        Nothing of the message is parsed here, not even the subject for the notice."""
        cut_off = job.starts - 1
        reason = Text(
            de=f"Giftnachricht: die Verarbeitung wurde {cut_off}-mal begonnen und nie beendet "
            "(Absturz, Hänger oder Neustart des Gateways); sie wird nicht erneut versucht",
            en=f"poison message: processing was started {cut_off} times and never finished "
            "(the gateway crashed, hung or was restarted); it is not tried again")
        log.error("message %s to %s: %s", message.id, job.recipient.display, reason.en)
        notices = (self._notice(NoticeKind.QUARANTINED, message, job, [reason],
                                read_subject=False),) if message.origin is Origin.SMTP else ()
        return Decision(
            update=RecipientUpdate(state=RecipientState.QUARANTINED, detail=reason.en,
                                   reasons=[reason.en], level=Level.QUARANTINE,
                                   attempts=job.attempts),
            notices=notices,
            events=(self._event("quarantined", message, job, reasons=reason.en, poison="yes"),),
        )

    def expire(self, message: Message, job: Job) -> Decision:
        reason = Text(de="Die Nachricht wurde nicht rechtzeitig abgeholt und gelöscht",
                      en="the message was not collected in time and was deleted")
        return Decision(
            update=RecipientUpdate(state=RecipientState.EXPIRED, detail="hold expired",
                                   reasons=[reason.en], attempts=job.attempts),
            notices=(self._notice(NoticeKind.EXPIRED, message, job, [reason]),),
            events=(self._event("expired", message, job),),
        )

    def bounced(self, message: Message, job: Job, report: bounces.BounceReport) -> Decision:
        """A held copy whose invitation came back for good: it fails now, not when the hold
        ends, and its sender learns that the address does not exist."""
        reason = report.reason(job.recipient)
        return Decision(
            update=RecipientUpdate(state=RecipientState.FAILED, detail="address does not exist"
                                   if report.address_unknown else "refused permanently",
                                   reasons=[reason.en],
                                   attempts=job.attempts),
            notices=(self._notice(NoticeKind.BOUNCED, message, job, [reason]),),
            events=(self._event("failed", message, job, reply=report.diagnostic[:500],
                                status=report.status, cause="bounce"),),
        )

    async def process(self, message: Message, job: Job) -> Decision:
        tenant = self.config.tenants.get(message.tenant)
        if tenant is None:
            return self.quarantine(message, job, [Text(
                de=f"Mandant {message.tenant!r} ist nicht (mehr) konfiguriert",
                en=f"tenant {message.tenant!r} is not configured (any more)")], notify=False)
        if job.state is RecipientState.HELD:
            bounced = await self.services.state(bounces.FAILED).get(
                bounces.failure_key(message.tenant, message.id, job.recipient))
            if bounced is not None:
                return self.bounced(message, job, bounces.BounceReport.decode(bounced.value))
            return self.expire(message, job)
        if message.origin is Origin.SYSTEM:
            outgoing = Outgoing(channel=message.channel or tenant.delivery_channel,
                                mail_from=str(message.envelope.mail_from or ""),
                                recipients=(str(job.recipient),), raw=message.raw)
            return await self._deliver(message, job, tenant, (outgoing,), protected=False,
                                       level=None, method=None, reasons=())
        plan = await self.decide(message, tenant, job.recipient, released=job.released)
        events: list[AuditEvent] = []
        warnings: tuple[Notice, ...] = ()
        if plan.verdict is not None:
            verdict = plan.verdict
            events.append(self._event(
                "classified", message, job, level=verdict.level.name,
                findings=",".join(f"{f.source}:{f.code}" for f in verdict.findings)))
            if verdict.warnings and job.attempts == 0 and not job.released:
                warnings = (self._notice(NoticeKind.WARNING, message, job,
                                         [f.reason for f in verdict.warnings]),)
        if plan.action is Action.QUARANTINE:
            # A copy that could not be read is noticed without its subject: reading it may be
            # what failed or took so long.
            decision = self.quarantine(message, job, plan.reasons, level=plan.level,
                                       read_subject=plan.ctx is not None)
        elif plan.action is Action.DELIVER:
            assert plan.outgoing is not None
            outgoing = Outgoing(channel=tenant.delivery_channel,
                                mail_from=str(message.envelope.mail_from or ""),
                                recipients=(str(job.recipient),), raw=plan.outgoing.raw)
            decision = await self._deliver(message, job, tenant, (outgoing,), protected=False,
                                           level=plan.level, method=None, reasons=plan.reasons)
        else:
            assert plan.outgoing is not None and plan.choice and plan.choice.method
            decision = await self._protect(message, job, tenant, plan.outgoing,
                                           plan.choice.method, plan.reasons, plan.level)
        return attrs.evolve(decision, notices=warnings + decision.notices,
                            events=(*events, *decision.events))

    async def decide(self, message: Message, tenant: Tenant, recipient: Address, *,
                     released: bool = False) -> Plan:
        """Read, transform, classify, rewrite and choose a method for one copy, without any
        side effect: what :meth:`process` then does, and what ``siegel explain`` shows."""
        try:
            ctx = await self.read(message, tenant, recipient)
        except StageFailure as failure:
            return Plan(action=Action.QUARANTINE, ctx=None, level=Level.QUARANTINE,
                        reasons=(failure.reason,))
        try:
            ctx = await self.transform(ctx)
        except StageFailure as failure:
            return Plan(action=Action.QUARANTINE, ctx=ctx, level=Level.QUARANTINE,
                        reasons=(failure.reason,))
        verdict = await self.classify(ctx)
        defects = mime.structural_defects(ctx.email)
        if defects and not ctx.is_internal:
            # Classifiers may not have seen all of a broken message; do not let it out unseen.
            verdict = Verdict((*verdict.findings, Finding(
                level=Level.QUARANTINE, code="mime.broken", source="siegel",
                reason=Text(de=f"Fehlerhafter MIME-Aufbau ({'; '.join(defects[:5])})",
                            en=f"broken MIME structure ({'; '.join(defects[:5])})"))))
        if released:
            verdict = verdict.without_releasable_quarantine()
        reasons = tuple(f.reason for f in verdict.deciding)
        if verdict.level is Level.QUARANTINE:
            return Plan(action=Action.QUARANTINE, ctx=ctx, verdict=verdict, level=verdict.level,
                        reasons=reasons)
        try:
            out_ctx = attrs.evolve(self.rewrite(ctx), verdict=verdict)
        except StageFailure as failure:
            return Plan(action=Action.QUARANTINE, ctx=ctx, verdict=verdict, level=verdict.level,
                        reasons=(failure.reason,))
        if verdict.level is Level.PLAIN:
            return Plan(action=Action.DELIVER, ctx=ctx, verdict=verdict, level=verdict.level,
                        reasons=reasons, outgoing=out_ctx)
        choice = await self.choose_method(out_ctx)
        if choice.method is None:
            tried = "; ".join(f"{name}: {a.reason.en}" for name, a in choice.tried) or "none"
            tried_de = "; ".join(f"{name}: {a.reason.de}" for name, a in choice.tried) or "keines"
            return Plan(action=Action.QUARANTINE, ctx=ctx, verdict=verdict, level=verdict.level,
                        outgoing=out_ctx, choice=choice, reasons=(*reasons, Text(
                            de=f"Kein Schutzverfahren kann {recipient.display} bedienen ({tried_de})",
                            en=f"no protection method can serve {recipient.display} ({tried})")))
        # Why a method before the chosen one could not serve stays with the copy (queue show).
        skipped = tuple(Text(de=f"{name}: {a.reason.de}", en=f"{name}: {a.reason.en}")
                        for name, a in choice.tried if not a.available)
        return Plan(action=Action.PROTECT, ctx=ctx, verdict=verdict, level=verdict.level,
                    reasons=(*reasons, *skipped), outgoing=out_ctx, choice=choice)

    async def _protect(self, message: Message, job: Job, tenant: Tenant,
                       ctx: RecipientContext, method: ProtectionMethod,
                       reasons: tuple[Text, ...], level: Level | None) -> Decision:
        what = Text(de=f"Schutzverfahren {method.name!r} (Plugin {method.plugin!r})",
                    en=f"protection method {method.name!r} (plugin {method.plugin!r})")
        try:
            result = await self._guarded(
                method.protect(ctx), self.config.delivery.protect_timeout_seconds, what)
        except StageFailure as failure:
            if isinstance(failure.__cause__, StoreError):
                # The store did not answer the plugin (a database restart, a cut connection):
                # a cause that passes, so back to the queue, still quarantined if it persists.
                return self._retry_protect(message, job, method.name, reasons, level,
                                           RetryLater(reason=failure.reason))
            return self.quarantine(message, job, [failure.reason], level=level)
        if isinstance(result, Held):
            first_time = job.hold_until is None
            return Decision(
                update=RecipientUpdate(
                    state=RecipientState.HELD, detail=f"held by {method.name}",
                    reasons=[r.en for r in (*reasons, result.reason)], level=level,
                    method=method.name, attempts=job.attempts, hold_until=result.until),
                notices=(self._notice(NoticeKind.DELAYED, message, job, [result.reason]),)
                if first_time else (),
                events=(self._event("held", message, job, method=method.name,
                                    until=str(result.until or "")),),
            )
        if isinstance(result, RetryLater):
            return self._retry_protect(message, job, method.name, reasons, level, result)
        if not isinstance(result, Protected) or not result.outgoing:
            return self.quarantine(message, job, [Text(de=f"{what.de} lieferte kein Ergebnis",
                                                       en=f"{what.en} returned no result")],
                                   level=level)
        for outgoing in result.outgoing:
            if ctx.is_raw(outgoing.raw) or outgoing.raw == message.raw:
                return self.quarantine(message, job, [Text(
                    de=f"{what.de} lieferte die Nachricht ungeschützt zurück",
                    en=f"{what.en} returned the message unprotected")], level=level)
        return await self._deliver(message, job, tenant, result.outgoing, protected=True,
                                   level=level, method=method.name,
                                   reasons=(*reasons, result.reason))

    def _retry_protect(self, message: Message, job: Job, method: str, reasons: tuple[Text, ...],
                       level: Level | None, result: RetryLater) -> Decision:
        """The method could not protect the copy this time: queue it again with back-off, or
        quarantine it when that happened too often in a row (or the copy is too old)."""
        retries = job.protect_retries + 1
        retry_at = self._retry_at(job)
        if retries > self.config.delivery.max_protect_retries or retry_at is None:
            return self.quarantine(message, job, [*reasons, Text(
                de=f"Schutzverfahren {method!r} gab nach {retries} Versuchen auf: {result.reason.de}",
                en=f"protection method {method!r} gave up after {retries} tries: "
                f"{result.reason.en}")], level=level)
        return Decision(
            update=RecipientUpdate(state=RecipientState.ACCEPTED, detail=result.reason.en,
                                   reasons=[r.en for r in (*reasons, result.reason)],
                                   level=level, method=method, attempts=job.attempts + 1,
                                   next_attempt_at=retry_at, protect_retries=retries),
            events=(self._event("deferred", message, job, method=method,
                                reply=result.reason.en[:500], retry_at=retry_at.isoformat()),),
        )

    def _retry_at(self, job: Job) -> datetime | None:
        settings = self.config.delivery
        now = self.now
        if now - job.received_at >= timedelta(hours=settings.give_up_after_hours):
            return None
        delay = min(settings.first_retry_seconds * 2 ** job.attempts, settings.max_retry_seconds)
        return now + timedelta(seconds=delay * random.uniform(0.9, 1.1))

    async def _deliver(self, message: Message, job: Job, tenant: Tenant,
                       outgoing: Iterable[Outgoing], *, protected: bool, level: Level | None,
                       method: str | None, reasons: Iterable[Text]) -> Decision:
        reasons = tuple(reasons)
        results: list[DeliveryResult] = []
        for copy in outgoing:
            channel = self.registry.delivery_channels.get(copy.channel)
            if channel is None or channel.plugin not in tenant.enabled_plugins:
                return self.quarantine(message, job, [Text(
                    de=f"Zustellweg {copy.channel!r} ist für diesen Mandanten nicht aktiv",
                    en=f"delivery channel {copy.channel!r} is not enabled for this tenant")],
                    level=level)
            what = Text(de=f"Zustellweg {channel.name!r} (Plugin {channel.plugin!r})",
                        en=f"delivery channel {channel.name!r} (plugin {channel.plugin!r})")
            try:
                result = await self._guarded(channel.deliver(copy, tenant),
                                             self.config.delivery.deliver_timeout_seconds, what,
                                             late_fails=False)
            except StageFailure as failure:
                result = DeliveryResult.temporary_failure(failure.reason.en)
            if not isinstance(result, DeliveryResult):
                result = DeliveryResult.temporary_failure(f"{what.en} returned no DeliveryResult")
            results.append(result)
            if result.status is not DeliveryStatus.DELIVERED:
                break
        detail = "; ".join(r.detail for r in results)
        reason_texts = [r.en for r in reasons]
        attempts = job.attempts + 1
        last = results[-1]
        if last.status is DeliveryStatus.DELIVERED:
            notices = (self._notice(NoticeKind.PROTECTED, message, job, reasons),) if (
                protected) else ()
            in_doubt = {"possible_duplicate": "yes"} if job.handoffs else {}
            if job.handoffs:
                log.warning("message %s to %s delivered again after a crash that came between an "
                            "earlier handoff and its commit: the receiving side may have it twice",
                            job.message_id, job.recipient)
            return Decision(
                update=RecipientUpdate(state=RecipientState.DELIVERED, detail=detail,
                                       reasons=reason_texts, level=level, method=method,
                                       attempts=attempts),
                notices=notices,
                events=(self._event("delivered", message, job, method=method or "plain",
                                    reply=detail[:500], **in_doubt),),
            )
        retry_at = self._retry_at(job) if last.status is DeliveryStatus.TEMPORARY_FAILURE else None
        if retry_at is not None:
            return Decision(
                update=RecipientUpdate(state=RecipientState.ACCEPTED, detail=detail,
                                       reasons=reason_texts, level=level, method=method,
                                       attempts=attempts, next_attempt_at=retry_at),
                events=(self._event("deferred", message, job, reply=detail[:500],
                                    retry_at=retry_at.isoformat()),),
            )
        failed = Text(de=f"Zustellung gescheitert: {detail}", en=f"delivery failed: {detail}")
        notices = (self._notice(NoticeKind.UNDELIVERABLE, message, job, [failed]),) if (
            message.origin is Origin.SMTP) else ()
        return Decision(
            update=RecipientUpdate(state=RecipientState.FAILED, detail=detail,
                                   reasons=[*reason_texts, failed.en], level=level,
                                   method=method, attempts=attempts),
            notices=notices,
            events=(self._event("failed", message, job, reply=detail[:500]),),
        )

