"""Submission throughput through the three doors: the SMTP listener, the Python API and the HTTP API.

Run by hand (not in CI; only the ratios mean something on a shared machine):

    python bench/submit_paths.py [--messages 400] [--concurrency 8] [--size 4096]

One process, one event loop, one gateway on a fresh SQLite store in a temporary folder: the
listener (aiosmtpd) on a local port, the HTTP API (uvicorn) on another, and ``siegel.open``'s
gateway for the Python API, all accepting into the same store. The worker does not run, so only
accepting is measured: every answer means the message is committed to disk. Clients run in the
same loop, ``concurrency`` of them at once per door: aiosmtplib, one connection per sender with
several messages each; for HTTP a minimal keep-alive HTTP/1.1 client of a few lines (as light as
aiosmtplib), and for comparison httpx, whose own cost per request (in the same process) is
counted too.

Prints messages per second for each door and its ratio to the SMTP listener.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosmtplib
import httpx

import siegel
from siegel.crypto import create_key_file
from siegel.gateway import SmtpGateway
from siegel.http_api import NAMESPACE, ApiClients, api_server
from siegel.testing import make_message

SENDER = "sachbearbeitung@behoerde.example"
RECIPIENT = "buerger@example.net"


def write_config(folder: Path) -> Path:
    create_key_file(folder / "keys" / "store.key")
    config = folder / "siegel.toml"
    config.write_text("""
[[listeners]]
port = 0
[portal]
enabled = false
[http_api]
enabled = true
port = 0
[settings.relay]
host = "127.0.0.1"
port = 9
tls = "none"
[tenants.test]
name = "Testbehörde"
domains = ["behoerde.example"]
plugin_set = "baseline"
""", encoding="utf-8")
    return config


async def measure(count: int, concurrency: int,
                  sender: Callable[[int], Awaitable[None]]) -> float:
    """Messages per second with ``concurrency`` senders, each sending its share."""
    started = time.perf_counter()
    await asyncio.gather(*(sender(count // concurrency) for _ in range(concurrency)))
    return (count // concurrency * concurrency) / (time.perf_counter() - started)


async def main(count: int, concurrency: int, size: int) -> None:
    raw = make_message(sender=SENDER, to=RECIPIENT, body="Guten Tag,\n" + "x" * size + "\n")
    with tempfile.TemporaryDirectory(prefix="siegel-bench-") as tmp:
        async with siegel.open(write_config(Path(tmp)), worker=False) as gateway:
            listener = SmtpGateway(gateway.runtime)
            [(smtp_host, smtp_port)] = await listener.start()
            api = api_server(gateway.runtime)
            api_host, api_port = await api.start()
            token = await ApiClients(gateway.runtime.state(NAMESPACE),
                                     gateway.config).create("test", "bench")
            try:
                async def smtp(n: int) -> None:
                    async with aiosmtplib.SMTP(hostname=smtp_host, port=smtp_port,
                                               start_tls=False) as client:
                        for _ in range(n):
                            await client.sendmail(SENDER, [RECIPIENT], raw)

                async def python(n: int) -> None:
                    for _ in range(n):
                        await gateway.submit(raw, sender=SENDER, recipients=[RECIPIENT])

                request = (f"POST /v1/messages HTTP/1.1\r\nHost: {api_host}\r\n"
                           f"Authorization: Bearer {token}\r\n"
                           "Content-Type: message/rfc822\r\n"
                           f"Content-Length: {len(raw)}\r\n\r\n").encode() + raw

                async def http(n: int) -> None:
                    """A minimal keep-alive HTTP/1.1 client, as light as aiosmtplib is."""
                    reader, writer = await asyncio.open_connection(api_host, api_port)
                    try:
                        for _ in range(n):
                            writer.write(request)
                            head = await reader.readuntil(b"\r\n\r\n")
                            assert head.startswith(b"HTTP/1.1 202"), head
                            length = int(re.search(rb"content-length: (\d+)", head,
                                                   re.IGNORECASE).group(1))
                            await reader.readexactly(length)
                    finally:
                        writer.close()

                async def httpx_client(n: int) -> None:
                    async with httpx.AsyncClient(
                            base_url=f"http://{api_host}:{api_port}",
                            headers={"Authorization": f"Bearer {token}",
                                     "Content-Type": "message/rfc822"}) as client:
                        for _ in range(n):
                            answer = await client.post("/v1/messages", content=raw)
                            assert answer.status_code == 202, answer.text

                await measure(concurrency * 2, concurrency, http)  # warm up every door
                await measure(concurrency * 2, concurrency, smtp)
                rates = {"SMTP listener": await measure(count, concurrency, smtp),
                         "Python API": await measure(count, concurrency, python),
                         "HTTP API": await measure(count, concurrency, http),
                         "HTTP (httpx)": await measure(count, concurrency, httpx_client)}
            finally:
                await api.stop()
                await listener.stop()
    baseline = rates["SMTP listener"]
    print(f"{count} messages of {len(raw)} bytes, {concurrency} concurrent senders per door")
    for door, rate in rates.items():
        print(f"  {door:<14} {rate:8.1f} messages/s   ratio to SMTP {rate / baseline:5.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=4096, help="body size in bytes")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.messages, arguments.concurrency, arguments.size))
