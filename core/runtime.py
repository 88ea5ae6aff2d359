"""The running gateway: the store, the pipeline and the workers that drive it.

Also the library entry point: ``Runtime.submit()`` accepts a message the same way the SMTP listener
does, and ``run_until_idle()`` processes everything that is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta

import attrs

from siegel import bounces, extract, handoffs
from siegel.accounts import NAMESPACE as ACCOUNTS_NAMESPACE
from siegel.accounts import Account, Accounts, PasswordSlot
from siegel.addresses import Address
from siegel.clock import SystemClock, new_message_id
from siegel.config import Config, Tenant
from siegel.crypto import ContentCipher
from siegel.manager import PluginRegistry
from siegel.model import (
    AuditEvent,
    Envelope,
    Level,
    Message,
    Notice,
    Origin,
    RecipientState,
    SystemMail,
    Text,
)
from siegel.pipeline import Decision, Pipeline
from siegel.plugin import Clock, Resource
from siegel.sqlite_store import SQLiteStore
from siegel.state import PluginState
from siegel.store import ContentDestroyed, Job, LeaseLost, MessageStore, RecipientUpdate, StoreError
from siegel.store_key import verify_store_key

log = logging.getLogger(__name__)


#: Pauses between tries to record a job's outcome while the store is unreachable (45 s in all).
_FINISH_RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 5.0)


class NoTenant(Exception):
    """Neither the sender nor the recipients belong to a configured tenant."""


def tenant_for(config: Config, sender: Address | None, recipients: Sequence[Address]) -> Tenant:
    """A message belongs to the tenant of its sender, or (inbound) of all its recipients."""
    tenant = config.tenant_of_sender(sender)
    if tenant is not None:
        return tenant
    owners = {config.tenant_of_recipient(r) for r in recipients}
    if len(owners) == 1 and None not in owners:
        owner = owners.pop()
        assert owner is not None
        return owner
    raise NoTenant(
        "neither the sender nor all recipients belong to one tenant's domains "
        f"(sender {sender or '<>'}, recipients {', '.join(map(str, recipients))})"
    )


def open_store(config: Config) -> MessageStore:
    """The store the configuration names, with its content key (not opened yet)."""
    cipher = ContentCipher.from_key_file(config.path(config.store.key_file))
    settings = config.store
    if settings.backend == "postgresql":
        from siegel.pg_store import PostgreSQLStore

        assert settings.dsn is not None
        return PostgreSQLStore(settings.dsn, cipher, password=store_password(config),
                               schema=settings.schema, pool_size=settings.pool_size)
    return SQLiteStore(config.path(settings.path), cipher)


def store_password(config: Config) -> str | None:
    """The PostgreSQL password from ``[store] password_file`` or ``password_env``; a missing
    file or variable raises :class:`~siegel.StoreError` naming it."""
    settings = config.store
    if settings.password_file is not None:
        path = config.path(settings.password_file)
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise StoreError(f"[store] password_file {path}: cannot read it ({exc.strerror})") from None
    if settings.password_env is not None:
        value = os.environ.get(settings.password_env)
        if value is None:
            raise StoreError(f"[store] password_env: the environment variable "
                             f"{settings.password_env} is not set")
        return value
    return None


class Runtime:
    """Implements :class:`siegel.Services` for plugins."""

    def __init__(
        self,
        config: Config,
        registry: PluginRegistry,
        store: MessageStore,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.store = store
        self._clock: Clock = clock or SystemClock()
        self.pipeline = Pipeline(config, registry, self)
        self._wake = asyncio.Event()
        self._handoff_gate = handoffs.HandoffGate()
        self._worker: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._started: list[Resource] = []

    # -- Services ----------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self._clock

    async def send_system_mail(self, tenant: str, mail: SystemMail) -> str:
        owner = self.config.tenants.get(tenant)
        if mail.about is not None and owner is not None and owner.bounce_address is not None:
            # A bounce of this mail must find its way back to the held copy: VERP sender.
            token = await bounces.issue(self.state(bounces.TOKENS), tenant=tenant,
                                        message_id=mail.about.message_id,
                                        recipient=mail.about.recipient)
            mail = attrs.evolve(mail, mail_from=bounces.verp_address(owner.bounce_address, token))
        message = self._system_message(tenant, mail)
        await self.store.accept(message)
        self._wake.set()
        return message.id

    async def release(self, message_id: str, recipient: Address) -> None:
        await self.store.requeue(message_id, recipients=[str(recipient)],
                                 states=[RecipientState.HELD], release=False,
                                 now=self._clock.now())
        self._wake.set()

    def state(self, namespace: str) -> PluginState:
        return PluginState(self.store, namespace, self._clock)

    def accounts(self, tenant: str) -> Accounts:
        resolved = self.config.tenants.get(tenant)

        def password_hook(account: Account, password: str) -> Mapping[str, PasswordSlot]:
            if resolved is None:
                return {}
            return self.registry.account_password_slots(resolved, account, password)

        return Accounts(self.state(ACCOUNTS_NAMESPACE), tenant, password_hook=password_hook)

    def portal_link(self, tenant: str, path: str) -> str:
        return self.config.portal_link(tenant, path)

    async def report(self, tenant: str, *, notices: Sequence[Notice] = (),
                     events: Sequence[AuditEvent] = ()) -> None:
        mails = await self._notices_to_mail(tenant, notices)
        for mail in mails:
            await self.store.accept(mail)
        await self.store.record_events(events)
        for event in events:
            self.registry.audit(event)
        if mails:
            self._wake.set()

    # -- bounces -----------------------------------------------------------------------------

    def bounce_token(self, recipient: Address) -> str | None:
        """The token if ``recipient`` is a tenant's VERP bounce address, else None."""
        for tenant in self.config.tenants.values():
            if tenant.bounce_address is not None:
                token = bounces.token_in(recipient, tenant.bounce_address)
                if token is not None:
                    return token
        return None

    async def bounce_token_known(self, token: str) -> bool:
        return await bounces.look_up(self.state(bounces.TOKENS), token) is not None

    async def accept_bounce(self, raw: bytes, tokens: Iterable[str]) -> None:
        """Act on a bounce sent to VERP addresses: a permanent failure ends the held copy its
        token stands for (the worker fails it and tells the sender); a transient one is only
        recorded. Everything is in the store when this returns. Raises
        :class:`~siegel.StoreError`."""
        tokens_state = self.state(bounces.TOKENS)
        for token in dict.fromkeys(tokens):
            found = await bounces.look_up(tokens_state, token)
            if found is None:  # expired or used since RCPT
                continue
            recipient = Address.parse(found.recipient)
            # Parsing is CPU work on untrusted input: not on the event loop.
            report = await asyncio.to_thread(bounces.read_bounce, raw, recipient)
            await self._bounced(found, report)

    async def _bounced(self, found: bounces.BounceToken, report: bounces.BounceReport) -> None:
        """Record what a bounce said; a permanent failure ends the held copy at once (and, when
        the address itself does not exist, every other held copy for it in the tenant)."""
        now = self._clock.now()
        recipient = Address.parse(found.recipient)
        ended: list[str] = []
        if report.kind is bounces.BounceKind.PERMANENT:
            copies = [found.message_id]
            if report.address_unknown:
                held = await self.store.list(states=[RecipientState.HELD], tenant=found.tenant,
                                             recipient=str(recipient), limit=10_000)
                copies += [record.message_id for record in held]
            failures = self.state(bounces.FAILED)
            for message_id in dict.fromkeys(copies):
                # The record first: should the next step not happen, the copy still ends as
                # bounced, only later (when its hold runs out).
                await failures.put(bounces.failure_key(found.tenant, message_id, recipient),
                                   report.encode(), ttl=timedelta(days=bounces.TOKEN_DAYS))
                if await self.store.end_hold(message_id, str(recipient), now):
                    ended.append(message_id)
            await self.state(bounces.TOKENS).delete(found.key)  # single use: the copy ended
        events = [AuditEvent(at=now, kind="bounce", tenant=found.tenant, message_id=message_id,
                             recipient=found.recipient,
                             detail={"kind": report.kind.value, "status": report.status,
                                     "diagnostic": report.diagnostic,
                                     "hold_ended": str(message_id in ended).lower()})
                  for message_id in dict.fromkeys([found.message_id, *ended])]
        await self.store.record_events(events)
        for event in events:
            self.registry.audit(event)
        log.info("bounce for message %s: %s %s; %d held copies ended", found.message_id,
                 report.kind.value, report.status or "-", len(ended))
        if ended:
            self._wake.set()

    async def _system_mail_refused(self, message: Message, detail: str) -> None:
        """A system mail with a VERP sender that the relay itself refused for good is a bounce
        that never left: act on it the same way."""
        if message.envelope.mail_from is None:
            return
        token = self.bounce_token(message.envelope.mail_from)
        found = await bounces.look_up(self.state(bounces.TOKENS), token) if token else None
        if found is not None:
            await self._bounced(found, bounces.report_from_reply(detail))

    # -- accepting ---------------------------------------------------------------------------

    def tenant_for(self, sender: Address | None, recipients: Sequence[Address]) -> Tenant:
        return tenant_for(self.config, sender, recipients)

    async def submit(
        self, raw: bytes, mail_from: str | Address | None, rcpt_to: Iterable[str | Address]
    ) -> str:
        """Store a message durably and queue it; returns its id. Raises :class:`NoTenant`,
        :class:`~siegel.InvalidAddress` or :class:`~siegel.StoreError`."""
        sender = Address.parse(mail_from) if isinstance(mail_from, str) and mail_from else (
            mail_from if isinstance(mail_from, Address) else None)
        recipients = tuple(r if isinstance(r, Address) else Address.parse(r) for r in rcpt_to)
        tenant = self.tenant_for(sender, recipients)
        message = Message(id=new_message_id(), tenant=tenant.id,
                          envelope=Envelope(sender, recipients), raw=raw,
                          received_at=self._clock.now())
        event = AuditEvent(at=message.received_at, kind="accepted", tenant=tenant.id,
                           message_id=message.id,
                           detail={"size": str(len(raw)), "recipients": str(len(recipients)),
                                   "sender": str(sender or "<>")})
        await self.store.accept(message, [event])
        self.registry.audit(event)
        self._wake.set()
        return message.id

    async def submit_portal_message(self, tenant: str, raw: bytes, *, mail_from: Address,
                                    recipients: Sequence[Address]) -> str:
        """See :meth:`siegel.plugin.Services.submit_portal_message`."""
        if tenant not in self.config.tenants:
            raise NoTenant(f"there is no tenant {tenant!r}")
        message = Message(id=new_message_id(), tenant=tenant,
                          envelope=Envelope(mail_from, tuple(recipients)), raw=raw,
                          received_at=self._clock.now(), origin=Origin.PORTAL)
        event = AuditEvent(at=message.received_at, kind="accepted", tenant=tenant,
                           message_id=message.id,
                           detail={"size": str(len(raw)), "recipients": str(len(recipients)),
                                   "sender": str(mail_from), "origin": Origin.PORTAL.value})
        await self.store.accept(message, [event])
        self.registry.audit(event)
        self._wake.set()
        return message.id

    def _system_message(self, tenant: str, mail: SystemMail) -> Message:
        return Message(
            id=new_message_id(), tenant=tenant,
            envelope=Envelope(Address.parse(mail.mail_from) if mail.mail_from else None,
                              tuple(Address.parse(r) for r in mail.recipients)),
            raw=mail.raw, received_at=self._clock.now(), origin=Origin.SYSTEM,
            channel=mail.channel)

    # -- processing --------------------------------------------------------------------------

    async def _notices_to_mail(self, tenant_id: str, notices: Sequence[Notice]) -> list[Message]:
        tenant = self.config.tenants.get(tenant_id)
        if tenant is None or not notices:
            return []
        messages: list[Message] = []
        for notifier in self.registry.enabled(self.registry.notifiers, tenant.enabled_plugins):
            for notice in notices:
                try:
                    async with asyncio.timeout(self.config.delivery.deliver_timeout_seconds):
                        mails = await notifier.notify(notice, tenant)
                    messages += [self._system_message(tenant_id, m) for m in mails]
                except Exception:
                    log.exception("notifier %r (plugin %r) failed for a %s notice of message %s",
                                  notifier.name, notifier.plugin, notice.kind, notice.message_id)
        return messages

    async def process(self, job: Job) -> None:
        """Process one claimed job and store the outcome, renewing its lease meanwhile: only
        the jobs of a process that died (or hangs with its loop stopped) run out of lease and
        are taken over, never a slow job of a live one."""
        renewal = asyncio.create_task(self._keep_lease(job), name=f"siegel-lease-{job.lease}")
        try:
            with handoffs.processing(self._handoff_gate.for_job(self.store, job)):
                await self._process(job)
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal

    async def _keep_lease(self, job: Job) -> None:
        seconds = self.config.delivery.lease_seconds
        while True:
            await asyncio.sleep(seconds / 3)
            try:
                kept = await self.store.renew_lease(
                    job, self._clock.now() + timedelta(seconds=seconds))
            except StoreError:
                log.warning("could not renew the lease of %s/%s", job.message_id, job.recipient)
                continue
            if not kept:
                return

    async def _process(self, job: Job) -> None:
        try:
            message = await self.store.load(job.message_id)
        except ContentDestroyed:
            decision = Decision(update=RecipientUpdate(
                state=RecipientState.FAILED, detail="content destroyed before delivery",
                attempts=job.attempts))
            await self._finish(job, decision, tenant_id=None)
            return
        if job.starts > self.config.delivery.max_processing_starts:
            await self._finish(job, self.pipeline.poison(message, job),
                               tenant_id=message.tenant)
            return
        try:
            decision = await self.pipeline.process(message, job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug in siegel itself: stop the copy, never let it out.
            log.exception("internal error processing message %s", job.message_id)
            decision = self.pipeline.quarantine(message, job, [Text(
                de=f"Interner Fehler ({type(exc).__name__})", en=f"internal error ({type(exc).__name__})"
            )], level=Level.QUARANTINE)
        await self._finish(job, decision, tenant_id=message.tenant)
        if message.origin is Origin.SYSTEM and decision.update.state is RecipientState.FAILED:
            try:
                await self._system_mail_refused(message, decision.update.detail)
            except StoreError:  # the held copy then ends when its hold runs out
                log.exception("could not act on the refused system mail %s", message.id)

    async def _finish(self, job: Job, decision: Decision, tenant_id: str | None) -> None:
        mails = await self._notices_to_mail(tenant_id, decision.notices) if tenant_id else []
        # The outcome is known (a copy may already be with the relay): a store that is away for
        # a moment (a database restart) must not make another worker redo the copy, so the
        # write is tried again while this worker still holds the lease.
        for delay in (*_FINISH_RETRY_SECONDS, None):
            try:
                await self.store.finish(job, decision.update, now=self._clock.now(),
                                        new_messages=mails, events=decision.events)
                break
            except LeaseLost:
                log.warning("job %s/%s was taken over by another worker", job.message_id,
                            job.recipient)
                return
            except StoreError:
                if delay is None:
                    raise
                log.warning("could not record the outcome of %s/%s; trying again in %s s",
                            job.message_id, job.recipient, delay)
                await asyncio.sleep(delay)
        for event in decision.events:
            self.registry.audit(event)
        if mails:
            self._wake.set()

    async def run_due(self, limit: int | None = None) -> int:
        """Claim and process what is due now; returns how many jobs ran."""
        limit = limit or self.config.delivery.concurrency
        jobs = await self.store.claim_due(self._clock.now(), limit,
                                          self.config.delivery.lease_seconds)
        if jobs:
            await asyncio.gather(*(self.process(job) for job in jobs))
        return len(jobs)

    async def run_until_idle(self, max_rounds: int = 1000) -> None:
        """Process until nothing is due (tests and one-shot use); then close what the delivery
        channels keep open, as nothing is left to deliver."""
        try:
            for _ in range(max_rounds):
                if await self.run_due() == 0:
                    return
            raise RuntimeError(f"still busy after {max_rounds} rounds")
        finally:
            await self.close_channels()
            if not self._started:
                await self.stop_resources()

    async def maintenance(self) -> int:
        """Run the plugins' maintenance tasks for the tenants that enable them; destroy the
        content of finished messages past retention; purge expired plugin state. Among
        instances sharing a store, one at a time does it (the others skip this round)."""
        async with self.store.exclusive("maintenance") as mine:
            if not mine:
                return 0
            for tenant in self.config.tenants.values():
                for task in self.registry.enabled(self.registry.maintenance_tasks,
                                                  tenant.enabled_plugins):
                    try:
                        await task.run(self, tenant)
                    except Exception:
                        log.exception("maintenance task %r (plugin %r) failed for tenant %r",
                                      task.name, task.plugin, tenant.id)
            now = self._clock.now()
            await self.store.state_purge_expired(now)
            return await self.store.destroy_finished_content(
                now - timedelta(days=self.config.store.retention_days))

    # -- the worker loop ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store (refusing a store key that does not belong to it), take it over, start
        the plugins' resources and the worker."""
        await self.store.open()
        try:
            await verify_store_key(self.store, str(self.config.path(self.config.store.key_file)))
        except BaseException:
            await self.store.close()
            raise
        await self.store.take_over()
        await self.start_resources()
        self._worker = asyncio.create_task(self._work(), name="siegel-worker")

    async def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop claiming, let running jobs finish (up to ``grace_seconds``), close the store.

        A job cut off here keeps its lease; the next start (or, with a shared store, another
        instance once the lease runs out) processes it again."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._in_flight:
            _done, pending = await asyncio.wait(self._in_flight, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.close_channels()
        await self.stop_resources()
        await self.store.close()

    async def start_resources(self) -> None:
        """Start the plugins' resources (:class:`siegel.Resource`) in the registry's order. If one
        fails, the ones already started are stopped again and the error is raised: a gateway
        without, say, its render workers would hold every message it accepts."""
        for resource in self.registry.resources.values():
            if resource.start is not None:
                log.debug("starting resource %r (plugin %r)", resource.name, resource.plugin)
                try:
                    await resource.start(self)
                except BaseException:
                    log.exception("starting resource %r (plugin %r) failed",
                                  resource.name, resource.plugin)
                    await self.stop_resources()
                    raise
            self._started.append(resource)

    async def stop_resources(self) -> None:
        """Stop the started resources in reverse order; when none was started (a one-shot run),
        stop every resource, as each may have opened something on first use. A failure is logged
        and the others still stop. Then the core's own attachment reading workers
        (:mod:`siegel.extract`) stop too."""
        started, self._started = self._started, []
        for resource in reversed(started or list(self.registry.resources.values())):
            try:
                await resource.stop()
            except Exception:
                log.exception("stopping resource %r (plugin %r) failed",
                              resource.name, resource.plugin)
        await asyncio.to_thread(extract.WORKERS.stop)

    async def close_channels(self) -> None:
        """Let the delivery channels close what they keep open between deliveries."""
        for channel in self.registry.delivery_channels.values():
            if channel.close is not None:
                try:
                    await channel.close()
                except Exception:
                    log.exception("closing delivery channel %r (plugin %r) failed",
                                  channel.name, channel.plugin)

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("a job failed outside the pipeline; it will be retried when its lease ends",
                      exc_info=task.exception())

    async def _work(self) -> None:
        """Keep up to ``concurrency`` jobs running; a slow job never holds up the others."""
        settings = self.config.delivery
        next_maintenance = self._clock.now()
        while True:
            try:
                if self._clock.now() >= next_maintenance:
                    destroyed = await self.maintenance()
                    if destroyed:
                        log.info("destroyed the content of %d finished messages", destroyed)
                    next_maintenance = self._clock.now() + timedelta(hours=1)
                # Cleared before looking, so a job that ends or arrives from here on wakes the
                # wait below; left set while every slot is busy, the loop would spin.
                self._wake.clear()
                free = settings.concurrency - len(self._in_flight)
                if free > 0:
                    jobs = await self.store.claim_due(self._clock.now(), free,
                                                      settings.lease_seconds)
                    for job in jobs:
                        task = asyncio.create_task(self.process(job),
                                                   name=f"siegel-job-{job.message_id}")
                        self._in_flight.add(task)
                        task.add_done_callback(self._job_done)
                    if len(jobs) == free:
                        await asyncio.sleep(0)
                        continue
            except StoreError:
                log.exception("store error in the worker; retrying in %s s", settings.poll_seconds)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.poll_seconds):
                    await self._wake.wait()
