"""Embedding siegel in an application: submit messages, ask what became of them, run the dry run,
follow the audit events, from the application's own process and event loop.

::

    import siegel

    async with siegel.open("siegel.toml") as gateway:
        message_id = await gateway.submit(notice, sender="bauamt@kreis.example",
                                          recipients=["buerger@example.net"])
        status = await gateway.status(message_id)

A message goes the listener's way (:func:`siegel.submission.accept`): the same checks, refused
with the same SMTP reply (:class:`Refused`), and :meth:`Gateway.submit` returns only once it is
stored durably. From there the worker classifies, protects, delivers and notifies it as any
other. Where the worker runs is chosen at :func:`open`:

* ``worker=True`` (the default): in the application's event loop, as a task, until the ``async
  with`` block ends. Leaving the block stops claiming, lets running jobs finish for up to
  ``grace_seconds`` and closes the store; a job cut off there is taken up again at the next
  start. Only one process may work a store, so ``siegel serve`` must not run on it meanwhile.
* ``worker=False``: submit only; a ``siegel serve`` working the same store delivers (it finds a
  new message within its ``delivery.poll_seconds``).

Without an event loop of its own, an application uses :func:`open_sync`, which runs the same
gateway in a background thread.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import concurrent.futures
import contextlib
import email.policy
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import attrs

from siegel import explain as explaining
from siegel.admission import Refused
from siegel.bootstrap import bootstrap
from siegel.config import Config
from siegel.explain import Explanation, RecipientExplanation, RefusedRecipient
from siegel.manager import PluginRegistry
from siegel.model import AuditEvent, Level, RecipientState
from siegel.plugin import Clock, hookimpl
from siegel.runtime import Runtime, open_store
from siegel.store import MessageNotFound, RecipientRecord
from siegel.submission import Limits, Permit, accept

_T = TypeVar("_T")


class UnknownMessage(LookupError):
    """No message with this id is in the store (or it was purged)."""


@attrs.frozen(kw_only=True)
class RecipientStatus:
    """One recipient's copy of a message: where it stands and why."""

    recipient: str
    state: RecipientState
    #: The classification's level, once classified.
    level: Level | None
    #: The protection method used or waited for (``password_pdf``, ``smime``), if any.
    method: str | None
    #: What the last step said (e.g. why it is held, the relay's answer).
    detail: str
    reasons: tuple[str, ...]
    attempts: int
    updated_at: datetime
    hold_until: datetime | None

    @property
    def final(self) -> bool:
        """Delivered, failed, expired: nothing more will happen to this copy."""
        return self.state in FINAL_STATES


@attrs.frozen(kw_only=True)
class MessageStatus:
    """A message and its recipients' copies (:meth:`Gateway.status`)."""

    id: str
    tenant: str
    #: The envelope sender (``""``: the null sender).
    sender: str
    received_at: datetime
    size: int
    recipients: tuple[RecipientStatus, ...]

    @property
    def final(self) -> bool:
        return all(r.final for r in self.recipients)

    @classmethod
    def of(cls, records: Sequence[RecipientRecord]) -> MessageStatus:
        first = records[0]
        return cls(id=first.message_id, tenant=first.tenant, sender=first.mail_from,
                   received_at=first.received_at, size=first.size, recipients=tuple(
                       RecipientStatus(recipient=r.recipient, state=r.state, level=r.level,
                                       method=r.method, detail=r.detail, reasons=r.reasons,
                                       attempts=r.attempts, updated_at=r.updated_at,
                                       hold_until=r.hold_until) for r in records))


FINAL_STATES = frozenset({RecipientState.DELIVERED, RecipientState.FAILED,
                          RecipientState.EXPIRED})


@attrs.frozen(kw_only=True)
class _TenantPermit:
    """``tenant=`` of :meth:`Gateway.submit`: the sender must be one of that tenant's."""

    name: str
    tenant: str
    senders: tuple[str, ...] = ()


class EventStream:
    """Audit events as this process records them, from the moment the stream was made
    (:meth:`Gateway.events`): an async iterator, closed with :meth:`close` or by leaving
    ``async with``. It keeps up to ``buffer`` events that were not read yet; beyond that the
    oldest are dropped and counted in :attr:`dropped` (the store keeps every event anyway:
    :meth:`Gateway.audit_trail`)."""

    def __init__(self, hub: _EventHub, buffer: int) -> None:
        self._hub = hub
        self._events: collections.deque[AuditEvent] = collections.deque(maxlen=buffer)
        self._ready = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.dropped = 0
        self.closed = False
        hub.streams.add(self)

    def _put(self, event: AuditEvent) -> None:
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append(event)
        self._ready.set()

    def put(self, event: AuditEvent) -> None:
        if threading.get_ident() == self._hub.thread:
            self._put(event)
        else:
            self._loop.call_soon_threadsafe(self._put, event)

    def drain(self) -> list[AuditEvent]:
        """The events received and not read yet, without waiting for more."""
        events = list(self._events)
        self._events.clear()
        return events

    def close(self) -> None:
        self.closed = True
        self._hub.streams.discard(self)
        self._ready.set()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> AuditEvent:
        while not self._events:
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._events.popleft()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class _EventHub:
    """Registered as a plugin, it hands every audit event to the open streams."""

    def __init__(self) -> None:
        self.streams: set[EventStream] = set()
        self.thread = threading.get_ident()

    @hookimpl
    def siegel_audit_event(self, event: AuditEvent) -> None:
        for stream in list(self.streams):
            stream.put(event)

    def close(self) -> None:
        for stream in list(self.streams):
            stream.close()


class Gateway:
    """The configured gateway inside an application (:func:`open`)."""

    def __init__(self, runtime: Runtime, *, limits: Limits) -> None:
        self.runtime = runtime
        #: The size limits submissions are checked against (the listeners' strictest).
        self.limits = limits
        self._hub = _EventHub()

    @property
    def config(self) -> Config:
        return self.runtime.config

    @property
    def registry(self) -> PluginRegistry:
        return self.runtime.registry

    async def submit(self, message: bytes | EmailMessage, *, sender: str | None = None,
                     recipients: Iterable[str] | None = None, tenant: str | None = None) -> str:
        """Accept a message as the SMTP listener does; returns its id once it is stored durably.

        ``sender`` and ``recipients`` are the envelope; without them they come from the
        ``From``/``To``/``Cc``/``Bcc`` headers (``Bcc`` is not removed: leave it out of the
        message and name the address in ``recipients``). With ``tenant``, the sender must be an
        address of that tenant. Raises :class:`Refused` with the listener's answer (``451``:
        not stored, try again; ``5xx``: will not be accepted as it is)."""
        raw = (message.as_bytes(policy=email.policy.SMTP) if isinstance(message, EmailMessage)
               else bytes(message))
        if sender is None or recipients is None:
            try:
                header_sender, header_recipients = explaining.header_envelope(raw)
            except ValueError as exc:
                raise Refused(f"554 5.6.0 The envelope cannot be read from the headers: "
                              f"{exc}") from None
            sender = header_sender if sender is None else sender
            recipients = header_recipients if recipients is None else recipients
        permit: Permit | None = None
        if tenant is not None:
            if tenant not in self.config.tenants:
                raise ValueError(f"unknown tenant {tenant!r} "
                                 f"(known: {', '.join(self.config.tenants)})")
            permit = _TenantPermit(name=f"tenant {tenant}", tenant=tenant)
        return await accept(self.runtime, raw, sender, list(recipients), limits=self.limits,
                            permit=permit)

    async def status(self, message_id: str) -> MessageStatus:
        """Where a message and each of its copies stand; raises :class:`UnknownMessage`."""
        try:
            records = await self.runtime.store.recipients(message_id)
        except MessageNotFound:
            records = []
        if not records:
            raise UnknownMessage(message_id)
        return MessageStatus.of(records)

    async def wait(self, message_id: str, *states: RecipientState,
                   max_seconds: float = 60.0) -> MessageStatus:
        """Wait until every copy is in one of ``states`` (default: a final state); raises
        :class:`TimeoutError` after ``max_seconds``. It asks the store after each audit
        event of the message, and at least once a second."""
        wanted = frozenset(states) or FINAL_STATES
        async with asyncio.timeout(max_seconds):
            with self._stream() as stream:
                while True:
                    status = await self.status(message_id)
                    if all(r.state in wanted for r in status.recipients):
                        return status
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            async for event in stream:
                                if event.message_id == message_id:
                                    break

    async def audit_trail(self, message_id: str) -> builtins.list[AuditEvent]:
        """Every audit event the store holds for a message, oldest first."""
        return await self.runtime.store.events(message_id)

    async def explain(self, message: bytes | EmailMessage, *, sender: str | None = None,
                      recipients: Iterable[str] | None = None,
                      tenant: str | None = None) -> Explanation:
        """The dry run of ``siegel explain``: what the gateway would do with each recipient's
        copy, and why, without storing, protecting, sending or notifying anything. Raises
        :class:`Refused` when the listener refuses the sender or the message, and
        :class:`siegel.runtime.NoTenant` when no tenant owns it and none is given."""
        raw = (message.as_bytes(policy=email.policy.SMTP) if isinstance(message, EmailMessage)
               else bytes(message))
        if sender is None or recipients is None:
            header_sender, header_recipients = explaining.header_envelope(raw)
            sender = header_sender if sender is None else sender
            recipients = header_recipients if recipients is None else recipients
        admitted = explaining.admit(self.config, sender, list(recipients), raw)
        return await explaining.explain(
            self.config, self.registry, raw, admitted.sender, list(admitted.recipients), tenant,
            services=explaining.DryRun(store=self.runtime.store, config=self.config),
            refused=admitted.refused)

    def events(self, *, buffer: int = 10_000) -> EventStream:
        """Subscribe to the audit events this process records from now on (accepted,
        classified, held, protected, delivered, ...)::

            async with gateway.events() as events:
                async for event in events:
                    print(event.kind, event.message_id, event.recipient)
        """
        return EventStream(self._hub, buffer)

    @contextmanager
    def _stream(self) -> Iterator[EventStream]:
        stream = self.events(buffer=1000)
        try:
            yield stream
        finally:
            stream.close()

    async def process(self) -> None:
        """Process everything that is due now, including the notices it causes (for
        ``worker=False`` and tests; the worker does this by itself)."""
        await self.runtime.run_until_idle()


@asynccontextmanager
async def open(
    config: Config | str | Path,
    *,
    registry: PluginRegistry | None = None,
    worker: bool = True,
    grace_seconds: float = 30.0,
    clock: Clock | None = None,
    extra_plugins: Iterable[tuple[str, object]] = (),
) -> AsyncIterator[Gateway]:
    """Open the configured gateway in the running event loop (see the module's description for
    ``worker``). ``config`` is a configuration file, or a :class:`~siegel.Config` with the
    ``registry`` it was validated against (default: the installed plugins without the blocked
    ones). Raises :class:`~siegel.ConfigError`, :class:`~siegel.PluginError`,
    :class:`~siegel.KeyFileError` or :class:`~siegel.StoreError` when it cannot open."""
    if isinstance(config, Config):
        if registry is None:
            registry = PluginRegistry.load(extra=extra_plugins,
                                           blocked=config.file.plugins.blocked)
    else:
        config, registry = bootstrap(Path(config), extra_plugins=extra_plugins)
    runtime = Runtime(config, registry, open_store(config), clock=clock)
    gateway = Gateway(runtime, limits=Limits.of_listeners(config))
    registry.pm.register(gateway._hub, name=f"siegel.embed.events.{id(gateway)}")
    try:
        if worker:
            await runtime.start()
        else:
            await runtime.store.open()
            await runtime.start_resources()
        try:
            yield gateway
        finally:
            if worker:
                await runtime.stop(grace_seconds)
            else:
                await runtime.close_channels()
                await runtime.stop_resources()
                await runtime.store.close()
    finally:
        gateway._hub.close()
        registry.pm.unregister(gateway._hub)


class SyncGateway:
    """:class:`Gateway` for applications without an event loop (:func:`open_sync`): the same
    methods, blocking; the gateway and its worker run in a background thread's loop."""

    def __init__(self, gateway: Gateway, loop: asyncio.AbstractEventLoop) -> None:
        self.gateway = gateway
        self._loop = loop

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine in the gateway's loop (e.g. one of :attr:`gateway`'s methods that
        has no blocking twin) and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def submit(self, message: bytes | EmailMessage, *, sender: str | None = None,
               recipients: Iterable[str] | None = None, tenant: str | None = None) -> str:
        return self.run(self.gateway.submit(message, sender=sender, recipients=recipients,
                                              tenant=tenant))

    def status(self, message_id: str) -> MessageStatus:
        return self.run(self.gateway.status(message_id))

    def wait(self, message_id: str, *states: RecipientState,
             max_seconds: float = 60.0) -> MessageStatus:
        return self.run(self.gateway.wait(message_id, *states, max_seconds=max_seconds))

    def explain(self, message: bytes | EmailMessage, *, sender: str | None = None,
                recipients: Iterable[str] | None = None,
                tenant: str | None = None) -> Explanation:
        return self.run(self.gateway.explain(message, sender=sender, recipients=recipients,
                                               tenant=tenant))


@contextmanager
def open_sync(config: Config | str | Path, **options: Any) -> Iterator[SyncGateway]:
    """:func:`open` for code without an event loop: the gateway (and, with ``worker=True``,
    its worker) runs in a background thread until the ``with`` block ends."""
    loop = asyncio.new_event_loop()
    opened: concurrent.futures.Future[Gateway] = concurrent.futures.Future()
    done = asyncio.Event()

    async def run() -> None:
        try:
            async with open(config, **options) as gateway:
                opened.set_result(gateway)
                await done.wait()
        except BaseException as exc:
            if not opened.done():
                opened.set_exception(exc)
            else:
                raise

    def serve() -> None:
        try:
            loop.run_until_complete(run())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())

    thread = threading.Thread(target=serve, name="siegel-gateway", daemon=True)
    thread.start()
    try:
        gateway = opened.result()
        try:
            yield SyncGateway(gateway, loop)
        finally:
            loop.call_soon_threadsafe(done.set)
    finally:
        thread.join()
        loop.close()


__all__ = [
    "FINAL_STATES",
    "EventStream",
    "Explanation",
    "Gateway",
    "MessageStatus",
    "RecipientExplanation",
    "RecipientStatus",
    "Refused",
    "RefusedRecipient",
    "SyncGateway",
    "UnknownMessage",
    "open",
    "open_sync",
]
