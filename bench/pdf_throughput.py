"""Password-PDF throughput: the whole gateway against a bare render + encrypt loop.

Run by hand (not in CI; this machine is shared and noisy, so only the ratios mean something):

    python bench/pdf_throughput.py [--messages 300] [--connections 4] [--processes 1] [--rounds 3]

(a) The baseline: a loop of ``parse_email`` + ``render_encrypted`` alone, on ``--processes``
    processes at once (each warmed up first).
(b) The gateway: ``siegel serve`` with the district's plugin set and ``render_processes`` set to
    the same number, fed over SMTP by this process on several connections, handing its carrier
    mails to a relay (``siegel sink``, a third process). Counted from the first message sent to
    the last carrier mail received: accept (fsync'd before the 250), classify, render + encrypt
    (in the render workers), carrier mail, SMTP delivery, and the "encryption successful" notice
    to the sender that the district sends.

Baseline and gateway are measured in turn, ``--rounds`` times, as the machine's other load comes
and goes. Prints per round messages per second of each and their ratio (the target, issue 3:
gateway/baseline >= 0.8 for 3 KB messages; the median over the rounds counts), and the CPU time
per message of each (read from ``/proc``; the gateway's counts its render workers) and that ratio.
``--processes 0`` renders on the gateway's own thread (against one loop process). Memory:
``bench/pdf_memory.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import aiosmtplib

from siegel import Account, Address
from siegel.accounts import NAMESPACE as ACCOUNTS
from siegel.clock import SystemClock
from siegel.crypto import ContentCipher
from siegel.model import parse_email
from siegel.plugins.password_pdf import Letterhead, derive_recipient_key, render_encrypted
from siegel.plugins.password_pdf.accounts import SLOT, encode_key
from siegel.sink import free_port
from siegel.sqlite_store import SQLiteStore
from siegel.state import PluginState
from siegel.testing import make_message

SENDER = "sachbearbeitung@landkreisgoettingen.de"
CITIZEN = "buerger@example.net"
PASSWORD = "Pferd Batterie Heftklammer"
BODY = ("Sehr geehrte Frau Müller,\n\nzu Ihrer Kundennummer 123A456789 teilen wir mit: "
        + "Die Unterlagen sind vollständig eingegangen. " * 60 + "\n\nMit freundlichen Grüßen\n")
TICKS = os.sysconf("SC_CLK_TCK")
LETTERHEAD = Letterhead(tenant_name="Landkreis Göttingen – Jobcenter")


def message() -> bytes:
    return make_message(sender=SENDER, to=CITIZEN, subject="Ihr Bescheid", body=BODY,
                        headers={"X-Siegel-Encrypt": "yes"})


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (the render workers and multiprocessing's helpers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, IndexError):
                continue
    tree = [pid]
    for member in tree:
        tree += [child for child, parent in parents.items() if parent == member]
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process, its threads and its descendants."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = _stat(member)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def _warm_up() -> None:
    render_encrypted(parse_email(message()), letterhead=LETTERHEAD,
                     key=derive_recipient_key(PASSWORD))


def _loop(count: int) -> float:
    """One baseline process's share; returns the CPU seconds it took."""
    raw, key = message(), derive_recipient_key(PASSWORD)
    cpu = time.process_time()
    for _ in range(count):
        render_encrypted(parse_email(raw), letterhead=LETTERHEAD, key=key)
    return time.process_time() - cpu


def baseline(count: int, processes: int) -> tuple[float, float]:
    """Messages per second and CPU seconds per message of render + encrypt alone, in a loop on
    each of ``processes`` processes."""
    shares = [count // processes + (i < count % processes) for i in range(processes)]
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_warm_up) as pool:
        list(pool.map(time.sleep, [0.5] * processes))  # every process started and warmed up
        start = time.perf_counter()
        cpu = sum(pool.map(_loop, shares))
        elapsed = time.perf_counter() - start
    return count / elapsed, cpu / count


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.05)


class Relay:
    """``siegel sink`` in its own process; counts the carrier mails in its mail folder."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.maildir = folder / "relay"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "siegel", "sink", "--port", str(self.port), "--maildir",
             str(self.maildir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.process, "the relay")
        self._seen: set[str] = set()
        self.carriers = 0

    def wait_for_carriers(self, count: int, timeout: float = 600) -> float:
        """Wait until ``count`` carrier mails arrived in all; return when the last one came
        (its file's time, on the ``time.time()`` clock). Polled five times a second: a tighter
        loop over a folder of hundreds of mails took CPU time from the gateway it measures."""
        deadline = time.monotonic() + timeout
        last = 0.0
        while True:
            with os.scandir(self.maildir) as entries:
                for entry in entries:
                    if entry.name.endswith(".eml") and entry.name not in self._seen:
                        self._seen.add(entry.name)
                        if b"\nX-Siegel-Protection:" in Path(entry.path).read_bytes():
                            self.carriers += 1
                            last = max(last, entry.stat().st_mtime)
            if self.carriers >= count:
                return last
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.carriers} of {count} carrier mails arrived")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def configure(folder: Path, relay_port: int,
              render_processes: int | None = None) -> tuple[Path, int]:
    """A config for ``siegel serve``; ``render_processes`` None keeps the default."""
    smtp_port, portal_port = free_port(), free_port()
    render = ("" if render_processes is None else
              f"[settings.password_pdf]\nrender_processes = {render_processes}\n\n")
    config = folder / "siegel.toml"
    config.write_text(f"""
[[listeners]]
host = "127.0.0.1"
port = {smtp_port}

[store]
path = "siegel.db"
key_file = "store.key"

[portal]
port = {portal_port}

[settings.relay]
host = "127.0.0.1"
port = {relay_port}
tls = "none"

{render}
[tenants.landkreis]
name = "Landkreis Göttingen – Jobcenter"
domains = ["landkreisgoettingen.de"]
plugin_set = "district"
""", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "siegel", "init", str(folder / "keys")], check=True,
                   stdout=subprocess.DEVNULL)
    (folder / "keys" / "keys" / "store.key").rename(folder / "store.key")
    return config, smtp_port


def account_record() -> bytes:
    """The recipient's shared account as the workflow stores it once the password is chosen
    (the PDF key material in the plugin's slot; the login hash is not needed here)."""
    account = Account.new("landkreis", Address.parse(CITIZEN), SystemClock().now())
    return account.with_slot(SLOT, encode_key(derive_recipient_key(PASSWORD))).encode()


async def register_recipient(folder: Path) -> None:
    """The recipient chose the password before: every message goes out at once."""
    store = SQLiteStore(folder / "siegel.db", ContentCipher.from_key_file(folder / "store.key"))
    await store.open()
    await PluginState(store, ACCOUNTS, SystemClock()).put(f"landkreis/{CITIZEN}",
                                                          account_record())
    await store.close()


async def send(port: int, raw: bytes, count: int, connections: int, *, sender: str = SENDER,
               recipient: str = CITIZEN) -> None:
    async def one_connection(share: int) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120) as client:
            for _ in range(share):
                await client.sendmail(sender, [recipient], raw)

    shares = [count // connections + (i < count % connections) for i in range(connections)]
    await asyncio.gather(*(one_connection(s) for s in shares if s))


def gateway(raw: bytes, count: int, connections: int, processes: int,
            folder: Path) -> tuple[float, float]:
    """Messages per second and CPU seconds per message of ``siegel serve`` with ``processes``
    render workers (its own process and the workers' CPU time counted)."""
    relay = Relay(folder)
    config, smtp_port = configure(folder, relay.port, processes)
    asyncio.run(register_recipient(folder))
    serve = subprocess.Popen([sys.executable, "-m", "siegel", "serve", "--config", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(smtp_port, serve, "siegel serve")
        asyncio.run(send(smtp_port, raw, 1, 1))  # warm-up: fonts, first connection
        relay.wait_for_carriers(1)
        time.sleep(0.5)  # let the warm-up's notice go out before measuring
        cpu = cpu_seconds(serve.pid)
        start = time.time()
        asyncio.run(send(smtp_port, raw, count, connections))
        end = relay.wait_for_carriers(count + 1)
        used = cpu_seconds(serve.pid) - cpu
        return count / (end - start), used / count
    finally:
        serve.terminate()
        _, errors = serve.communicate(timeout=30)
        relay.stop()
        if serve.returncode not in (0, -15):
            print(errors.decode(errors="replace")[-2000:], file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--processes", type=int, default=1,
                        help="baseline loop processes = the gateway's render_processes "
                             "(0: the gateway renders on its own thread, the baseline on 1)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="baseline and gateway measured in turn this often; the median "
                             "ratio counts")
    args = parser.parse_args()
    raw = message()
    print(f"message size {len(raw) / 1024:.1f} KB, {args.messages} messages, "
          f"{args.connections} SMTP connections, {max(args.processes, 1)} baseline process(es), "
          f"render_processes = {args.processes}, {args.rounds} round(s)")
    by_rate: list[float] = []
    by_cpu: list[float] = []
    for number in range(1, args.rounds + 1):
        base_rate, base_cpu = baseline(args.messages, max(args.processes, 1))
        with tempfile.TemporaryDirectory() as folder:
            gate_rate, gate_cpu = gateway(raw, args.messages, args.connections, args.processes,
                                          Path(folder))
        by_rate.append(gate_rate / base_rate)
        by_cpu.append(base_cpu / gate_cpu)
        print(f"round {number}: baseline {base_rate:5.1f} messages/s, "
              f"{base_cpu * 1000:5.1f} ms CPU each; gateway {gate_rate:5.1f} messages/s, "
              f"{gate_cpu * 1000:5.1f} ms CPU each; ratio {by_rate[-1]:.2f} by throughput, "
              f"{by_cpu[-1]:.2f} by CPU time")
    print(f"ratio gateway/baseline, median of {args.rounds}: {statistics.median(by_rate):.2f} "
          f"by throughput (target >= 0.80; {min(by_rate):.2f} to {max(by_rate):.2f}), "
          f"{statistics.median(by_cpu):.2f} by CPU time per message")


if __name__ == "__main__":
    main()
