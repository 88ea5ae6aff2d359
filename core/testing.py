"""A pytest plugin for plugin authors: run messages through a real pipeline into a real SMTP sink.

Enable it in a ``conftest.py``::

    pytest_plugins = ["siegel.testing"]

and write (async tests need pytest-asyncio or anyio)::

    async def test_my_classifier(siegel_harness):
        async with siegel_harness(plugins=[("my_plugin", my_plugin_module)]) as harness:
            message_id = await harness.send(
                make_message(to="buerger@example.net", body="Kundennummer 123A456789"),
                mail_from="sachbearbeitung@behoerde.example", rcpt_to=["buerger@example.net"])
            await harness.process()
            assert await harness.states(message_id) == {"buerger@example.net": "quarantined"}
            assert harness.sink.to("buerger@example.net") == []

The harness loads siegel's built-in plugins, then yours, enables yours for every tenant, writes a
config (yours merged over a default with one tenant ``test`` owning ``behoerde.example``), creates
a store key and an SQLite store in a temporary folder, and points the ``smtp`` channel at a real
aiosmtpd server (``harness.sink``). Time is a :class:`~siegel.clock.FrozenClock` you can advance.
The plugins' resources (:class:`siegel.Resource`) are started on entry and stopped on exit, as
``siegel serve`` does.

``siegel_cli`` runs ``siegel`` commands on a fresh ``siegel init`` folder (:class:`CommandRunner`).
"""

from __future__ import annotations

import copy
import email.policy
import email.utils
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

import click
import pytest
from click.testing import CliRunner, Result

from siegel.addresses import Address
from siegel.clock import FrozenClock, new_message_id
from siegel.config import Config, config_from_mapping, deep_merge
from siegel.crypto import create_key_file
from siegel.manager import PluginRegistry
from siegel.model import Envelope, Message, RecipientState
from siegel.plugin import RecipientContext
from siegel.runtime import Runtime, open_store
from siegel.sink import SmtpSink
from siegel.sqlite_store import SQLiteStore

DEFAULT_DOMAIN = "behoerde.example"


def self_signed_certificate(directory: Path, stem: str = "localhost") -> tuple[Path, Path]:
    """A self-signed EC certificate for ``localhost`` and ``127.0.0.1``, valid from five minutes
    ago for a day, and its key: ``(STEM.pem, STEM.key)`` in ``directory``, for TLS in tests (a
    listener's ``tls_certificate``, a test relay; clients trust it with ``cafile=`` the PEM)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def default_config() -> dict[str, Any]:
    return {
        "tenants": {
            "test": {
                "name": "Testbehörde",
                "domains": [DEFAULT_DOMAIN],
                "plugin_set": "baseline",
            }
        },
        "delivery": {"first_retry_seconds": 60, "max_retry_seconds": 600,
                     "classify_timeout_seconds": 5, "protect_timeout_seconds": 5,
                     "deliver_timeout_seconds": 10},
    }


def make_message(
    *,
    sender: str = f"sachbearbeitung@{DEFAULT_DOMAIN}",
    to: str | Sequence[str] = "buerger@example.net",
    subject: str = "Ihr Anliegen",
    body: str = "Guten Tag,\n\nanbei die Informationen.\n",
    headers: Mapping[str, str] | None = None,
    attachments: Iterable[tuple[str, str, bytes]] = (),
) -> bytes:
    """A well-formed message as SMTP carries it (CRLF line ends); ``attachments`` are
    (file name, MIME type, content)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to if isinstance(to, str) else ", ".join(to)
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(1767600000, localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain=DEFAULT_DOMAIN)
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    for filename, mime_type, content in attachments:
        maintype, _, subtype = mime_type.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes(policy=email.policy.SMTP)


class Harness:
    def __init__(self, config: Config, registry: PluginRegistry, runtime: Runtime,
                 sink: SmtpSink, clock: FrozenClock) -> None:
        self.config = config
        self.registry = registry
        self.runtime = runtime
        self.sink = sink
        self.clock = clock

    @property
    def store(self) -> SQLiteStore:
        store = self.runtime.store
        assert isinstance(store, SQLiteStore)
        return store

    async def send(self, raw: bytes, *, mail_from: str | None = None,
                   rcpt_to: Iterable[str] | None = None) -> str:
        """Accept a message as the SMTP listener would; envelope defaults from the headers."""
        if mail_from is None or rcpt_to is None:
            from siegel.explain import envelope_from_headers

            header_sender, header_recipients = envelope_from_headers(raw)
            mail_from = mail_from if mail_from is not None else str(header_sender or "")
            rcpt_to = rcpt_to if rcpt_to is not None else [str(r) for r in header_recipients]
        return await self.runtime.submit(raw, mail_from or None, list(rcpt_to))

    async def process(self) -> None:
        """Process everything that is due now, including notices it causes."""
        await self.runtime.run_until_idle()

    async def states(self, message_id: str) -> dict[str, RecipientState]:
        return {r.recipient: r.state for r in await self.store.recipients(message_id)}

    def context(self, raw: bytes, recipient: str, *, mail_from: str | None = None,
                tenant: str | None = None) -> RecipientContext:
        """The :class:`~siegel.RecipientContext` a classifier would get for ``recipient``'s copy
        of ``raw``, without storing or processing anything: to test one classifier alone
        (``await my_classifier.classify(harness.context(raw, "buerger@example.net"))``).
        The sender defaults to the From header, the tenant to the one owning sender or
        recipient (as the listener chooses it)."""
        from siegel.explain import envelope_from_headers

        if mail_from is None:
            header_sender, _recipients = envelope_from_headers(raw)
            mail_from = str(header_sender or "")
        sender = Address.parse(mail_from) if mail_from else None
        to = Address.parse(recipient)
        owner = (self.config.tenants[tenant] if tenant is not None
                 else self.runtime.tenant_for(sender, [to]))
        message = Message(id=new_message_id(), tenant=owner.id, envelope=Envelope(sender, (to,)),
                          raw=raw, received_at=self.clock.now())
        return self.runtime.pipeline.context(message, owner, to)

    def notices(self, kind: str | None = None) -> list[EmailMessage]:
        """Notices the sink received (optionally of one kind: quarantined, delayed, ...)."""
        found = []
        for mail in self.sink.messages:
            parsed = mail.parsed
            notice_kind = parsed.get("X-Siegel-Notice")
            if notice_kind and (kind is None or str(notice_kind) == kind):
                found.append(parsed)
        return found


class CommandRunner:
    """Runs ``siegel`` commands in-process (click's ``CliRunner``) on a gateway folder made by
    ``siegel init``, with the plugins' commands added as the real command line adds them
    (honouring ``[plugins] blocked``). ``config`` is the folder's ``siegel.toml``; it is passed
    as ``$SIEGEL_CONFIG``, so commands find it without ``--config``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.config = directory / "siegel.toml"

    def __call__(self, *args: str | Path, plugins: Iterable[tuple[str, object]] = (),
                 input: str | None = None) -> Result:
        """Run ``siegel ARGS``; ``plugins`` are ``(name, plugin)`` pairs whose commands are added
        after the installed plugins' ones. Exceptions propagate, so a crash fails the test."""
        from siegel.cli import blocked_for_commands, cli

        group = click.Group(name=cli.name, commands=dict(cli.commands), callback=cli.callback,
                            params=list(cli.params), help=cli.help)
        registry = PluginRegistry.load(extra=plugins,
                                       blocked=blocked_for_commands(self.config) or ())
        registry.register_commands(group)
        return CliRunner().invoke(group, [str(a) for a in args], input=input,
                                  env={"SIEGEL_CONFIG": str(self.config)},
                                  catch_exceptions=False)


@pytest.fixture
def siegel_cli(tmp_path: Path) -> CommandRunner:
    """A :class:`CommandRunner` on a fresh ``siegel init`` folder (``tmp_path / "siegel"``)."""
    runner = CommandRunner(tmp_path / "siegel")
    result = runner("init", runner.directory)
    assert result.exit_code == 0, result.output
    return runner


class HarnessFactory(Protocol):
    """The ``siegel_harness`` fixture: call it to get an async context manager for a
    :class:`Harness`."""

    def __call__(
        self,
        config: Mapping[str, Any] | None = None,
        plugins: Iterable[tuple[str, object]] = (),
        entry_points: bool = True,
        clock: FrozenClock | None = None,
    ) -> AbstractAsyncContextManager[Harness]: ...


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server on a free localhost port that keeps what it receives."""
    sink = SmtpSink().start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def siegel_harness(tmp_path: Path, smtp_sink: SmtpSink) -> HarnessFactory:
    """``siegel_harness(config=None, plugins=(), entry_points=True)``: an async context manager
    that yields a :class:`Harness`."""

    @asynccontextmanager
    async def factory(
        config: Mapping[str, Any] | None = None,
        plugins: Iterable[tuple[str, object]] = (),
        entry_points: bool = True,
        clock: FrozenClock | None = None,
    ) -> AsyncIterator[Harness]:
        plugins = list(plugins)
        data = deep_merge(default_config(), copy.deepcopy(dict(config or {})))
        for tenant in data["tenants"].values():
            tenant["plugins"] = [*tenant.get("plugins", []), *(name for name, _ in plugins)]
        relay = data.setdefault("settings", {}).setdefault("relay", {})
        relay.setdefault("host", smtp_sink.host)
        relay.setdefault("port", smtp_sink.port)
        relay.setdefault("tls", "none")
        registry = PluginRegistry.load(entry_points=entry_points, extra=plugins)
        resolved = config_from_mapping(data, registry, source="<siegel_harness>",
                                       base_dir=tmp_path)
        key_file = tmp_path / "keys" / "store.key"
        if not key_file.exists():
            create_key_file(key_file)
        # The store the configuration names: SQLite in tmp_path unless [store] says otherwise.
        store = open_store(resolved)
        frozen = clock or FrozenClock()
        runtime = Runtime(resolved, registry, store, clock=frozen)
        await store.open()
        try:
            await runtime.start_resources()
            try:
                yield Harness(resolved, registry, runtime, smtp_sink, frozen)
            finally:
                await runtime.close_channels()
                await runtime.stop_resources()
        finally:
            await store.close()

    return factory
