"""The smtp channel against real SMTP servers: TLS verified by default, never a silent downgrade."""

from __future__ import annotations

import datetime
import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from siegel import DeliveryStatus, Outgoing
from siegel.config import config_from_mapping
from siegel.manager import PluginRegistry
from siegel.plugins import smtp_relay
from siegel.plugins.smtp_relay import deliver
from siegel.sink import free_port

RAW = b"From: a@behoerde.example\r\nTo: b@behoerde.example\r\nSubject: t\r\n\r\nHallo\r\n"


def make_certificate(tmp_path, common_name="localhost"):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / f"{common_name}.pem", tmp_path / f"{common_name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class Recorder:
    def __init__(self):
        self.messages = []
        self.sessions = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.sessions += 1
        return responses

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((session.ssl is not None, envelope.original_content))
        return "250 OK"


@pytest.fixture
async def tls_server(tmp_path):
    cert_file, key_file = make_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    recorder = Recorder()
    controller = Controller(recorder, hostname="localhost", port=free_port(),
                            tls_context=context, require_starttls=True)
    controller.start()
    yield controller, recorder, cert_file
    await smtp_relay.close_connections()  # while the server can still answer QUIT
    controller.stop()


@pytest.fixture
async def plain_server():
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, recorder
    await smtp_relay.close_connections()
    controller.stop()


def tenant_with(relay, tmp_path):
    registry = PluginRegistry.load()
    data = {"tenants": {"t": {"name": "T", "domains": ["behoerde.example"],
                              "plugin_set": "baseline", "settings": {"relay": relay}}}}
    return config_from_mapping(data, registry, source="x", base_dir=tmp_path).tenants["t"]


def outgoing():
    return Outgoing(channel="smtp", mail_from="a@behoerde.example",
                    recipients=["b@behoerde.example"], raw=RAW)


async def test_starttls_with_verified_certificate(tls_server, tmp_path):
    controller, recorder, cert_file = tls_server
    tenant = tenant_with({"host": "localhost", "port": controller.port,
                          "ca_file": str(cert_file)}, tmp_path)
    result = await deliver(outgoing(), tenant)
    assert result.status is DeliveryStatus.DELIVERED, result.detail
    assert recorder.messages == [(True, RAW)]


async def test_untrusted_certificate_is_a_temporary_failure_not_a_downgrade(tls_server, tmp_path):
    controller, recorder, _ = tls_server
    other_ca, _ = make_certificate(tmp_path, "other.example")
    tenant = tenant_with({"host": "localhost", "port": controller.port,
                          "ca_file": str(other_ca)}, tmp_path)
    result = await deliver(outgoing(), tenant)
    assert result.status is DeliveryStatus.TEMPORARY_FAILURE
    assert "CERTIFICATE_VERIFY_FAILED" in result.detail or "certificate" in result.detail.lower()
    assert recorder.messages == []


async def test_required_starttls_refuses_a_server_without_it(plain_server, tmp_path):
    controller, recorder = plain_server
    tenant = tenant_with({"host": "127.0.0.1", "port": controller.port}, tmp_path)
    result = await deliver(outgoing(), tenant)
    assert result.status is DeliveryStatus.TEMPORARY_FAILURE
    assert "STARTTLS" in result.detail or "starttls" in result.detail.lower()
    assert recorder.messages == []


async def test_opportunistic_starttls_sends_plain_only_when_not_offered(plain_server, tmp_path):
    controller, recorder = plain_server
    tenant = tenant_with({"host": "127.0.0.1", "port": controller.port,
                          "tls": "starttls-opportunistic"}, tmp_path)
    result = await deliver(outgoing(), tenant)
    assert result.status is DeliveryStatus.DELIVERED
    assert recorder.messages == [(False, RAW)]


async def test_connection_refused_is_temporary(tmp_path):
    tenant = tenant_with({"host": "127.0.0.1", "port": free_port(), "tls": "none"}, tmp_path)
    result = await deliver(outgoing(), tenant)
    assert result.status is DeliveryStatus.TEMPORARY_FAILURE


# The relay sends DATA piece by piece (siegel.plugins.smtp_relay._send); what arrives must be what
# aiosmtplib's sendmail would have sent, also where pieces are cut.
AWKWARD = [b"", b"x", b".", b"\r", b"\n", b"\r\n", b".\r\n.", b"a\rb\nc\r\nd", b"..x\n.y\r.z",
           b"no line end at all", b"ends with lone cr\r", b"\r\r\n\n\r", b".\n" * 5]


@pytest.mark.parametrize("piece_bytes", [1, 2, 3, 5, 256 * 1024])
def test_pieces_are_what_aiosmtplib_would_send(monkeypatch, piece_bytes):
    monkeypatch.setattr(smtp_relay, "_PIECE_BYTES", piece_bytes)
    for raw in AWKWARD:
        expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(raw)) + b".\r\n"
        assert b"".join(smtp_relay._data_pieces(raw)) == expected, raw
        assert smtp_relay._transmitted_size(raw) == len(normalize_message_line_endings(raw)), raw


def large_awkward_message() -> bytes:
    lines = [b"Subject: gross", b"", b".leading dot", b"..two", b"x" * 990]
    lines += [b"line %d with a bare lf\n.dot after it\r" % n for n in range(60_000)]
    return b"\r\n".join(lines) + b"\r\n.\r\nno final line end"


async def test_a_large_message_arrives_as_sendmail_would_deliver_it(plain_server, tls_server,
                                                                   tmp_path):
    raw = large_awkward_message()
    assert len(raw) > 8 * smtp_relay._PIECE_BYTES
    expected = normalize_message_line_endings(raw)
    big = Outgoing(channel="smtp", mail_from="a@behoerde.example",
                   recipients=["b@behoerde.example"], raw=raw)
    controller, recorder = plain_server
    tenant = tenant_with({"host": "127.0.0.1", "port": controller.port, "tls": "none"}, tmp_path)
    result = await deliver(big, tenant)
    assert result.status is DeliveryStatus.DELIVERED, result.detail
    assert recorder.messages == [(False, expected)]
    tls_controller, tls_recorder, cert_file = tls_server
    tenant = tenant_with({"host": "localhost", "port": tls_controller.port,
                          "ca_file": str(cert_file)}, tmp_path)
    result = await deliver(big, tenant)
    assert result.status is DeliveryStatus.DELIVERED, result.detail
    assert tls_recorder.messages == [(True, expected)]


class RefusingRecorder(Recorder):
    def __init__(self, refuse, data_reply="250 OK"):
        super().__init__()
        self.refuse = refuse
        self.data_reply = data_reply

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 unknown user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        await super().handle_DATA(server, session, envelope)
        return self.data_reply


@pytest.mark.parametrize(("refuse", "data_reply", "status", "detail"), [
    ({"c@behoerde.example"}, "250 OK", DeliveryStatus.PERMANENT_FAILURE, "c@behoerde.example: 550"),
    ({"b@behoerde.example", "c@behoerde.example"}, "250 OK", DeliveryStatus.PERMANENT_FAILURE,
     "b@behoerde.example: 550 5.1.1 unknown user; c@behoerde.example: 550"),
    (set(), "452 4.3.1 insufficient storage", DeliveryStatus.TEMPORARY_FAILURE, "452"),
    (set(), "554 5.6.0 rejected", DeliveryStatus.PERMANENT_FAILURE, "554"),
])
async def test_refusals_keep_their_meaning(tmp_path, refuse, data_reply, status, detail):
    recorder = RefusingRecorder(refuse, data_reply)
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        tenant = tenant_with({"host": "127.0.0.1", "port": controller.port, "tls": "none"},
                             tmp_path)
        two = Outgoing(channel="smtp", mail_from="a@behoerde.example",
                       recipients=["b@behoerde.example", "c@behoerde.example"], raw=RAW)
        result = await deliver(two, tenant)
    finally:
        controller.stop()
    assert result.status is status, result.detail
    assert detail in result.detail


async def test_sessions_are_kept_for_the_next_messages(plain_server, tmp_path):
    controller, recorder = plain_server
    tenant = tenant_with({"host": "127.0.0.1", "port": controller.port, "tls": "none"}, tmp_path)
    for _ in range(3):
        result = await deliver(outgoing(), tenant)
        assert result.status is DeliveryStatus.DELIVERED, result.detail
    assert [raw for _, raw in recorder.messages] == [RAW] * 3
    assert recorder.sessions == 1


async def test_idle_seconds_zero_closes_every_session(plain_server, tmp_path):
    controller, recorder = plain_server
    tenant = tenant_with({"host": "127.0.0.1", "port": controller.port, "tls": "none",
                          "idle_seconds": 0}, tmp_path)
    for _ in range(3):
        assert (await deliver(outgoing(), tenant)).status is DeliveryStatus.DELIVERED
    assert recorder.sessions == 3


async def test_a_session_the_relay_closed_is_replaced_without_failing(tmp_path):
    recorder = Recorder()
    port = free_port()
    first = Controller(recorder, hostname="127.0.0.1", port=port)
    first.start()
    tenant = tenant_with({"host": "127.0.0.1", "port": port, "tls": "none"}, tmp_path)
    assert (await deliver(outgoing(), tenant)).status is DeliveryStatus.DELIVERED
    first.stop()  # the kept session dies with the server
    second = Controller(recorder, hostname="127.0.0.1", port=port)
    second.start()
    try:
        result = await deliver(outgoing(), tenant)
        assert result.status is DeliveryStatus.DELIVERED, result.detail
    finally:
        await smtp_relay.close_connections()
        second.stop()
    assert len(recorder.messages) == 2
    assert recorder.sessions == 2


async def test_kept_sessions_stay_encrypted(tls_server, tmp_path):
    controller, recorder, cert_file = tls_server
    tenant = tenant_with({"host": "localhost", "port": controller.port,
                          "ca_file": str(cert_file)}, tmp_path)
    for _ in range(2):
        assert (await deliver(outgoing(), tenant)).status is DeliveryStatus.DELIVERED
    assert recorder.messages == [(True, RAW), (True, RAW)]
    assert recorder.sessions == 2  # EHLO before and after STARTTLS, on one connection
