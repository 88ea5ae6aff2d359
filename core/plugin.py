"""What a plugin author uses: the ``hookimpl`` marker, the objects that registration hooks return,
and the contexts that the pipeline hands to the callables inside them.

Registration hooks run once at start-up and are synchronous; the objects they return carry the async
callables that the pipeline then calls itself, with its own order, time-outs and error handling.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import pluggy

from siegel import extract, mime
from siegel.addresses import Address, DomainMatch
from siegel.extract import Extraction, ExtractLimits
from siegel.model import (
    AuditEvent,
    Availability,
    DeliveryResult,
    Finding,
    IdentityLevel,
    Message,
    Notice,
    Outgoing,
    ProtectionResult,
    SystemMail,
    Verdict,
    identity_level,
)

if TYPE_CHECKING:
    from siegel.accounts import Accounts
    from siegel.config import Tenant
    from siegel.state import PluginState

PROJECT = "siegel"
hookimpl = pluggy.HookimplMarker(PROJECT)

_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")


def _valid_name(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not _NAME.match(value):
        raise ValueError(
            f"{attribute.name} {value!r} must start with a lower-case letter and contain only "
            "a-z, 0-9, '_', '.', '-'"
        )


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _attrs_class(_instance: object, _attribute: object, value: type[Any]) -> None:
    if not attrs.has(value):
        raise TypeError(f"a config section's type must be an attrs class, not {value!r}")


class Clock(Protocol):
    def now(self) -> datetime: ...


class Services(Protocol):
    """What the running gateway offers to plugin callables (``ctx.services``)."""

    @property
    def clock(self) -> Clock: ...

    async def send_system_mail(self, tenant: str, mail: SystemMail) -> str:
        """Store a mail that siegel writes itself and queue it for delivery; returns its id."""
        ...

    async def release(self, message_id: str, recipient: Address) -> None:
        """Process a held recipient again now (e.g. once the recipient has chosen a password)."""
        ...

    async def submit_portal_message(self, tenant: str, raw: bytes, *, mail_from: Address,
                                    recipients: Sequence[Address]) -> str:
        """Store a message a recipient wrote on the portal (a postbox reply) and queue it; returns
        its id. Unlike a system mail it goes through the whole pipeline (origin ``portal``):
        classified, protected and delivered like mail from SMTP."""
        ...

    def state(self, namespace: str) -> PluginState:
        """The plugin's durable, encrypted key-value state (see :class:`siegel.state.PluginState`)."""
        ...

    def accounts(self, tenant: str) -> Accounts:
        """The recipient accounts of ``tenant`` (see :class:`siegel.accounts.Accounts`): one per
        address, shared by every plugin; a plugin keeps its own data in its slot."""
        ...

    def portal_link(self, tenant: str, path: str) -> str:
        """An absolute link to the recipient portal for ``tenant`` (``/t/TENANT`` + ``path``),
        built from ``[portal] public_base_url``: for links in mails."""
        ...

    async def report(self, tenant: str, *, notices: Sequence[Notice] = (),
                     events: Sequence[AuditEvent] = ()) -> None:
        """Record what a plugin did outside the pipeline (a postbox message was first opened):
        the audit ``events`` are stored (and observed by ``siegel_audit_event``), the
        ``notices`` go through the tenant's notifiers and the mails they write are sent."""
        ...


@attrs.frozen(kw_only=True)
class RecipientContext:
    """Everything a classifier or protection method needs about one recipient's copy.

    ``raw`` and ``email`` are the copy as it would leave: for classifiers the original, for
    protection methods the copy after rewriters ran. Do not modify ``email``.
    """

    message: Message
    # Given as ``raw=``: the bytes, or the rewriters' edit of them, made into bytes only when a
    # plugin reads ``raw`` (a method that renders from ``email`` never needs a second copy).
    _raw: bytes | mime.RawMessage = attrs.field(repr=False, alias="raw")
    email: EmailMessage = attrs.field(repr=False)
    recipient: Address
    tenant: Tenant
    internal: DomainMatch | None
    services: Services
    verdict: Verdict | None = None
    _extractions: dict[ExtractLimits, asyncio.Future[Extraction]] = attrs.field(
        factory=dict, init=False, repr=False, eq=False)

    @functools.cached_property
    def raw(self) -> bytes:
        return self._raw if isinstance(self._raw, bytes) else self._raw.to_bytes()

    def is_raw(self, data: bytes) -> bool:
        """Whether ``data`` is this copy byte for byte (without making ``raw`` if not made yet)."""
        if isinstance(self._raw, bytes):
            return data == self._raw
        return self._raw.equals(data)

    @property
    def is_internal(self) -> bool:
        return self.internal is not None

    @property
    def required_level(self) -> IdentityLevel:
        """The identity level the recipient's account needs to read this copy: the highest of
        the tenant's ``read_level`` and the ``identity_level`` of every finding of the verdict
        (before classification: the tenant's alone)."""
        return required_level(self.tenant, self.verdict)

    def settings(self, section: str) -> Any:
        """The tenant's validated settings object for a config section."""
        return self.tenant.settings[section]

    @functools.cached_property
    def subject(self) -> str:
        return mime.subject_of(self.email)

    @functools.cached_property
    def subject_text(self) -> str:
        """The subject as any reader could show it (decoded, as written, and with damaged
        encoded words decoded leniently), for content checks; :attr:`subject` is the one
        reading the email package makes."""
        return mime.subject_readings(self.email)

    @functools.cached_property
    def reading(self) -> mime.Reading:
        """Every part of the copy a recipient could read, and what could not be read (see
        :func:`siegel.mime.read_message`); attachment text is read by :meth:`attachment_text`."""
        return mime.read_message(self.email)

    @functools.cached_property
    def body_text(self) -> str:
        """The text a recipient could read in the copy's parts (every text part, HTML and
        enriched text converted, file names, attached messages) and in the header fields it
        shows besides the subject (display names), for content checks. The text inside PDFs and
        office documents is not in it: :meth:`attachment_text` reads that."""
        return mime.visible_header_text(self.email) + "\n" + self.reading.text

    async def attachment_text(self, limits: ExtractLimits | None = None) -> Extraction:
        """The text of the copy's attachments (PDF, office documents, archives), read in a worker
        process within ``limits``; what could not be read is in ``unreadable``. Read once per
        copy and limits, however many classifiers ask."""
        limits = limits or ExtractLimits()
        future = self._extractions.get(limits)
        if future is None:
            future = asyncio.ensure_future(extract.extract(self.reading.attachments, limits))
            self._extractions[limits] = future
        # Shielded: a classifier that gives up does not cancel the reading for the others.
        return await asyncio.shield(future)

    @property
    def extraction(self) -> Extraction | None:
        """The attachment text read so far for this copy (None when no classifier asked)."""
        for future in self._extractions.values():
            if future.done() and not future.cancelled() and future.exception() is None:
                return future.result()
        return None

    @functools.cached_property
    def attachment_names(self) -> tuple[str, ...]:
        return tuple(mime.attachment_names(self.email))

    @functools.cached_property
    def text(self) -> str:
        """Subject and readable body text, for content checks."""
        return self.subject_text + "\n" + self.body_text


TransformFunction = Callable[[RecipientContext], Awaitable[bytes | None]]
ClassifyFunction = Callable[[RecipientContext], Awaitable[Finding | Iterable[Finding] | None]]
RewriteFunction = Callable[[mime.RawMessage, RecipientContext], None]
CanServeFunction = Callable[[RecipientContext], Awaitable[Availability]]
ProtectFunction = Callable[[RecipientContext], Awaitable[ProtectionResult]]
DeliverFunction = Callable[[Outgoing, "Tenant"], Awaitable[DeliveryResult]]
NotifyFunction = Callable[[Notice, "Tenant"], Awaitable[Iterable[SystemMail]]]


@attrs.frozen(kw_only=True)
class Transformer:
    """Turns a copy into another before it is classified, e.g. decrypts inbound S/MIME so that the
    classifiers judge the real content. Returns the new RFC 5322 bytes, or ``None`` to leave the
    copy as it is. An exception or a time-out quarantines the copy."""

    name: str = attrs.field(validator=_valid_name)
    transform: TransformFunction
    description: str = ""
    plugin: str = ""


@attrs.frozen(kw_only=True)
class Classifier:
    """Looks at one recipient's copy and states :class:`~siegel.Finding` s about it.

    Every enabled classifier is asked; the strictest finding wins. Returning ``None`` means
    "nothing to say". An exception or a time-out quarantines the copy.
    """

    name: str = attrs.field(validator=_valid_name)
    classify: ClassifyFunction
    description: str = ""
    plugin: str = ""


@attrs.frozen(kw_only=True)
class Rewriter:
    """Edits the raw header block of a copy before it is protected or delivered.

    Used to remove instructions meant for the gateway (a trigger header, a subject tag). Runs after
    classification, so classifiers still see what the sender wrote.
    """

    name: str = attrs.field(validator=_valid_name)
    rewrite: RewriteFunction
    description: str = ""
    plugin: str = ""


@attrs.frozen(kw_only=True)
class ProtectionMethod:
    """A way to protect a copy: password PDF, S/MIME, postbox link, ...

    ``can_serve`` says whether the method can protect for this recipient (without side effects;
    ``siegel explain`` calls it too). ``protect`` returns :class:`~siegel.Protected` copies to
    deliver, :class:`~siegel.Held` or :class:`~siegel.RetryLater`. The pipeline tries a tenant's
    methods in its preference order.
    """

    name: str = attrs.field(validator=_valid_name)
    can_serve: CanServeFunction
    protect: ProtectFunction
    description: str = ""
    plugin: str = ""


@attrs.frozen(kw_only=True)
class DeliveryChannel:
    """Takes an :class:`~siegel.Outgoing` copy somewhere: an SMTP relay, a postbox, a records system."""

    name: str = attrs.field(validator=_valid_name)
    deliver: DeliverFunction
    description: str = ""
    plugin: str = ""
    #: Called when the runtime stops, in its event loop: close what the channel keeps open
    #: between deliveries (connections, sessions).
    close: Callable[[], Awaitable[None]] | None = None


StartFunction = Callable[["Services"], Awaitable[None]]
StopFunction = Callable[[], Awaitable[None]]


@attrs.frozen(kw_only=True)
class Resource:
    """Something a plugin creates when the gateway starts and closes when it stops: a connection
    pool, worker processes, a cache (svcs's ``on_registry_close`` and datasette's ``startup`` hook
    are the models).

    ``start`` is awaited with the running :class:`Services` before the first message is processed;
    ``stop`` is awaited when the gateway stops, after the last job ended, in the same event loop.
    Resources start in the order the registry lists them (by name) and stop in the reverse order;
    a resource whose ``start`` raised is not stopped, the ones started before it are. ``stop`` must
    be safe to call when nothing was opened (it is also called after a one-shot run).
    """

    name: str = attrs.field(validator=_valid_name)
    stop: StopFunction
    start: StartFunction | None = None
    description: str = ""
    plugin: str = ""


MaintainFunction = Callable[["Services", "Tenant"], Awaitable[None]]


@attrs.frozen(kw_only=True)
class MaintenanceTask:
    """Periodic work of a plugin for each tenant that enables it (retention, reminders).

    The gateway awaits ``run(services, tenant)`` with its maintenance, about once an hour while
    it serves (and when a test calls :meth:`siegel.runtime.Runtime.maintenance`); ``services.
    clock`` says what time it is. Several instances may run the same task at once: make each
    step claim its work in the store (delete a due record and act only if the delete found
    it). An exception is logged; the other tasks still run.
    """

    name: str = attrs.field(validator=_valid_name)
    run: MaintainFunction
    description: str = ""
    plugin: str = ""


@attrs.frozen(kw_only=True)
class Notifier:
    """Turns a :class:`~siegel.Notice` into mails (or none). The mails are stored in the same
    transaction as the state change they report, so a notice is not lost in a crash."""

    name: str = attrs.field(validator=_valid_name)
    notify: NotifyFunction
    description: str = ""
    plugin: str = ""


@attrs.frozen(kw_only=True)
class ConfigSection:
    """A settings table that a plugin owns, validated into ``type`` (an attrs class whose fields all
    have defaults). It is read from ``[settings.NAME]`` (defaults for every tenant) and
    ``[tenants.ID.settings.NAME]`` (per tenant; wins key by key). Unknown keys are errors."""

    name: str = attrs.field(validator=_valid_name)
    type: type[Any] = attrs.field(validator=_attrs_class)
    description: str = ""
    plugin: str = ""


@attrs.frozen(kw_only=True)
class PortalRoute:
    """A page or form handler that a plugin adds to the recipient portal.

    ``endpoint`` is an async Starlette endpoint (``request -> Response``). The portal wraps every
    route with its security layer (headers, CSRF on every non-GET method, sessions, language); the
    endpoint gets that context as ``request.state.portal`` (:class:`siegel.portal.PortalContext`).
    State must never change on GET.
    """

    name: str = attrs.field(validator=_valid_name)
    path: str = attrs.field()
    endpoint: Callable[[Any], Awaitable[Any]]
    methods: tuple[str, ...] = attrs.field(default=("GET",), converter=_strings)
    description: str = ""
    plugin: str = ""
    #: Run the endpoint also for a form post whose session ended or whose browser lost the
    #: cookie (``portal.session_problem`` is set or the session is new: the CSRF token cannot be
    #: checked): for pages that keep what was being written (a reply) instead of losing it.
    #: Such an endpoint must act on nothing it was sent; it may only keep it for the account
    #: that a :meth:`~siegel.portal.PortalContext.mac` it gave out names.
    keeps_expired_posts: bool = False

    @path.validator
    def _absolute(self, _attribute: object, value: str) -> None:
        if not value.startswith("/"):
            raise ValueError(f"portal route {self.name!r}: path must start with '/', not {value!r}")


@attrs.frozen(kw_only=True)
class PluginSet:
    """A named selection of plugins with default settings: what one kind of authority enables."""

    name: str = attrs.field(validator=_valid_name)
    plugins: tuple[str, ...] = attrs.field(converter=_strings)
    description: str = ""
    #: Protection methods in order of preference, used when the tenant names none.
    protection: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    #: Defaults per config section; a tenant's own settings win key by key.
    settings: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    #: Domains inside the trusted network for every tenant of this set (added to the tenant's own).
    internal_domains: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    internal_subdomains: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    plugin: str = ""
    #: The identity level needed to read messages (in a postbox) and to write, unless the
    #: tenant sets its own (``read_level``/``write_level``).
    read_level: IdentityLevel = attrs.field(default=IdentityLevel.MAILBOX,
                                            converter=identity_level)
    write_level: IdentityLevel = attrs.field(default=IdentityLevel.MAILBOX,
                                             converter=identity_level)


def required_level(tenant: Tenant, verdict: Verdict | None) -> IdentityLevel:
    """The highest of ``tenant.read_level`` and the ``identity_level`` of every finding in
    ``verdict`` (:attr:`RecipientContext.required_level`)."""
    findings = verdict.findings if verdict is not None else ()
    return max((tenant.read_level, *(f.identity_level for f in findings
                                     if f.identity_level is not None)))
