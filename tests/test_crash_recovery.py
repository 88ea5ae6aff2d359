"""A gateway killed mid-stream loses no message it answered 250 for.

Each test runs the real command line (``python -m siegel serve``) in a subprocess on a directory
made by ``siegel init``, sends messages as fast as it can from a client thread, kills the server
with SIGKILL while the client is still sending, starts it again and waits until every message that
got a 250 has reached the relay (a real SMTP sink). Messages go to an internal recipient, so they
are delivered as they are and can be recognised by a token in subject and body.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from siegel import RecipientState
from siegel.bootstrap import bootstrap
from siegel.runtime import open_store
from siegel.sink import SmtpSink, free_port
from siegel.store import RecipientRecord

pytestmark = pytest.mark.slow

SENDER = "sachbearbeitung@demo.example"
RECIPIENT = "kollege@demo.example"
TOKEN = re.compile(rb"crash-token-(\d+)-end")


def poll(condition: Callable[[], bool], timeout: float) -> bool:
    """Whether ``condition`` became true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               log: Path | None = None) -> None:
    if not poll(condition, timeout):
        extra = f"\n--- server log ---\n{log.read_text(errors='replace')}" if log else ""
        raise AssertionError(f"timed out after {timeout} s waiting for {what}{extra}")


def make_workdir(tmp_path: Path, listen_port: int, relay_port: int) -> Path:
    """``siegel init``, then point the listener and the relay at test ports and poll quickly."""
    workdir = tmp_path / "gateway"
    subprocess.run([sys.executable, "-m", "siegel", "init", str(workdir)], check=True,
                   capture_output=True, timeout=30)
    config = workdir / "siegel.toml"
    text = config.read_text(encoding="utf-8")
    edits = [
        ("port = 10025", f"port = {listen_port}"),
        ("port = 10026", f"port = {relay_port}"),
        ("port = 8025", f"port = {free_port()}"),
        ("[delivery]\n",
         "[delivery]\npoll_seconds = 0.2\n"),
        ("first_retry_seconds = 60", "first_retry_seconds = 0.3"),
        ("max_retry_seconds = 3600", "max_retry_seconds = 0.5"),
    ]
    for old, new in edits:
        assert text.count(old) == 1, f"template changed: {old!r} not found exactly once"
        text = text.replace(old, new)
    config.write_text(text, encoding="utf-8")
    return config


class Server:
    """``siegel serve`` in a subprocess; output goes to a log file per run."""

    def __init__(self, config: Path, port: int) -> None:
        self.config = config
        self.port = port
        self.runs = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log: Path = config.parent / "serve-0.log"
        #: How long a start may take (longer where several instances start on a busy machine).
        self.start_timeout = 20.0

    def start(self) -> None:
        self.runs += 1
        self.log = self.config.parent / f"serve-{self.runs}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "siegel", "serve", "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.config.parent)
        wait_until(self.listening, self.start_timeout, f"siegel serve on port {self.port}",
                   self.log)

    def listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"siegel serve exited with {self.process.returncode}:\n"
                                 + self.log.read_text(errors="replace"))
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class Sender(threading.Thread):
    """Sends numbered messages over one connection until the server goes away; remembers which
    ones were answered 250."""

    def __init__(self, port: int, limit: int = 5000) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.limit = limit
        self.acknowledged: list[int] = []
        self.attempted = 0
        self.error: BaseException | None = None
        self.lock = threading.Lock()

    def acked(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    @staticmethod
    def message(number: int) -> bytes:
        message = EmailMessage()
        message["From"] = SENDER
        message["To"] = RECIPIENT
        message["Subject"] = f"Absturztest crash-token-{number}-end"
        message["Message-ID"] = f"<crash-{number}@demo.example>"
        message.set_content(f"Nachricht crash-token-{number}-end\n" + "Inhalt\n" * 20)
        return message.as_bytes()

    def run(self) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test",
                              timeout=10) as smtp:
                for number in range(self.limit):
                    self.attempted = number + 1
                    try:
                        smtp.sendmail(SENDER, [RECIPIENT], self.message(number))
                    except smtplib.SMTPResponseException:
                        continue  # a 4xx/5xx answer is no 250; carry on
                    with self.lock:
                        self.acknowledged.append(number)
        except (OSError, smtplib.SMTPException) as exc:
            self.error = exc  # the server was killed


def delivered_tokens(sink: SmtpSink) -> list[int]:
    with sink.lock:
        mails = list(sink.messages)
    tokens = []
    for mail in mails:
        assert mail.rcpt_to == (RECIPIENT,)
        tokens += {int(t) for t in TOKEN.findall(mail.raw)}
    return tokens


def stored(config: Path) -> dict[int, RecipientRecord]:
    """What the (dead) gateway's store holds: each message's token and its recipient's record."""

    async def work() -> dict[int, RecipientRecord]:
        loaded, _ = bootstrap(config)
        found: dict[int, RecipientRecord] = {}
        async with open_store(loaded) as store:
            for record in await store.list(limit=100_000):
                message = await store.load(record.message_id)
                [token] = {int(t) for t in TOKEN.findall(message.raw)}
                found[token] = record
        return found

    return asyncio.run(work())


@pytest.fixture
def ports() -> tuple[int, int]:
    listen, relay = free_port(), free_port()
    while relay == listen:
        relay = free_port()
    return listen, relay


@pytest.fixture
def server_factory() -> Iterator[Callable[[Path, int], Server]]:
    servers: list[Server] = []

    def factory(config: Path, port: int) -> Server:
        server = Server(config, port)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.cleanup()


def kill_while_sending(server: Server, after: int) -> Sender:
    sender = Sender(server.port)
    sender.start()
    wait_until(lambda: sender.acked() >= after or not sender.is_alive(), 20,
               f"{after} acknowledged messages", server.log)
    server.kill()
    sender.join(timeout=15)
    assert not sender.is_alive()
    assert sender.error is not None, "the client finished before the server was killed"
    assert sender.acked() >= after, sender.error
    return sender


def restart_and_check(server: Server, sink: SmtpSink, sender: Sender) -> None:
    acknowledged = set(sender.acknowledged)
    server.start()
    poll(lambda: acknowledged <= set(delivered_tokens(sink)), 30)
    assert server.terminate() == 0, server.log.read_text(errors="replace")
    delivered = delivered_tokens(sink)
    missing = acknowledged - set(delivered)
    assert not missing, (f"{len(missing)} of {len(acknowledged)} messages acknowledged with 250 "
                         f"were not delivered within 30 s after the restart: {sorted(missing)}")
    # Nothing was made up: whatever arrived was sent (the one in flight at the kill may arrive).
    assert set(delivered) <= set(range(sender.attempted))
    assert "Traceback" not in server.log.read_text(errors="replace")


def test_killed_gateway_delivers_every_acknowledged_message_after_restart(
        tmp_path, ports, server_factory):
    listen_port, relay_port = ports
    config = make_workdir(tmp_path, listen_port, relay_port)
    # A slow relay (about 20 messages a second): at the kill, copies are still queued and some
    # are being delivered (claimed, with a lease that dies with the process).
    with SmtpSink(port=relay_port, on_message=lambda mail: time.sleep(0.05)) as sink:
        server = server_factory(config, listen_port)
        server.start()
        sender = kill_while_sending(server, after=60)
        delivered_before_restart = set(delivered_tokens(sink))
        assert not set(sender.acknowledged) <= delivered_before_restart, (
            "everything was delivered before the kill; the test would prove nothing")
        assert set(sender.acknowledged) <= set(stored(config))
        restart_and_check(server, sink, sender)


def test_messages_queued_while_the_relay_is_down_survive_a_kill(
        tmp_path, ports, server_factory):
    listen_port, relay_port = ports
    config = make_workdir(tmp_path, listen_port, relay_port)
    sink = SmtpSink(port=relay_port).start()
    server = server_factory(config, listen_port)
    server.start()
    sink.stop()  # the relay goes down before the first message; it comes back after the kill
    sender = kill_while_sending(server, after=40)
    assert sink.messages == []
    queued = stored(config)
    assert set(sender.acknowledged) <= set(queued)
    assert {r.state for r in queued.values()} == {RecipientState.ACCEPTED}
    assert any(r.attempts > 0 for r in queued.values()), "the relay was never tried"
    with sink:
        restart_and_check(server, sink, sender)
