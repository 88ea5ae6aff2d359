"""Both set-ups of docs/postfix.rst against Debian's real Postfix.

Each set-up runs one private Postfix (:mod:`postfix_instance`) and one siegel for the whole
module, configured with the blocks the page shows (ports and host names replaced). Mail is
submitted with Postfix's ``sendmail`` and must reach the sink (the recipients' side) through
siegel; when siegel answers 451 Postfix keeps the message and sends it again; when siegel answers
with a 5xx code Postfix returns the message to its sender.

(a) content filter: ``sendmail`` -> Postfix -> ``siegel`` transport -> siegel -> Postfix's
re-injection listener -> ``relayhost`` (the sink).
(b) smarthost: ``sendmail`` -> Postfix -> ``relayhost`` with TLS required -> siegel -> the sink.
"""

from __future__ import annotations

import email.policy
import secrets
import tomllib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import attrs
import pytest

from postfix_instance import (
    GatewayThread,
    PostfixInstance,
    doc_block,
    postfix_unavailable,
    wait_for,
)
from siegel import RecipientState
from siegel.config import deep_merge
from siegel.sink import ReceivedMail, SmtpSink, free_port
from siegel.testing import self_signed_certificate

pytestmark = pytest.mark.slow

FAST_DELIVERY = {"poll_seconds": 0.2, "first_retry_seconds": 0.5, "max_retry_seconds": 1}
#: siegel's header limit in these tests: small, to have a 5xx answer at hand.
HEADER_LIMIT = 4096


@attrs.frozen
class SetUp:
    name: str
    domain: str
    postfix: PostfixInstance
    gateway: GatewayThread
    sink: SmtpSink
    siegel_port: int

    @property
    def clerk(self) -> str:
        return f"sachbearbeitung@{self.domain}"

    @property
    def colleague(self) -> str:
        return f"kollege@{self.domain}"

    def arrived(self, token: str) -> list[ReceivedMail]:
        with self.sink.lock:
            return [m for m in self.sink.messages if token.encode() in m.raw]

    def wait_arrived(self, token: str, timeout: float = 20) -> ReceivedMail:
        wait_for(lambda: self.arrived(token), timeout, f"{token} at the sink", self.postfix.log)
        [mail] = self.arrived(token)
        return mail


def message(sender: str, recipient: str, token: str, *, header_filler: int = 0) -> bytes:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = recipient
    mail["Subject"] = f"Postfix test {token}"
    if header_filler:
        mail["X-Filler"] = " ".join(["x" * 70] * (header_filler // 71 + 1))
    mail["Message-ID"] = f"<{token}@test.invalid>"
    mail.set_content(f"Guten Tag,\n\n{token}\n")
    return mail.as_bytes(policy=email.policy.SMTP)


def doc_toml(starts_with: str) -> dict[str, Any]:
    return tomllib.loads(doc_block(starts_with, "toml"))


def content_filter(root: Path, sink: SmtpSink) -> tuple[PostfixInstance, dict[str, Any], int]:
    """(a): the ``siegel`` transport and the re-injection listener from the page."""
    siegel_port, reinject_port = free_port(), free_port()
    master = doc_block("siegel    unix") + doc_block("127.0.0.1:10026 inet").replace(
        "127.0.0.1:10026", f"127.0.0.1:{reinject_port}")
    postfix = PostfixInstance({
        "content_filter": f"siegel:[127.0.0.1]:{siegel_port}",
        "relayhost": f"[127.0.0.1]:{sink.port}",
    }, master)
    config = doc_toml('[[listeners]]\nhost = "127.0.0.1"')
    [listener] = config["listeners"]
    assert listener["port"] == 10025 and config["settings"]["relay"]["port"] == 10026
    listener.update(port=siegel_port, max_header_size=HEADER_LIMIT)
    config["settings"]["relay"]["port"] = reinject_port
    return postfix, config, siegel_port


def smarthost(root: Path, sink: SmtpSink) -> tuple[PostfixInstance, dict[str, Any], int]:
    """(b): Postfix's ``relayhost`` is siegel, TLS required on that hop; siegel relays to the
    outbound MTA (the sink)."""
    siegel_port = free_port()
    main = dict(line.split(" = ", 1) for line in doc_block("relayhost =").splitlines()
                if line and not line.startswith("#"))
    assert main["relayhost"] == "[siegel.kreis.example]:10025"
    main["relayhost"] = f"[127.0.0.1]:{siegel_port}"
    postfix = PostfixInstance({**main, "smtp_tls_loglevel": "1"})
    config = doc_toml('[[listeners]]\nhost = "10.1.2.10"')
    [listener] = config["listeners"]
    tls = root / "tls"
    tls.mkdir()
    certificate, key = self_signed_certificate(tls, "siegel")
    certificate.rename(root / listener["tls_certificate"])
    key.rename(root / listener["tls_key"])
    listener.update(host="127.0.0.1", port=siegel_port, allowed_clients=["127.0.0.1/32"],
                    max_header_size=HEADER_LIMIT)
    # The outbound MTA is the sink on loopback, without TLS.
    config["settings"]["relay"].update(host="127.0.0.1", port=sink.port, tls="none")
    config = deep_merge(config, {"tenants": {"kreis": {
        "name": "Landkreis", "domains": ["kreis.example"], "plugin_set": "baseline"}}})
    return postfix, config, siegel_port


@pytest.fixture(scope="module", params=["content_filter", "smarthost"])
def setup(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[SetUp]:
    problem = postfix_unavailable()
    if problem:
        pytest.fail(f"Postfix cannot run: {problem}")
    root = tmp_path_factory.mktemp(request.param)
    sink = SmtpSink().start()
    build = content_filter if request.param == "content_filter" else smarthost
    postfix, config, siegel_port = build(root, sink)
    config = deep_merge(config, {"delivery": FAST_DELIVERY})
    [domain] = next(iter(config["tenants"].values()))["domains"]
    gateway = GatewayThread(config, root)
    try:
        gateway.start()
        postfix.start()
        yield SetUp(request.param, domain, postfix, gateway, sink, siegel_port)
    finally:
        postfix.stop()
        gateway.stop()
        sink.stop()


def siegel_ids(setup: SetUp, token_queue_id: str) -> list[str]:
    """siegel's message ids from Postfix's log lines of one Postfix queue id."""
    return [line.rsplit("queued as ", 1)[1].rstrip(")")
            for line in setup.postfix.log_lines(rf"{token_queue_id}: .*:{setup.siegel_port}, .*"
                                                r"status=sent \(250 2\.0\.0 OK queued as ")]


def queue_id(setup: SetUp, token: str) -> str | None:
    """Postfix's queue id of the submitted message with ``token`` in its Message-ID (with a
    content filter, the copy siegel hands back gets a second one, logged later); None while
    Postfix has not logged it."""
    lines = setup.postfix.log_lines(rf"cleanup\[\d+\]: \w+: message-id=<{token}@")
    return lines[0].split(": ", 2)[1] if lines else None


def logged_queue_id(setup: SetUp, token: str) -> str:
    found = queue_id(setup, token)
    assert found is not None, f"Postfix logged no message {token}:\n{setup.postfix.log()}"
    return found


def test_internal_mail_reaches_the_recipient_through_siegel(setup: SetUp) -> None:
    token = f"plain-{secrets.token_hex(6)}"
    setup.postfix.sendmail(message(setup.clerk, setup.colleague, token), setup.clerk,
                           setup.colleague)
    mail = setup.wait_arrived(token)
    assert mail.rcpt_to == (setup.colleague,) and mail.mail_from == setup.clerk
    [siegel_id] = siegel_ids(setup, logged_queue_id(setup, token))
    assert setup.gateway.runtime is not None
    records = setup.gateway.call(setup.gateway.runtime.store.recipients(siegel_id))
    assert [(r.recipient, r.state) for r in records] == [(setup.colleague,
                                                          RecipientState.DELIVERED)]
    if setup.name == "content_filter":
        # Back into Postfix through the re-injection listener, then to the recipient.
        assert setup.postfix.log_lines(r"postfix/reinject/smtpd\[")
        assert mail.parsed.get_all("Received", [])[0].count("postfix.test.invalid")
    else:
        assert setup.postfix.log_lines(rf":{setup.siegel_port}, .*status=sent")
        assert setup.postfix.log_lines(r"Trusted TLS|Untrusted TLS|Anonymous TLS"), \
            "Postfix did not use TLS towards siegel"
    wait_for(setup.postfix.queue_is_empty, 10, "Postfix's queue to empty", setup.postfix.log)


def test_451_is_retried_by_postfix(setup: SetUp) -> None:
    token = f"deferred-{secrets.token_hex(6)}"
    assert setup.gateway.store is not None
    setup.gateway.store.fail_accepts = 2
    setup.postfix.sendmail(message(setup.clerk, setup.colleague, token), setup.clerk,
                           setup.colleague)
    mail = setup.wait_arrived(token, timeout=30)
    assert mail.rcpt_to == (setup.colleague,)
    postfix_id = logged_queue_id(setup, token)
    deferred = setup.postfix.log_lines(rf"{postfix_id}: .*status=deferred .*451 4\.3\.0")
    assert len(deferred) == 2, setup.postfix.log()
    assert len(siegel_ids(setup, postfix_id)) == 1
    wait_for(setup.postfix.queue_is_empty, 10, "Postfix's queue to empty", setup.postfix.log)
    assert len(setup.arrived(token)) == 1


def test_5xx_bounces_to_the_sender(setup: SetUp) -> None:
    token = f"bounced-{secrets.token_hex(6)}"
    raw = message(setup.clerk, setup.colleague, token, header_filler=2 * HEADER_LIMIT)
    setup.postfix.sendmail(raw, setup.clerk, setup.colleague)

    def bounced() -> bool:
        postfix_id = queue_id(setup, token)
        return postfix_id is not None and bool(setup.postfix.log_lines(
            rf"{postfix_id}: .*status=bounced .*552 5\.3\.4"))

    wait_for(bounced, 20, "Postfix to bounce the message", setup.postfix.log)
    notice = setup.wait_arrived(token)  # the bounce quotes the message, which never arrives
    assert notice.mail_from == "" and notice.rcpt_to == (setup.clerk,)
    parsed = notice.parsed
    assert parsed.get_content_type() == "multipart/report"
    assert "552 5.3.4" in parsed.as_string()
    # Postfix's own report goes to its next hop: in (a) not through the content filter (see
    # "Bounces of invitations" in docs/postfix.rst), in (b) through siegel, the relayhost.
    [line] = setup.postfix.log_lines(
        rf"{logged_queue_id(setup, token)}: sender non-delivery notification: ")
    report_id = line.rsplit(": ", 1)[1]
    next_hop = setup.sink.port if setup.name == "content_filter" else setup.siegel_port
    assert setup.postfix.log_lines(
        rf"{report_id}: to=<{setup.clerk}>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{next_hop}, "
        r".*status=sent"), setup.postfix.log()
    wait_for(setup.postfix.queue_is_empty, 10, "Postfix's queue to empty", setup.postfix.log)
