"""Plain internal mail: siegel against a bare durable relay, in one run.

Run by hand (not in CI; on a shared machine only the ratios mean something):

    python bench/plain_relay.py [--messages 2000] [--connections 8] [--rounds 3]
                                [--latency-messages 200] [--store sqlite]

Both legs receive the same messages over SMTP from this process and hand them on to the same
kind of sink (a third process that notes when each message arrived):

(a) The bare durable relay (its own process): an aiosmtpd listener that writes each message to a
    file of its own and fsyncs it before answering 250, then relays it with aiosmtplib on
    ``--connections`` connections that it keeps open, and deletes the file.
(b) siegel: ``siegel serve`` with the ``baseline`` plugin set; the recipient is internal, so the
    message is ``PLAIN`` and handed on as it is (stored and fsync'd before the 250, classified,
    delivered on kept relay connections, marked delivered).

Throughput: ``--messages`` messages on ``--connections`` connections as fast as both ends go,
from the first message sent to the last one at the sink; the legs are measured in turn (which
goes first alternates), ``--rounds`` times, and the median ratio siegel/bare counts (issue 11: at
least 0.8 on SQLite, 0.7 on PostgreSQL). On a machine with other load, prefer more and shorter
rounds (``--rounds 9 --messages 600``). Latency: ``--latency-messages`` messages one at a time
on one connection, each waiting for the previous one to arrive at the sink; per message the time
to the 250 and the time until it is at the sink, for both legs, and what siegel adds (median and
99th percentile). Also the CPU time per message of the relay's process (siegel's or the bare one's).

``--store`` names siegel's store backend; ``postgresql`` (with ``--dsn``) belongs to the
PostgreSQL store, which this script gains together with it (:func:`store_config`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiosmtplib

from siegel.sink import free_port
from siegel.testing import make_message

DOMAIN = "amt.example"
SENDER = f"sachbearbeitung@{DOMAIN}"
COLLEAGUE = f"kollegin@{DOMAIN}"
TOKEN = re.compile(rb"bench-token-(\w+)-end")
TICKS = os.sysconf("SC_CLK_TCK")
TARGETS = {"sqlite": 0.8, "postgresql": 0.7}


def message(token: str) -> bytes:
    """A plain internal mail of about 3 KB."""
    body = ("Hallo Kollegin,\n\nanbei die Übersicht für die Besprechung am Donnerstag.\n"
            + "Die Zahlen des letzten Quartals liegen im gemeinsamen Laufwerk. " * 40
            + f"\n\nbench-token-{token}-end\n")
    return make_message(sender=SENDER, to=COLLEAGUE, subject=f"Besprechung {token}", body=body)


# -- the processes ------------------------------------------------------------------------------


def run_sink(port: int) -> None:
    """The sink (``--sink PORT``): prints ``TOKEN MONOTONIC_TIME`` for every message."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session

    out = sys.stdout
    lock = threading.Lock()

    class Handler:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            found = TOKEN.search(envelope.original_content or b"")
            with lock:
                out.write(f"{found.group(1).decode() if found else '-'} {time.monotonic()}\n")
                out.flush()
            return "250 OK"

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, decode_data=False,
                            data_size_limit=None)
    controller.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


def run_bare_relay(port: int, sink_port: int, spool: Path, connections: int) -> None:
    """The bare durable relay (``--bare-relay PORT SINK_PORT SPOOL CONNECTIONS``)."""
    from aiosmtpd.smtp import SMTP, Envelope, Session

    disk = ThreadPoolExecutor(connections, thread_name_prefix="fsync")
    names = itertools.count()

    def write_durably(path: Path, raw: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, raw)
            os.fsync(fd)
        finally:
            os.close(fd)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[Path, str, list[str], bytes]] = asyncio.Queue()

        class Handler:
            async def handle_DATA(self, server: SMTP, session: Session,
                                  envelope: Envelope) -> str:
                raw = envelope.original_content or b""
                path = spool / f"{next(names)}.eml"
                await loop.run_in_executor(disk, write_durably, path, raw)
                queue.put_nowait((path, str(envelope.mail_from), list(envelope.rcpt_tos), raw))
                return "250 OK"

        async def relay() -> None:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink_port, timeout=60)
            await client.connect()
            while True:
                path, mail_from, rcpt_tos, raw = await queue.get()
                await client.sendmail(mail_from, rcpt_tos, raw)
                path.unlink()

        handler = Handler()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="bare-relay", decode_data=False,
                         data_size_limit=None), "127.0.0.1", port)
        workers = [asyncio.create_task(relay()) for _ in range(connections)]
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        server.close()
        for worker in workers:
            worker.cancel()

    asyncio.run(main())


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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Sink:
    """The sink process, and when each token arrived there."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, __file__, "--sink", str(self.port)],
                                        stdout=subprocess.PIPE)
        wait_for_port(self.port, self.process, "the sink")
        self.arrived: dict[str, float] = {}
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            token, _, when = line.decode().partition(" ")
            with self.changed:
                self.arrived[token] = float(when)
                self.changed.notify_all()

    def wait(self, tokens: Sequence[str], timeout: float = 600) -> float:
        """When the last of ``tokens`` arrived."""
        with self.changed:
            if not self.changed.wait_for(lambda: all(t in self.arrived for t in tokens),
                                         timeout):
                missing = sum(t not in self.arrived for t in tokens)
                raise RuntimeError(f"{missing} of {len(tokens)} messages did not arrive")
            return max(self.arrived[t] for t in tokens)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def store_config(backend: str, dsn: str | None) -> str:
    """siegel's ``[store]`` table for the leg under test."""
    if backend == "sqlite":
        return 'path = "siegel.db"\nkey_file = "store.key"\n'
    raise SystemExit(f"--store {backend}: not available in this version of siegel (the "
                     "PostgreSQL store adds it here, with --dsn)")


def siegel_leg(folder: Path, sink_port: int, backend: str,
               dsn: str | None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    (folder / "siegel.toml").write_text(f"""
[[listeners]]
host = "127.0.0.1"
port = {port}

[store]
{store_config(backend, dsn)}
[portal]
port = {free_port()}

[settings.relay]
host = "127.0.0.1"
port = {sink_port}
tls = "none"

[tenants.amt]
name = "Amt"
domains = ["{DOMAIN}"]
plugin_set = "baseline"
""", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "siegel", "init", str(folder / "init")], check=True,
                   stdout=subprocess.DEVNULL)
    (folder / "init" / "keys" / "store.key").rename(folder / "store.key")
    serve = subprocess.Popen([sys.executable, "-m", "siegel", "serve", "--config",
                              str(folder / "siegel.toml")], stdout=subprocess.DEVNULL)
    wait_for_port(port, serve, "siegel serve")
    return serve, port


def bare_leg(folder: Path, sink_port: int, connections: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    spool = folder / "spool"
    spool.mkdir()
    relay = subprocess.Popen([sys.executable, __file__, "--bare-relay", str(port),
                              str(sink_port), str(spool), str(connections)])
    wait_for_port(port, relay, "the bare relay")
    return relay, port


# -- the client ---------------------------------------------------------------------------------


async def send_all(port: int, tokens: Sequence[str], connections: int) -> None:
    async def one_connection(share: Sequence[str]) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120) as client:
            for token in share:
                await client.sendmail(SENDER, [COLLEAGUE], message(token))

    await asyncio.gather(*(one_connection(tokens[i::connections]) for i in range(connections)))


async def latencies(port: int, sink: Sink, prefix: str,
                    count: int) -> tuple[list[float], list[float]]:
    """Per message: seconds to the 250, seconds until it is at the sink."""
    accepted, delivered = [], []
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120) as client:
        for number in range(count):
            token = f"{prefix}l{number}"
            raw = message(token)
            start = time.monotonic()
            await client.sendmail(SENDER, [COLLEAGUE], raw)
            accepted.append(time.monotonic() - start)
            arrived = await asyncio.to_thread(sink.wait, [token], 60)
            delivered.append(arrived - start)
    return accepted, delivered


def measure(leg: str, args: argparse.Namespace,
            round_number: int) -> tuple[float, float, list[float], list[float]]:
    """Messages per second, CPU seconds per message, latencies to 250 and to the sink."""
    with tempfile.TemporaryDirectory(dir=args.folder) as name:
        folder = Path(name)
        sink = Sink()
        server, port = (siegel_leg(folder, sink.port, args.store, args.dsn) if leg == "siegel"
                        else bare_leg(folder, sink.port, args.connections))
        try:
            prefix = f"{leg}{round_number}"
            warm = [f"{prefix}w{i}" for i in range(args.connections * 4)]
            asyncio.run(send_all(port, warm, args.connections))
            sink.wait(warm)
            tokens = [f"{prefix}t{i}" for i in range(args.messages)]
            cpu = cpu_seconds(server.pid)
            start = time.monotonic()
            asyncio.run(send_all(port, tokens, args.connections))
            end = sink.wait(tokens)
            used = cpu_seconds(server.pid) - cpu
            accepted, delivered = asyncio.run(latencies(port, sink, prefix,
                                                        args.latency_messages))
            return args.messages / (end - start), used / args.messages, accepted, delivered
        finally:
            server.terminate()
            server.wait(timeout=60)
            sink.stop()


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ms(value: float) -> str:
    return f"{value * 1000:6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-messages", type=int, default=200)
    parser.add_argument("--store", choices=sorted(TARGETS), default="sqlite")
    parser.add_argument("--dsn", help="the PostgreSQL store's DSN (with --store postgresql)")
    parser.add_argument("--folder", type=Path, default=None,
                        help="where both legs write (default: the system's temporary folder); "
                             "put it on the disk you mean to measure")
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare-relay", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(args.sink)
        return
    if args.bare_relay:
        port, sink_port, spool, connections = args.bare_relay
        run_bare_relay(int(port), int(sink_port), Path(spool), int(connections))
        return
    print(f"plain internal mail, {len(message('x')) / 1024:.1f} KB, {args.messages} messages "
          f"on {args.connections} connections, {args.rounds} round(s); siegel's store: "
          f"{args.store}")
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    samples: dict[str, tuple[list[float], list[float]]] = {"bare": ([], []), "siegel": ([], [])}
    for number in range(1, args.rounds + 1):
        rates: dict[str, tuple[float, float]] = {}
        # Alternating which leg goes first spreads the machine's other load over both.
        for leg in ("bare", "siegel") if number % 2 else ("siegel", "bare"):
            rate, cpu, accepted, delivered = measure(leg, args, number)
            rates[leg] = (rate, cpu)
            samples[leg][0].extend(accepted)
            samples[leg][1].extend(delivered)
        ratios.append(rates["siegel"][0] / rates["bare"][0])
        cpu_ratios.append(rates["siegel"][1] / rates["bare"][1])
        print(f"round {number}: bare relay {rates['bare'][0]:6.1f} messages/s "
              f"({rates['bare'][1] * 1000:.2f} ms CPU each), siegel {rates['siegel'][0]:6.1f} "
              f"messages/s ({rates['siegel'][1] * 1000:.2f} ms CPU each): ratio "
              f"{ratios[-1]:.2f}")
    target = TARGETS[args.store]
    median = statistics.median(ratios)
    print(f"throughput siegel/bare, median of {args.rounds}: {median:.2f} (target >= {target}; "
          f"rounds {min(ratios):.2f} to {max(ratios):.2f}) -> "
          f"{'met' if median >= target else 'NOT met'}; CPU per message siegel/bare "
          f"{statistics.median(cpu_ratios):.1f}x")
    for label, index in (("to the 250", 0), ("to the sink", 1)):
        bare, gate = samples["bare"][index], samples["siegel"][index]
        for name, share in (("median", 0.5), ("p99", 0.99)):
            b, s = percentile(bare, share), percentile(gate, share)
            print(f"latency {label:12} {name:6}: bare {ms(b)}, siegel {ms(s)}, "
                  f"added {ms(s - b)}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
