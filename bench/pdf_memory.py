"""Peak memory of the gateway for one password-PDF message, small and with a large attachment.

Run by hand (not in CI; memory numbers depend on the machine and the allocator):

    python bench/pdf_memory.py [--attachment-mb 25]

Measured twice. First ``siegel serve`` itself (SMTP listener and portal included), in a fresh
process per case, sent the message over SMTP by this process: its ``VmHWM`` once the carrier mail
has arrived. Then the pipeline alone: each case runs in a fresh process that opens the store,
pushes exactly one message through the whole gateway (accept with encryption at rest, classify,
render + encrypt, carrier mail, SMTP delivery to ``siegel sink`` running as its own process,
notices) and reports its peak RSS (``VmHWM``; ``ru_maxrss`` would include the parent's peak at
the time it started the child). The message is written to a file by this parent process first,
so generating it is not counted; the gateway process reads it and lets it go once accepted, as
the SMTP listener would.

With ``--stages`` it instead runs the large message once under tracemalloc and prints, for each
stage of the path, the traced memory when the stage starts, its peak while it runs and what is
left when it ends (Python allocations only; SQLite's and the allocator's own memory are not in it).

Targets (issue 3): a 25 MB attachment raises the peak by at most 150 MB over the small message.
A message that large is rendered on the gateway's own thread, not in a render worker (see
``render_in_gateway_above_mb``), so the small message is rendered there too
(``render_processes = 0``): otherwise the difference would also hold the first load of the
rendering libraries and fonts into the gateway process (about 24 MB), which a gateway pays once,
with its first large message.
The absolute peak is printed too. Then the delivered PDF is checked, so that a memory trick
cannot silently break the output: qpdf opens it with the password, reports AES-256 R6 for
strings, streams and files, and the embedded file (pdfdetach) equals the attachment byte for
byte.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import functools
import importlib
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import attrs

# The same relay process, configuration and SMTP client as the throughput bench (its folder).
from pdf_throughput import SENDER as TENANT_SENDER
from pdf_throughput import Relay, account_record, configure, register_recipient, send, wait_for_port

from siegel.accounts import NAMESPACE as ACCOUNTS
from siegel.clock import SystemClock
from siegel.config import config_from_mapping
from siegel.crypto import ContentCipher, create_key_file
from siegel.malloc import pin_mmap_threshold
from siegel.manager import PluginRegistry
from siegel.runtime import Runtime
from siegel.sqlite_store import SQLiteStore
from siegel.testing import make_message

CITIZEN = "buerger@example.net"
SENDER = "sachbearbeitung@behoerde.example"
PASSWORD = "Pferd Batterie Heftklammer"
ATTACHMENT_NAME = "Anlage.bin"
BODY = ("Sehr geehrte Frau Müller,\n\nzu Ihrer Kundennummer 123A456789 teilen wir mit: "
        + "Die Unterlagen sind vollständig eingegangen. " * 60 + "\n\nMit freundlichen Grüßen\n")
MAX_GROWTH_MB = 150.0


@attrs.frozen(kw_only=True)
class Case:
    """One message for one fresh gateway process, and where its outputs go."""

    attachment_mb: float
    folder: Path
    #: ``[settings.password_pdf] render_processes``; None: the default.
    render_processes: int | None = None

    @property
    def message_file(self) -> Path:
        return self.folder / "message.eml"

    @property
    def attachment_file(self) -> Path:
        return self.folder / "attachment.bin"

    @property
    def relay_folder(self) -> Path:
        return self.folder / "relay"

    def write_message(self) -> None:
        attachment = os.urandom(int(self.attachment_mb * 1024 * 1024))
        attachments = ([(ATTACHMENT_NAME, "application/octet-stream", attachment)]
                       if attachment else [])
        self.attachment_file.write_bytes(attachment)
        self.message_file.write_bytes(make_message(
            to=CITIZEN, subject="Ihr Bescheid", body=BODY, attachments=attachments,
            headers={"X-Siegel-Encrypt": "yes"}))


@attrs.frozen(kw_only=True)
class Measurement:
    attachment_mb: float
    message_mb: float
    peak_rss_mb: float
    seconds: float


async def push_one_message(message_file: Path, folder: Path, relay_port: int,
                           render_processes: int | None) -> None:
    """The gateway of ``bench/pdf_throughput.py``: district plugin set, recipient registered.
    The message is read here and let go once accepted, as the SMTP listener does."""
    registry = PluginRegistry.load()
    data = {"tenants": {"landkreis": {"name": "Landkreis", "domains": ["behoerde.example"],
                                      "plugin_set": "district"}},
            "settings": {"relay": {"host": "127.0.0.1", "port": relay_port, "tls": "none"}},
            "delivery": {"concurrency": 8}}
    if render_processes is not None:
        data["settings"]["password_pdf"] = {"render_processes": render_processes}
    config = config_from_mapping(data, registry, source="bench", base_dir=folder)
    create_key_file(folder / "store.key")
    store = SQLiteStore(folder / "siegel.db", ContentCipher.from_key_file(folder / "store.key"))
    runtime = Runtime(config, registry, store, clock=SystemClock())
    await store.open()
    try:
        await runtime.state(ACCOUNTS).put(f"landkreis/{CITIZEN}", account_record())
        raw = await asyncio.to_thread(message_file.read_bytes)
        await runtime.submit(raw, SENDER, [CITIZEN])
        del raw
        await runtime.run_until_idle()
    finally:
        await store.close()


def run_child(case: Case) -> None:
    """In the fresh process: one message through the gateway; print a Measurement as JSON.
    Like ``siegel serve`` (and as its docs advise an embedding program), it pins glibc's
    memory-map threshold first."""
    pin_mmap_threshold()
    message_mb = case.message_file.stat().st_size / 2**20
    relay = Relay(case.folder)
    try:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as gateway_folder:
            asyncio.run(push_one_message(case.message_file, Path(gateway_folder), relay.port,
                                         case.render_processes))
        seconds = time.perf_counter() - started
    finally:
        relay.stop()
    peak_mb = peak_rss_mb(os.getpid())
    print(json.dumps(attrs.asdict(Measurement(attachment_mb=case.attachment_mb,
                                              message_mb=message_mb, peak_rss_mb=peak_mb,
                                              seconds=seconds))))


def measure(case: Case) -> Measurement:
    case.write_message()
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(case.folder), "--attachment-mb",
         str(case.attachment_mb),
         *([] if case.render_processes is None else
           ["--render-processes", str(case.render_processes)])],
        capture_output=True, text=True, check=True)
    return Measurement(**json.loads(result.stdout.splitlines()[-1]))


def peak_rss_mb(pid: int) -> float:
    """The high-water mark of a running process's resident memory (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def measure_serve(case: Case) -> Measurement:
    """``siegel serve`` as it runs (SMTP listener and portal included) in a fresh process, sent the
    message over SMTP by this process; its peak RSS once the carrier mail has arrived."""
    case.write_message()
    raw = case.message_file.read_bytes()
    relay = Relay(case.folder)
    config, smtp_port = configure(case.folder, relay.port, case.render_processes)
    asyncio.run(register_recipient(case.folder))
    serve = subprocess.Popen([sys.executable, "-m", "siegel", "serve", "--config", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(smtp_port, serve, "siegel serve")
        started = time.perf_counter()
        asyncio.run(send(smtp_port, raw, 1, 1, sender=TENANT_SENDER, recipient=CITIZEN))
        relay.wait_for_carriers(1)
        seconds = time.perf_counter() - started
        time.sleep(0.5)  # the notice after the carrier
        peak = peak_rss_mb(serve.pid)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        relay.stop()
    return Measurement(attachment_mb=case.attachment_mb, message_mb=len(raw) / 2**20,
                       peak_rss_mb=peak, seconds=seconds)


class OutputBroken(Exception):
    """The delivered carrier does not hold the attachment, correctly encrypted."""


def _delivered_pdf(case: Case) -> bytes:
    for path in sorted(case.relay_folder.glob("*.eml")):
        carrier = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if isinstance(carrier, EmailMessage) and carrier.get("X-Siegel-Protection"):
            for part in carrier.iter_attachments():
                if part.get_content_type() == "application/pdf":
                    payload = part.get_payload(decode=True)
                    assert isinstance(payload, bytes)
                    return payload
    raise OutputBroken(f"no carrier with a PDF in {case.relay_folder}")


def check_output(case: Case) -> None:
    """qpdf and pdfdetach, independent of pyHanko, must read what the gateway delivered."""
    pdf_file = case.folder / "delivered.pdf"
    pdf_file.write_bytes(_delivered_pdf(case))
    password = f"--password={PASSWORD}"
    shown = subprocess.run(["qpdf", password, "--show-encryption", str(pdf_file)],
                           capture_output=True, text=True, check=False).stdout
    for expected in ("R = 6", "stream encryption method: AESv3",
                     "string encryption method: AESv3", "file encryption method: AESv3"):
        if expected not in shown:
            raise OutputBroken(f"qpdf --show-encryption lacks {expected!r}:\n{shown}")
    checked = subprocess.run(["qpdf", password, "--check", str(pdf_file)],
                             capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        raise OutputBroken(f"qpdf --check failed:\n{checked.stdout}{checked.stderr}")
    expected_attachment = case.attachment_file.read_bytes()
    if not expected_attachment:
        return
    detached = case.folder / "detached"
    detached.mkdir()
    subprocess.run(["pdfdetach", "-upw", PASSWORD, "-saveall", "-o", str(detached),
                    str(pdf_file)], check=True, capture_output=True)
    if (detached / ATTACHMENT_NAME).read_bytes() != expected_attachment:
        raise OutputBroken("the embedded file differs from the attachment")


# (module, attribute path, label): the stages of one password-PDF message, in order. Where a
# function is imported by name into another module, the importing module's name is patched.
STAGES = [
    ("siegel.sqlite_store", "SQLiteStore.accept", "store: accept (seal, write)"),
    ("siegel.sqlite_store", "SQLiteStore.load", "store: load (read, open)"),
    ("siegel.pipeline", "Pipeline.process", "pipeline: one copy"),
    ("siegel.model", "parse_email", "  parse (classify)"),
    ("siegel.pipeline", "Pipeline.classify", "  classify"),
    ("siegel.pipeline", "Pipeline.rewrite", "  rewrite (RawMessage)"),
    ("siegel.mime", "RawMessage.parsed", "  parse (rewritten headers)"),
    ("siegel.plugins.password_pdf.workflow", "Workflow.protect", "  password_pdf: protect"),
    ("siegel.plugins.password_pdf.render_pool", "render_encrypted", "    render_encrypted"),
    ("siegel.plugins.password_pdf.render", "extract", "      decode attachments"),
    ("siegel.plugins.password_pdf.render", "typeset", "      typeset (reportlab)"),
    ("siegel.plugins.password_pdf.render", "serialise", "      encrypt and write PDF"),
    ("siegel.plugins.password_pdf.workflow", "Workflow._carrier", "    carrier mail"),
    ("siegel.plugins.smtp_relay", "deliver", "  relay: send"),
    ("siegel.sqlite_store", "SQLiteStore.finish", "store: finish"),
]


class StageTracer:
    """Wraps the stage functions; records traced memory at entry, peak, and at exit."""

    def __init__(self) -> None:
        self.open: list[list[Any]] = []  # [label, at entry, peak so far]
        self.rows: list[tuple[str, float, float, float]] = []

    def _settle(self) -> int:
        current, peak = tracemalloc.get_traced_memory()
        for frame in self.open:
            frame[2] = max(frame[2], peak)
        tracemalloc.reset_peak()
        return current

    def enter(self, label: str) -> int:
        current = self._settle()
        self.open.append([label, current, current])
        return len(self.rows)

    def leave(self, row: int) -> None:
        current = self._settle()
        label, entry, peak = self.open.pop()
        self.rows.insert(row, (label, entry / 2**20, peak / 2**20, current / 2**20))

    def wrap(self, module: str, path: str, label: str) -> None:
        owner: Any = importlib.import_module(module)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        function: Callable[..., Any] = getattr(owner, name)
        if inspect.iscoroutinefunction(function):
            @functools.wraps(function)
            async def traced_async(*args: Any, **kwargs: Any) -> Any:
                row = self.enter(label)
                try:
                    return await function(*args, **kwargs)
                finally:
                    self.leave(row)
            setattr(owner, name, traced_async)
        else:
            @functools.wraps(function)
            def traced(*args: Any, **kwargs: Any) -> Any:
                row = self.enter(label)
                try:
                    return function(*args, **kwargs)
                finally:
                    self.leave(row)
            setattr(owner, name, traced)


def run_stages(case: Case) -> None:
    case.write_message()
    tracer = StageTracer()
    for module, path, label in STAGES:
        tracer.wrap(module, path, label)
    relay = Relay(case.folder)
    tracemalloc.start()
    try:
        with tempfile.TemporaryDirectory() as gateway_folder:
            whole = tracer.enter("whole run")
            asyncio.run(push_one_message(case.message_file, Path(gateway_folder), relay.port,
                                         case.render_processes))
            tracer.leave(whole)
    finally:
        relay.stop()
    print(f"traced MB, message of {case.message_file.stat().st_size / 2**20:.1f} MB")
    print(f"{'stage':42s} {'entry':>8s} {'peak':>8s} {'(+)':>8s} {'exit':>8s}")
    for label, entry, peak, exit_ in tracer.rows[1:] + tracer.rows[:1]:
        print(f"{label:42s} {entry:8.1f} {peak:8.1f} {peak - entry:+8.1f} {exit_:8.1f}")
    print(f"peak RSS {peak_rss_mb(os.getpid()):.1f} MB "
          "(with tracemalloc's own overhead)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attachment-mb", type=float, default=25.0)
    parser.add_argument("--stages", action="store_true",
                        help="trace the large message stage by stage instead")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--render-processes", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        run_child(Case(attachment_mb=args.attachment_mb, folder=args.child,
                       render_processes=args.render_processes))
        return
    if args.stages:
        with tempfile.TemporaryDirectory() as folder:
            run_stages(Case(attachment_mb=args.attachment_mb, folder=Path(folder)))
        return
    for title, run in (("siegel serve, fed over SMTP", measure_serve),
                       ("the pipeline alone (Runtime.submit, no listener or portal)", measure)):
        print(title)
        with tempfile.TemporaryDirectory() as small_folder, \
                tempfile.TemporaryDirectory() as large_folder:
            # Both on the gateway's own thread: the large message is rendered there anyway (it
            # is over render_in_gateway_above_mb), so the difference is the attachment's cost.
            small = Case(attachment_mb=0, folder=Path(small_folder), render_processes=0)
            large = Case(attachment_mb=args.attachment_mb, folder=Path(large_folder))
            results = [run(small), run(large)]
            for case in (small, large):
                check_output(case)
        for result in results:
            print(f"  attachment {result.attachment_mb:5g} MB (message {result.message_mb:6.1f} "
                  f"MB): peak RSS {result.peak_rss_mb:6.1f} MB  ({result.seconds:.1f} s)")
        growth = results[1].peak_rss_mb - results[0].peak_rss_mb
        verdict = "met" if growth <= MAX_GROWTH_MB else "NOT met"
        print(f"  growth for the {args.attachment_mb:g} MB attachment: {growth:.1f} MB "
              f"(target <= {MAX_GROWTH_MB:g} MB: {verdict})")
        print("  output: qpdf opens both PDFs (R6, AESv3 for strings, streams and files; "
              "--check ok), the embedded attachment is byte-identical")


if __name__ == "__main__":
    main()
