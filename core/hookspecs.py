"""The hook specifications: every hook siegel calls, in one place.

Registration hooks (``siegel_register_*``) are called once when the gateway starts. Each plugin's
result is collected separately so that siegel knows which plugin registered what, refuses duplicate
names, and can enable objects per tenant by plugin name. They are plain functions: return a list
(or any iterable) of the objects, or nothing.

Stage work (classification, protection, delivery, notification) is *not* done through pluggy calls:
the registered objects carry async callables that the pipeline awaits itself, so that every result
is combined by an explicit policy (the strictest classification wins; the tenant's preference list
orders protection methods) and never by registration order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import click
import pluggy

from siegel.model import AuditEvent, PostboxTopic
from siegel.plugin import (
    PROJECT,
    Classifier,
    ConfigSection,
    DeliveryChannel,
    MaintenanceTask,
    Notifier,
    PluginSet,
    PortalRoute,
    ProtectionMethod,
    Resource,
    Rewriter,
    Transformer,
)

if TYPE_CHECKING:
    from siegel.accounts import Account, PasswordSlot
    from siegel.config import Tenant

hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def siegel_register_plugin_sets() -> Iterable[PluginSet]:
    """Register named plugin sets that a tenant enables with ``plugin_set = "NAME"``.

    Called once at start-up. Set names must be unique across all plugins.

    Example::

        from siegel import PluginSet, hookimpl

        @hookimpl
        def siegel_register_plugin_sets():
            return [
                PluginSet(
                    name="school",
                    description="School mail: nothing personal leaves unprotected",
                    plugins=("recipient_scope", "smtp_relay", "sender_notices"),
                    settings={"recipient_scope": {"external": "protect"}},
                )
            ]
    """


@hookspec
def siegel_register_config_sections() -> Iterable[ConfigSection]:
    """Register the settings tables a plugin reads.

    A section named ``NAME`` is read from ``[settings.NAME]`` and ``[tenants.ID.settings.NAME]``,
    merged key by key (plugin set defaults < global < tenant), and structured into the section's
    attrs class. Unknown keys and wrong types are configuration errors with the key path.

    Example::

        import attrs
        from siegel import ConfigSection, hookimpl

        @attrs.frozen
        class GreetingSettings:
            greeting: str = "Guten Tag"

        @hookimpl
        def siegel_register_config_sections():
            return [ConfigSection(name="greeting", type=GreetingSettings)]

    A classifier then reads ``ctx.settings("greeting").greeting``.
    """


@hookspec
def siegel_register_transformers() -> Iterable[Transformer]:
    """Register transformers, which turn a copy into another before classification.

    Transformers of the tenant run in name order on each recipient's copy; each gets the context
    with the copy as the previous one left it and returns new bytes or ``None``. The classifiers,
    rewriters and protection methods then see the transformed copy. Use this for inbound
    decryption; never to weaken a message. A transformer that raises or times out quarantines
    the copy.

    Example::

        from siegel import Transformer, hookimpl

        async def unwrap(ctx):
            if ctx.email.get_content_type() != "application/x-wrapped":
                return None
            return ctx.email.get_payload(decode=True)

        @hookimpl
        def siegel_register_transformers():
            return [Transformer(name="unwrap", transform=unwrap)]
    """


@hookspec
def siegel_register_classifiers() -> Iterable[Classifier]:
    """Register classifiers.

    For every recipient of every message, each classifier enabled for the message's tenant is
    awaited (concurrently, with the configured time-out) with a :class:`~siegel.RecipientContext`.
    It returns a :class:`~siegel.Finding`, several, or ``None``. The strictest level over all
    findings decides: ``PLAIN`` < ``PROTECT`` < ``QUARANTINE``. A classifier that raises or times out
    quarantines the copy, so a broken classifier never lets a message out.

    Example::

        from siegel import Classifier, Finding, Level, Text, hookimpl

        async def classify(ctx):
            if not ctx.is_internal and "Aktenzeichen" in ctx.text:
                return Finding(
                    level=Level.PROTECT,
                    code="case-file",
                    reason=Text(de="Aktenzeichen im Text", en="case reference in the text"),
                )
            return None

        @hookimpl
        def siegel_register_classifiers():
            return [Classifier(name="case_file", classify=classify)]
    """


@hookspec
def siegel_register_rewriters() -> Iterable[Rewriter]:
    """Register rewriters, which edit a copy's header block after classification.

    A rewriter receives a :class:`siegel.mime.RawMessage` and the context, and removes or replaces
    header fields in place (the body cannot be changed). If no rewriter changes anything, the copy
    leaves byte for byte as it arrived. A rewriter that raises quarantines the copy.

    Example::

        from siegel import Rewriter, hookimpl

        def drop_internal_note(raw, ctx):
            raw.remove("X-Internal-Note")

        @hookimpl
        def siegel_register_rewriters():
            return [Rewriter(name="drop_internal_note", rewrite=drop_internal_note)]
    """


@hookspec
def siegel_register_protection_methods() -> Iterable[ProtectionMethod]:
    """Register protection methods (password PDF, S/MIME, postbox, ...).

    For a copy classified ``PROTECT``, the tenant's ``protection`` list is walked in order; the first
    method whose ``can_serve`` answers yes is awaited with ``protect``. It returns
    :class:`~siegel.Protected` (the protected copies to deliver), :class:`~siegel.Held`, or
    :class:`~siegel.RetryLater` when a passing cause stopped it (a worker died): the copy is
    queued again with back-off and quarantined after ``[delivery] max_protect_retries`` such
    answers in a row. If no
    method can serve the recipient, or the chosen one raises or times out, the copy is quarantined
    and the sender told; it never leaves in plain text. A ``Protected`` copy identical to the
    unprotected message is refused as a bug.

    Example::

        from siegel import Availability, ProtectionMethod, Protected, Outgoing, Text, hookimpl

        async def can_serve(ctx):
            return Availability.no(Text(de="nicht eingerichtet", en="not set up"))

        async def protect(ctx):
            raise NotImplementedError

        @hookimpl
        def siegel_register_protection_methods():
            return [ProtectionMethod(name="vault", can_serve=can_serve, protect=protect)]
    """


@hookspec
def siegel_register_delivery_channels() -> Iterable[DeliveryChannel]:
    """Register delivery channels (an SMTP relay, a postbox, a records system).

    A channel's ``deliver`` is awaited with an :class:`~siegel.Outgoing` and the tenant and returns a
    :class:`~siegel.DeliveryResult`. Temporary failures (and exceptions) are retried with back-off;
    permanent failures end in a notice to the sender.

    Example::

        from siegel import DeliveryChannel, DeliveryResult, hookimpl

        async def deliver(outgoing, tenant):
            await records_system.store(outgoing.raw)
            return DeliveryResult.delivered("stored in E-AKTE")

        @hookimpl
        def siegel_register_delivery_channels():
            return [DeliveryChannel(name="eakte", deliver=deliver)]
    """


@hookspec
def siegel_register_resources() -> Iterable[Resource]:
    """Register resources that live as long as the gateway runs: pools, worker processes, caches.

    siegel awaits each resource's ``start(services)`` when ``siegel serve`` (or the test harness)
    starts, in the order of their names, and its ``stop()`` in the reverse order when it stops,
    after the last job ended and in the same event loop. A ``start`` that raises stops the start-up
    (the resources already started are stopped again); a ``stop`` that raises is logged and the
    others still stop. Keep what ``start`` creates on an object the plugin owns, not in a global
    shared by every event loop.

    Example::

        import asyncio
        from siegel import Resource, hookimpl

        class Pool:
            def __init__(self):
                self.workers = []

            async def start(self, services):
                self.workers = [await asyncio.create_subprocess_exec("cat", stdin=-1)]

            async def stop(self):
                for worker in self.workers:
                    worker.kill()
                    await worker.wait()
                self.workers = []

        pool = Pool()

        @hookimpl
        def siegel_register_resources():
            return [Resource(name="cat-pool", start=pool.start, stop=pool.stop)]
    """


@hookspec
def siegel_register_maintenance_tasks() -> Iterable[MaintenanceTask]:
    """Register periodic work (retention, reminders) run for every tenant that enables the plugin.

    The gateway awaits each task's ``run(services, tenant)`` with its own maintenance, about once
    an hour; read the time from ``services.clock``. Claim each piece of work in the store before
    acting on it, as several instances may run the task at once. An exception is logged and the
    other tasks still run.

    Example::

        from siegel import MaintenanceTask, hookimpl

        async def forget_old_drafts(services, tenant):
            drafts = services.state("drafts")
            for record in await drafts.page(f"{tenant.id}/", limit=100):
                await drafts.delete(record.key)

        @hookimpl
        def siegel_register_maintenance_tasks():
            return [MaintenanceTask(name="drafts", run=forget_old_drafts)]
    """


@hookspec
def siegel_register_notifiers() -> Iterable[Notifier]:
    """Register notifiers, which turn :class:`~siegel.Notice` s into mails.

    ``notify`` is awaited for every notice of a tenant that enables the plugin and returns the
    :class:`~siegel.SystemMail` s to send (possibly none). They are stored in the same transaction
    as the state change the notice reports. A notifier that raises is logged and audited; the state
    change stands.

    Example::

        from siegel import Notifier, NoticeKind, SystemMail, hookimpl

        async def notify(notice, tenant):
            if notice.kind is not NoticeKind.QUARANTINED:
                return []
            raw = b"Subject: quarantine\\r\\n\\r\\nA message was stopped.\\r\\n"
            return [SystemMail(mail_from=tenant.notice_from,
                               recipients=["postmaster@example.org"], raw=raw)]

        @hookimpl
        def siegel_register_notifiers():
            return [Notifier(name="postmaster", notify=notify)]
    """


@hookspec
def siegel_register_portal_routes() -> Iterable[PortalRoute]:
    """Register pages and form handlers of the recipient portal (``siegel serve`` serves it).

    Called once at start-up. Route names must be unique; paths are mounted as given, for every
    tenant (the portal tells tenants apart by the link a recipient follows). Every non-GET route
    is CSRF-checked by the portal before the endpoint runs; endpoints must not change state on GET.

    Example::

        from starlette.responses import HTMLResponse
        from siegel import PortalRoute, hookimpl

        async def hello(request):
            portal = request.state.portal
            return portal.render("hello.html", {"name": "Welt"})

        @hookimpl
        def siegel_register_portal_routes():
            return [PortalRoute(name="hello", path="/hello", endpoint=hello)]
    """


@hookspec
def siegel_register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``siegel`` command line.

    ``cli`` is the top-level :class:`click.Group`; add commands or groups to it.

    Example::

        import click
        from siegel import hookimpl

        @hookimpl
        def siegel_register_commands(cli):
            @cli.command()
            def hello():
                \"\"\"Say hello.\"\"\"
                click.echo("Hallo")
    """


@hookspec
def siegel_audit_event(event: AuditEvent) -> None:
    """Observe an audit event (message accepted, classified, delivered, quarantined, ...).

    Called for every event, by every plugin that implements it, after the event is stored. Events
    never carry message bodies or secrets. Must not block: hand slow work to a queue. An exception
    is logged and otherwise ignored.

    Example::

        import logging
        from siegel import hookimpl

        @hookimpl
        def siegel_audit_event(event):
            logging.getLogger("my.audit").info("%s %s", event.kind, event.message_id)
    """


@hookspec
def siegel_account_password_set(tenant: Tenant, account: Account,
                                password: str) -> PasswordSlot | None:
    """Keep a plugin's slot of a recipient account in step with a new password.

    Called whenever a password is set for an account of ``tenant`` (:meth:`siegel.Accounts.
    set_password`: the account page, a registration or reset link, ...), once for every plugin
    that implements it and is enabled for the tenant, *before* anything is stored. ``account`` is
    the account as it is (new, without a password, on first registration). Return a
    :class:`siegel.PasswordSlot`: ``data`` replaces the plugin's slot (``None`` removes it) in the
    same atomic write as the new login hash; ``problems`` (:class:`siegel.Text`) refuse the
    password, and the user is shown them. Return ``None`` to leave the slot alone. Must be quick
    and free of side effects (no I/O): it may run for a password that is then refused. An
    exception refuses the password too (fail closed), with a server error.

    The password PDF keeps its PDF key material, derived from the password, this way; the
    accounts plugin's page for changing the password never imports it.

    Example::

        from siegel import PasswordSlot, Text, hookimpl

        @hookimpl
        def siegel_account_password_set(tenant, account, password):
            if len(password.encode()) > 127:
                return PasswordSlot(problems=[Text(de="Höchstens 127 Byte.",
                                                   en="At most 127 bytes.")])
            return PasswordSlot(data=derive_key(password))
    """


@hookspec
def siegel_register_postbox_topics(tenant: Tenant) -> Iterable[PostboxTopic]:
    """Offer the topics a postbox user of ``tenant`` may write a new message about, each with the
    authority's mailbox that receives it.

    Called when the postbox's "new message" page is shown or posted, only for plugins the tenant
    enables; every plugin's topics are collected (names must be unique per tenant; a duplicate
    is an error naming both plugins). The postbox plugin itself offers the tenant's ``[postbox]
    topics`` setting; a plugin set such as a job centre's supplies its own catalogue. Must be
    quick and must not do I/O: it runs during a page request.

    Example::

        from siegel import PostboxTopic, Text, hookimpl

        @hookimpl
        def siegel_register_postbox_topics(tenant):
            if tenant.id != "jobcenter":
                return []
            return [PostboxTopic(name="income",
                                 label=Text(de="Einkommen", en="Income"),
                                 recipient="leistung@jobcenter.example")]
    """
