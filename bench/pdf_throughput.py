"""Password-PDF throughput and memory: the gateway against a bare render + encrypt loop.

Run by hand (not in CI; this machine is shared and noisy, so only the ratio means something):

    python bench/pdf_throughput.py [--messages 300]

Prints messages per second of (a) a loop of ``render_encrypted`` alone and (b) the whole gateway
(accept with fsync, classify, render + encrypt, carrier mail, SMTP delivery to a relay that runs
as its own process, notices), the gateway in this one process, and their ratio.
Target (issue 3): ratio >= 0.8 for 3 KB messages. Memory: bench/pdf_memory.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from siegel.clock import SystemClock
from siegel.config import config_from_mapping
from siegel.crypto import ContentCipher, create_key_file
from siegel.manager import PluginRegistry
from siegel.model import parse_email
from siegel.plugins.password_pdf import Letterhead, derive_recipient_key, render_encrypted
from siegel.plugins.password_pdf.workflow import ACCOUNTS
from siegel.runtime import Runtime
from siegel.sink import free_port
from siegel.sqlite_store import SQLiteStore
from siegel.testing import make_message

CITIZEN = "buerger@example.net"
PASSWORD = "Pferd Batterie Heftklammer"
BODY = ("Sehr geehrte Frau Müller,\n\nzu Ihrer Kundennummer 123A456789 teilen wir mit: "
        + "Die Unterlagen sind vollständig eingegangen. " * 60 + "\n\nMit freundlichen Grüßen\n")


def message(attachment_mb: float = 0) -> bytes:
    attachments = [("Anlage.bin", "application/octet-stream",
                    os.urandom(int(attachment_mb * 1024 * 1024)))] if attachment_mb else []
    return make_message(to=CITIZEN, subject="Ihr Bescheid", body=BODY, attachments=attachments,
                        headers={"X-Siegel-Encrypt": "yes"})


def baseline(raw: bytes, count: int) -> float:
    key = derive_recipient_key(PASSWORD)
    letterhead = Letterhead(tenant_name="Landkreis")
    render_encrypted(parse_email(raw), letterhead=letterhead, key=key)  # warm-up (fonts)
    start = time.perf_counter()
    for _ in range(count):
        render_encrypted(parse_email(raw), letterhead=letterhead, key=key)
    return count / (time.perf_counter() - start)


class RelayProcess:
    """``siegel sink`` in its own process, as a real relay would be: it does not compete with the
    gateway for this process's interpreter. Counts what it received through its mail folder."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.maildir = folder / "relay"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "siegel", "sink", "--port", str(self.port), "--maildir",
             str(self.maildir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the sink did not start") from None
                time.sleep(0.05)

    def received(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.maildir.glob("*.eml"))]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


async def gateway(raw: bytes, count: int, folder: Path) -> float:
    sink = RelayProcess(folder)
    try:
        registry = PluginRegistry.load()
        data = {"tenants": {"landkreis": {"name": "Landkreis", "domains": ["behoerde.example"],
                                          "plugin_set": "district"}},
                "settings": {"relay": {"host": "127.0.0.1", "port": sink.port, "tls": "none"}},
                "delivery": {"concurrency": 8}}
        config = config_from_mapping(data, registry, source="bench", base_dir=folder)
        create_key_file(folder / "store.key")
        store = SQLiteStore(folder / "siegel.db", ContentCipher.from_key_file(folder / "store.key"))
        runtime = Runtime(config, registry, store, clock=SystemClock())
        await store.open()
        key = derive_recipient_key(PASSWORD)
        import base64
        await runtime.state(ACCOUNTS).put(f"landkreis/{CITIZEN}", json.dumps({
            "u": base64.b64encode(key.u_entry).decode(),
            "ue": base64.b64encode(key.ue_key).decode()}).encode())
        await runtime.submit(raw, "sachbearbeitung@behoerde.example", [CITIZEN])  # warm-up
        await runtime.run_until_idle()
        start = time.perf_counter()
        for _ in range(count):
            await runtime.submit(raw, "sachbearbeitung@behoerde.example", [CITIZEN])
        await runtime.run_until_idle()
        elapsed = time.perf_counter() - start
        await store.close()
        delivered = sum(1 for m in sink.received() if b"X-Siegel-Protection" in m)
        assert delivered == count + 1, f"only {delivered} of {count + 1} delivered"
        return count / elapsed
    finally:
        sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    raw = message()
    print(f"message size: {len(raw) / 1024:.1f} KB, {args.messages} messages, 1 process")
    base = baseline(raw, args.messages)
    print(f"baseline render+encrypt loop: {base:8.1f} messages/s")
    with tempfile.TemporaryDirectory() as folder:
        gate = asyncio.run(gateway(raw, args.messages, Path(folder)))
    print(f"gateway (store, classify, protect, deliver): {gate:8.1f} messages/s")
    print(f"ratio gateway/baseline: {gate / base:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
