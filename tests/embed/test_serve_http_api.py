"""``siegel serve`` serves the HTTP API over TLS when ``[http_api]`` is enabled; the client is
made with ``siegel api-client add`` beforehand, as an operator does it."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time

import httpx
from click.testing import CliRunner
from embed_helpers import CITIZEN, OTHER_CLERK, write_gateway

from siegel.cli import cli
from siegel.sink import SmtpSink
from siegel.testing import make_message, self_signed_certificate


def siegel(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_serve_answers_on_https(tmp_path, smtp_sink: SmtpSink):
    certificate, key = self_signed_certificate(tmp_path)
    config = write_gateway(tmp_path / "gw", smtp_sink, extra=f"""
[http_api]
enabled = true
host = "127.0.0.1"
port = 0
tls_certificate = "{certificate}"
tls_key = "{key}"
""")
    token = siegel("api-client", "add", "other", "formulare", "--config",
                   config).strip().splitlines()[-1]
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen([sys.executable, "-m", "siegel", "serve", "--config", config],
                                  stdout=output, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 30
        while "stop with Ctrl-C" not in log.read_text(errors="replace"):
            assert server.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        url = re.search(r"HTTP API on (https://\S+)/v1/", log.read_text()).group(1)
        with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=certificate)) as client:
            answer = client.post("/v1/messages",
                                 content=make_message(sender=OTHER_CLERK, to=CITIZEN),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "message/rfc822"})
            assert answer.status_code == 202, answer.text
            assert client.get(answer.headers["location"]).status_code == 401
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0, log.read_text(errors="replace")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert "Traceback" not in log.read_text(errors="replace")
