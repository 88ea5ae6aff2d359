"""Debian's real Postfix for tests, and siegel in a thread of the test process.

:class:`PostfixInstance` runs a private Postfix: its own ``config_directory``, ``queue_directory``
and ``data_directory`` in a temporary folder, its own ports, logging to a file of its own. The
system service and ``/etc/postfix`` are never used. Postfix's ``master`` must start as root
(that is the CI case); when it cannot run, the fixture fails with the reason (it does not skip).
``sh .ci/system-packages`` installs the package.

:class:`GatewayThread` runs siegel's real runtime and SMTP listener on an event loop of its own,
with a store that can be told to fail the next ``accept`` calls (the listener then answers 451,
as on any store error), to see Postfix retry.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from siegel.config import config_from_mapping
from siegel.crypto import ContentCipher, create_key_file
from siegel.gateway import SmtpGateway
from siegel.manager import PluginRegistry
from siegel.model import AuditEvent, Message
from siegel.runtime import Runtime
from siegel.sqlite_store import SQLiteStore
from siegel.store import StoreError

DOCS = Path(__file__).resolve().parent.parent / "docs" / "postfix.rst"

#: The services every Postfix needs, none chrooted (the queue is in a temporary folder).
MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_unavailable() -> str | None:
    """Why Postfix cannot run here, or None."""
    if shutil.which("postfix", path="/usr/sbin:/usr/bin") is None:
        return "Debian's postfix is not installed (sh .ci/system-packages installs it)"
    if os.geteuid() != 0:
        return "Postfix's master daemon must be started as root"
    return None


def doc_block(starts_with: str, language: str = "text") -> str:
    """The code block of docs/postfix.rst that starts with ``starts_with``: the tests run the
    set-ups as the page shows them."""
    text = DOCS.read_text(encoding="utf-8")
    pattern = rf"\.\. code-block:: {language}\n\n((?:   .*\n|\n)+)"
    for block in re.findall(pattern, text):
        code = "\n".join(line[3:] for line in block.rstrip("\n").splitlines()) + "\n"
        if code.startswith(starts_with):
            return code
    raise AssertionError(f"docs/postfix.rst has no {language} block starting with {starts_with!r}")


def wait_for(condition: Callable[[], object], timeout: float, what: str,
             log: Callable[[], str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            extra = f"\n--- Postfix log ---\n{log()}" if log else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{extra}")
        time.sleep(0.1)


class PostfixInstance:
    """A Postfix of its own; ``main`` and ``master`` are added to the base configuration."""

    def __init__(self, main: dict[str, str], master: str = "") -> None:
        self.root = Path(tempfile.mkdtemp(prefix="siegel-postfix-"))
        # Postfix's daemons run as the postfix user and open the log and data folder by path.
        self.root.chmod(0o755)
        self.config_dir = self.root / "etc"
        self.log_file = self.root / "maillog"
        for folder in ("etc", "spool", "data"):
            (self.root / folder).mkdir()
        shutil.chown(self.root / "data", "postfix")
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.root / "spool"),
            "data_directory": str(self.root / "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "postfix.test.invalid",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.root),
            # Retry deferred mail within seconds, not Postfix's minutes.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            **main,
        }
        (self.config_dir / "main.cf").write_text(
            "".join(f"{name} = {value}\n" for name, value in settings.items()), encoding="utf-8")
        (self.config_dir / "master.cf").write_text(MASTER_CF + master, encoding="utf-8")

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["postfix", "-c", str(self.config_dir), *args],
                              capture_output=True, text=True, timeout=60, check=False)

    def start(self) -> PostfixInstance:
        result = self._postfix("start")
        if result.returncode != 0:
            raise AssertionError(f"postfix start failed ({result.returncode}): "
                                 f"{result.stdout}{result.stderr}\n{self.log()}")
        wait_for(lambda: "daemon started" in self.log(), 20, "Postfix's master", self.log)
        return self

    def stop(self) -> None:
        self._postfix("stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def sendmail(self, raw: bytes, sender: str, *recipients: str) -> None:
        """Submit as a user does: Postfix's ``sendmail`` with this instance's configuration."""
        subprocess.run(["sendmail", "-C", str(self.config_dir), "-i", "-f", sender, "--",
                        *recipients], input=raw, check=True, timeout=30, capture_output=True)

    def queue_is_empty(self) -> bool:
        result = subprocess.run(["postqueue", "-c", str(self.config_dir), "-p"],
                                capture_output=True, text=True, timeout=30, check=True)
        return "Mail queue is empty" in result.stdout

    def log_lines(self, pattern: str) -> list[str]:
        return [line for line in self.log().splitlines() if re.search(pattern, line)]


class FaultyStore(SQLiteStore):
    """The SQLite store, failing the next ``fail_accepts`` calls of ``accept`` as a store that
    cannot write does."""

    fail_accepts = 0

    async def accept(self, message: Message, events: Sequence[AuditEvent] = ()) -> None:
        if self.fail_accepts > 0:
            self.fail_accepts -= 1
            raise StoreError("injected: the store cannot write right now")
        await super().accept(message, events)


class GatewayThread:
    """siegel (runtime, workers, SMTP listener) on its own event loop in a thread."""

    def __init__(self, data: dict[str, Any], base_dir: Path) -> None:
        self.data = data
        self.base_dir = base_dir
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="siegel", daemon=True)
        self.store: FaultyStore | None = None
        self.runtime: Runtime | None = None
        self.gateway: SmtpGateway | None = None

    def call(self, coroutine: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> GatewayThread:
        self.thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        registry = PluginRegistry.load()
        config = config_from_mapping(self.data, registry, source="<postfix test>",
                                     base_dir=self.base_dir)
        key_file = self.base_dir / "keys" / "store.key"
        create_key_file(key_file)
        self.store = FaultyStore(self.base_dir / "var" / "siegel.db",
                                 ContentCipher.from_key_file(key_file))
        self.runtime = Runtime(config, registry, self.store)
        await self.runtime.start()
        self.gateway = SmtpGateway(self.runtime)
        await self.gateway.start()

    def stop(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _stop(self) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
        if self.runtime is not None:
            await self.runtime.stop(grace_seconds=5)
