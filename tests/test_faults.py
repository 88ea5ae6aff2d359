"""Faults an operator meets: a full disk, a store key file that is missing or wrong.

A full disk: the store lives on a small filesystem of the test's own (a size-limited tmpfs,
mounted as root; without root the write error is injected where SQLite reports it). The listener
answers 451 (never 250) while nothing can be written and accepts again as soon as there is room,
without a restart.

The key file: ``siegel serve`` (the real command, in a subprocess) refuses to start with the
reason on stderr and exit code 2, opens no port, and writes nothing: no database without a key,
and nothing sealed with a wrong key in a store sealed with the right one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from siegel import RecipientState, StoreError
from siegel.addresses import Address
from siegel.clock import SystemClock, new_message_id
from siegel.crypto import ContentCipher, create_key_file
from siegel.gateway import SmtpGateway
from siegel.model import Envelope, Message
from siegel.sink import free_port
from siegel.sqlite_store import SQLiteStore
from siegel.store_key import StoreKeyMismatch, verify_store_key
from siegel.testing import make_message

SENDER = "sachbearbeitung@behoerde.example"
COLLEAGUE = "kollegin@behoerde.example"


# -- a full disk ----------------------------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(path: Path, megabytes: int) -> Iterator[None]:
    """A tmpfs of ``megabytes`` mounted on ``path`` (root only)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs",
                    str(path)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(path: Path) -> Path:
    """Write a file into ``path`` until its filesystem is full."""
    filler = path / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(chunk)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        with contextlib.suppress(OSError):  # the last buffered bytes have no room either
            handle.close()
    return filler


class DiskFull:
    """Makes ``var/`` full (a real small filesystem) and makes room again."""

    def __init__(self, var: Path) -> None:
        self.var = var
        self.filler: Path | None = None
        self.injected = False

    def make_full(self) -> None:
        if os.geteuid() == 0:
            self.filler = fill(self.var)
        else:
            self.injected = True

    def make_room(self) -> None:
        if self.filler is not None:
            self.filler.unlink()
            self.filler = None
        self.injected = False


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DiskFull]:
    var = tmp_path / "var"
    if os.geteuid() != 0:
        # Without root there is no filesystem of our own: SQLite's error for a full disk is
        # raised where the store writes a message.
        full = DiskFull(var)
        accept = SQLiteStore.accept

        async def failing_accept(store: SQLiteStore, *args: Any, **kwargs: Any) -> None:
            if full.injected:
                raise StoreError(f"{store.path}: database or disk is full")
            await accept(store, *args, **kwargs)

        monkeypatch.setattr(SQLiteStore, "accept", failing_accept)
        yield full
        return
    with small_filesystem(var, 8):
        yield DiskFull(var)


async def send(port: int, raw: bytes) -> tuple[int, str]:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=20, start_tls=False)
    await client.connect()
    try:
        await client.ehlo()
        await client.mail(SENDER)
        await client.rcpt(COLLEAGUE)
        response = await client.data(raw)
        return response.code, response.message
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    finally:
        with contextlib.suppress(aiosmtplib.SMTPException):
            await client.quit()


@pytest.mark.slow
async def test_a_full_disk_gives_451_never_250_and_heals_without_a_restart(
        disk: DiskFull, siegel_harness) -> None:
    body = "Guten Tag,\n\n" + "Zeile mit etwas Text für eine größere Nachricht.\n" * 20000
    async with siegel_harness(config={"listeners": [{"host": "127.0.0.1", "port": 0}]}) as h:
        gateway = SmtpGateway(h.runtime)
        [(_host, port)] = await gateway.start()
        try:
            code, _ = await send(port, make_message(to=COLLEAGUE, subject="before"))
            assert code == 250
            disk.make_full()
            refused = []
            for attempt in range(3):
                code, text = await send(port, make_message(to=COLLEAGUE, body=body,
                                                           subject=f"full {attempt}"))
                assert code in (451, 452), (code, text)
                refused.append(text)
            assert all("not stored" in text for text in refused)
            disk.make_room()
            code, text = await send(port, make_message(to=COLLEAGUE, body=body, subject="after"))
            assert code == 250, text
            await h.process()
        finally:
            await gateway.stop()
        subjects = [str(m.parsed["Subject"]) for m in h.sink.to(COLLEAGUE)]
        assert sorted(subjects) == ["after", "before"]
        listed = await h.store.list()
        assert {r.state for r in listed} == {RecipientState.DELIVERED} and len(listed) == 2


# -- the store key --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``siegel init`` folder (without its key) for the module; tests copy it."""
    workdir = tmp_path_factory.mktemp("init") / "gateway"
    subprocess.run([sys.executable, "-m", "siegel", "init", str(workdir)], check=True,
                   capture_output=True, timeout=60)
    (workdir / "keys" / "store.key").unlink()
    return workdir


@pytest.fixture
def workdir(initialised: Path, tmp_path: Path) -> Path:
    """A gateway folder on free ports with a key of its own."""
    workdir = tmp_path / "gateway"
    shutil.copytree(initialised, workdir)
    config = workdir / "siegel.toml"
    text = config.read_text(encoding="utf-8")
    for old in ("port = 10025", "port = 8025"):
        assert text.count(old) == 1
        text = text.replace(old, f"port = {free_port()}")
    config.write_text(text, encoding="utf-8")
    create_key_file(workdir / "keys" / "store.key")
    return workdir


def serve(workdir: Path) -> subprocess.CompletedProcess[str]:
    """``siegel serve``, which must give up by itself (a gateway that starts fails the test)."""
    try:
        return subprocess.run([sys.executable, "-m", "siegel", "serve", "--config",
                               str(workdir / "siegel.toml")], capture_output=True, text=True,
                              timeout=30, cwd=workdir)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"siegel serve started despite the key: {exc.stdout!r}") from None


def listening(workdir: Path) -> bool:
    port = next(int(line.split("=")[1]) for line in
                (workdir / "siegel.toml").read_text(encoding="utf-8").splitlines()
                if line.startswith("port = "))
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def key_ids(database: Path) -> set[str]:
    db = sqlite3.connect(database)
    try:
        return {row[0] for row in db.execute(
            "SELECT key_id FROM messages UNION SELECT key_id FROM plugin_state")}
    finally:
        db.close()


async def store_one_message(workdir: Path) -> str:
    store = SQLiteStore(workdir / "var" / "siegel.db",
                        ContentCipher.from_key_file(workdir / "keys" / "store.key"))
    async with store:
        message = Message(id=new_message_id(), tenant="demo",
                          envelope=Envelope(Address.parse("a@demo.example"),
                                            (Address.parse("b@demo.example"),)),
                          raw=make_message(sender="a@demo.example", to="b@demo.example"),
                          received_at=SystemClock().now())
        await store.accept(message)
    return ContentCipher.from_key_file(workdir / "keys" / "store.key").key_id


@pytest.mark.slow
def test_a_missing_key_file_stops_the_gateway_before_anything_is_written(workdir: Path) -> None:
    (workdir / "keys" / "store.key").unlink()
    result = serve(workdir)
    assert result.returncode == 2
    assert "store key file not found" in result.stderr and "store.key" in result.stderr
    assert not (workdir / "var" / "siegel.db").exists()
    assert not listening(workdir)


@pytest.mark.slow
@pytest.mark.parametrize("older_store", [False, True], ids=["check-record", "older-store"])
async def test_a_wrong_key_file_stops_the_gateway_and_seals_nothing(
        workdir: Path, older_store: bool) -> None:
    """Another installation's key: on a store that has the check record, and on a store from
    before the record (its newest message is tried)."""
    right = await store_one_message(workdir)
    database = workdir / "var" / "siegel.db"
    if not older_store:
        async with SQLiteStore(database, ContentCipher.from_key_file(
                workdir / "keys" / "store.key")) as store:
            await verify_store_key(store, "keys/store.key")  # what the first start writes
    (workdir / "keys" / "store.key").unlink()
    create_key_file(workdir / "keys" / "store.key")
    result = serve(workdir)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "does not belong to this store" in result.stderr, result.stderr
    assert "store.key" in result.stderr
    assert not listening(workdir)
    assert key_ids(database) == {right}


async def test_the_right_key_passes_and_the_check_record_is_written_once(tmp_path: Path) -> None:
    key_file = tmp_path / "store.key"
    create_key_file(key_file)
    async with SQLiteStore(tmp_path / "siegel.db", ContentCipher.from_key_file(key_file)) as store:
        await verify_store_key(store, str(key_file))
        await verify_store_key(store, str(key_file))
    other = tmp_path / "other.key"
    create_key_file(other)
    async with SQLiteStore(tmp_path / "siegel.db", ContentCipher.from_key_file(other)) as store:
        with pytest.raises(StoreKeyMismatch, match=r"other\.key"):
            await verify_store_key(store, str(other))


async def test_two_gateways_starting_together_both_pass_the_key_check(tmp_path: Path) -> None:
    """The first start writes the check record; a second store connection that finds it written
    meanwhile (another instance on a shared database) checks that record instead of failing."""
    key_file = tmp_path / "store.key"
    create_key_file(key_file)
    cipher = ContentCipher.from_key_file(key_file)
    async with SQLiteStore(tmp_path / "siegel.db", cipher) as first, \
            SQLiteStore(tmp_path / "siegel.db", cipher) as second:
        await asyncio.gather(verify_store_key(first, str(key_file)),
                             verify_store_key(second, str(key_file)))
        assert (await second.state_get("siegel.store-key", "check")) is not None
