"""SMTP AUTH towards the relay, against real aiosmtpd servers that require it.

What it must prove: siegel logs in with the user name and password from ``credentials_file`` only
after TLS is up (unless allowed otherwise), a refused login is a temporary failure that names the
file and not the password, and the configuration refuses credentials that could go out in clear.
"""

from __future__ import annotations

import logging
import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from siegel import DeliveryStatus, Outgoing
from siegel.config import ConfigError, config_from_mapping
from siegel.manager import PluginRegistry
from siegel.plugins import smtp_relay
from siegel.plugins.smtp_relay import deliver
from siegel.sink import free_port
from siegel.testing import self_signed_certificate

RAW = b"From: a@behoerde.example\r\nTo: b@behoerde.example\r\nSubject: t\r\n\r\nHallo\r\n"
USER, PASSWORD = "siegel-gw", "geheim:mit Doppelpunkt"

# The plain-text relays below are meant to be unsafe; aiosmtpd says so for each session.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


class AuthRelay:
    """A relay that accepts mail only from a logged-in client (aiosmtpd's ``auth_required``)."""

    def __init__(self) -> None:
        self.messages: list[tuple[bool, str | None, bytes]] = []
        self.logins: list[tuple[str, bool, bool]] = []

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        ok = (auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode())
        self.logins.append((mechanism, session.ssl is not None, ok))
        return AuthResult(success=ok, handled=False,
                          auth_data=auth_data.login.decode() if ok else None)

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((session.ssl is not None, session.auth_data,
                              envelope.original_content))
        return "250 OK"


@pytest.fixture
async def auth_relay(tmp_path):
    """``auth_relay(tls=True)``: a running relay requiring AUTH (after STARTTLS if ``tls``)."""
    controllers = []

    def start(tls: bool = True):
        relay = AuthRelay()
        options = {}
        if tls:
            cert_file, key_file = self_signed_certificate(tmp_path, "relay")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert_file, key_file)
            options = {"tls_context": context, "require_starttls": True}
        controller = Controller(relay, hostname="localhost" if tls else "127.0.0.1",
                                port=free_port(), authenticator=relay.authenticator,
                                auth_required=True, auth_require_tls=tls, **options)
        controller.start()
        controllers.append(controller)
        return controller.port, relay, tmp_path / "relay.pem"

    yield start
    await smtp_relay.close_connections()
    for controller in controllers:
        controller.stop()


def tenant_with(relay, tmp_path):
    data = {"tenants": {"t": {"name": "T", "domains": ["behoerde.example"],
                              "plugin_set": "baseline", "settings": {"relay": relay}}}}
    return config_from_mapping(data, PluginRegistry.load(), source="x",
                               base_dir=tmp_path).tenants["t"]


def outgoing():
    return Outgoing(channel="smtp", mail_from="a@behoerde.example",
                    recipients=["b@behoerde.example"], raw=RAW)


def credentials(tmp_path, text=f"{USER}:{PASSWORD}\n"):
    path = tmp_path / "relay-credentials"
    path.write_text(text)
    return path


async def test_login_after_starttls_then_delivery(auth_relay, tmp_path):
    port, relay, ca_file = auth_relay()
    tenant = tenant_with({"host": "localhost", "port": port, "ca_file": str(ca_file),
                          "credentials_file": str(credentials(tmp_path))}, tmp_path)
    result = await deliver(outgoing(), tenant)
    assert result.status is DeliveryStatus.DELIVERED, result.detail
    assert relay.logins == [("PLAIN", True, True)]
    assert relay.messages == [(True, USER, RAW)]
    # A kept session stays logged in: the second copy needs no second login.
    assert (await deliver(outgoing(), tenant)).status is DeliveryStatus.DELIVERED
    assert len(relay.logins) == 1 and len(relay.messages) == 2


async def test_refused_login_is_a_temporary_failure_that_names_the_file(auth_relay, tmp_path,
                                                                       caplog):
    port, relay, ca_file = auth_relay()
    wrong = credentials(tmp_path, f"{USER}:falsches-Passwort\n")
    tenant = tenant_with({"host": "localhost", "port": port, "ca_file": str(ca_file),
                          "credentials_file": str(wrong), "idle_seconds": 0}, tmp_path)
    result = await deliver(outgoing(), tenant)
    assert result.status is DeliveryStatus.TEMPORARY_FAILURE
    assert "535" in result.detail
    assert f"refused the login of '{USER}' from {wrong}" in result.detail
    assert "check the user name and password" in result.detail
    assert "falsches-Passwort" not in result.detail + caplog.text
    assert relay.messages == []
    # Fixed file, next attempt: delivered, no restart.
    credentials(tmp_path)
    result = await deliver(outgoing(), tenant)
    assert result.status is DeliveryStatus.DELIVERED, result.detail


async def test_without_credentials_the_relay_refuses(auth_relay, tmp_path):
    port, relay, ca_file = auth_relay()
    tenant = tenant_with({"host": "localhost", "port": port, "ca_file": str(ca_file)}, tmp_path)
    result = await deliver(outgoing(), tenant)
    assert result.status is not DeliveryStatus.DELIVERED
    assert "530" in result.detail
    assert relay.messages == []


async def test_a_relay_without_auth_is_a_temporary_failure(tmp_path):
    cert_file, key_file = self_signed_certificate(tmp_path, "relay")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    relay = AuthRelay()
    # No authenticator: aiosmtpd still advertises AUTH; exclude its mechanisms so none is offered.
    controller = Controller(relay, hostname="localhost", port=free_port(), tls_context=context,
                            require_starttls=True, auth_exclude_mechanism=["PLAIN", "LOGIN"])
    controller.start()
    try:
        tenant = tenant_with({"host": "localhost", "port": controller.port,
                              "ca_file": str(cert_file),
                              "credentials_file": str(credentials(tmp_path))}, tmp_path)
        result = await deliver(outgoing(), tenant)
    finally:
        await smtp_relay.close_connections()
        controller.stop()
    assert result.status is DeliveryStatus.TEMPORARY_FAILURE
    assert "does not offer SMTP AUTH" in result.detail or "login" in result.detail
    assert relay.messages == []


async def test_plain_text_login_only_when_explicitly_allowed(auth_relay, tmp_path):
    port, relay, _ = auth_relay(tls=False)
    settings = {"host": "127.0.0.1", "port": port, "tls": "none",
                "credentials_file": str(credentials(tmp_path))}
    with pytest.raises(ConfigError) as info:
        tenant_with(settings, tmp_path)
    assert info.value.problems == [
        "tenants.t.settings.relay.credentials_file: with tls = 'none' the password could go to "
        "127.0.0.1 unencrypted; use tls = 'starttls-required' or 'implicit', or set "
        "allow_auth_without_tls = true"]
    tenant = tenant_with({**settings, "allow_auth_without_tls": True}, tmp_path)
    result = await deliver(outgoing(), tenant)
    assert result.status is DeliveryStatus.DELIVERED, result.detail
    assert relay.logins == [("PLAIN", False, True)]


async def test_opportunistic_tls_that_is_not_offered_keeps_the_password(auth_relay, tmp_path,
                                                                       caplog):
    """With allow_auth_without_tls = false, a relay that offers no STARTTLS gets no password even
    when the settings came from a source that skipped the configuration check."""
    caplog.set_level(logging.DEBUG)
    port, relay, _ = auth_relay(tls=False)
    tenant = tenant_with({"host": "127.0.0.1", "port": port, "tls": "starttls-opportunistic",
                          "credentials_file": str(credentials(tmp_path)),
                          "allow_auth_without_tls": True}, tmp_path)
    settings = tenant.settings["relay"]
    object.__setattr__(settings, "allow_auth_without_tls", False)
    result = await deliver(outgoing(), tenant)
    assert result.status is DeliveryStatus.TEMPORARY_FAILURE
    assert "the password is sent only over TLS" in result.detail
    assert relay.logins == []
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize(("text", "problem"), [
    ("", "the first line must be user:password"),
    ("nur-ein-name\n", "the first line must be user:password"),
    (":passwort\n", "the first line must be user:password"),
])
def test_a_bad_credentials_file_is_a_config_error(tmp_path, text, problem):
    with pytest.raises(ConfigError) as info:
        tenant_with({"credentials_file": str(credentials(tmp_path, text))}, tmp_path)
    [line] = info.value.problems
    assert line.startswith("tenants.t.settings.relay.credentials_file: ")
    assert problem in line
