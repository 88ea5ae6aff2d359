"""One running gateway with the HTTP API for the folder's tests (starting one takes a second):
the gateway and the API server run in a background thread's event loop, as ``siegel serve``
runs them, and the tests talk to it with a real HTTP client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from embed_helpers import CLERK, write_gateway

import siegel
from siegel.embed import SyncGateway
from siegel.http_api import NAMESPACE, ApiClients, api_server
from siegel.sink import SmtpSink


@attrs.frozen
class Served:
    gateway: SyncGateway
    sink: SmtpSink
    base_url: str
    folder: Path
    #: Tokens: "clerk" (tenant test, only as CLERK), "test" (any sender of test), "other".
    tokens: dict[str, str]

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("served")
    sink = SmtpSink().start()
    config = write_gateway(folder, sink, extra="""
[http_api]
enabled = true
port = 0
max_request_bytes = 300000
""")
    try:
        with siegel.open_sync(config) as gateway:
            runtime = gateway.gateway.runtime
            clients = ApiClients(runtime.state(NAMESPACE), runtime.config)
            tokens = {
                "clerk": gateway.run(clients.create("test", "fachverfahren", [CLERK])),
                "test": gateway.run(clients.create("test", "termine")),
                "other": gateway.run(clients.create("other", "formulare")),
            }
            server = api_server(runtime)
            host, port = gateway.run(server.start())
            try:
                yield Served(gateway, sink, f"http://{host}:{port}", folder, tokens)
            finally:
                gateway.run(server.stop())
    finally:
        sink.stop()
