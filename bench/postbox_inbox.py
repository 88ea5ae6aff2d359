"""Postbox inbox: opening the inbox of an account that holds 10 000 messages, with the store holding
10^4 or 10^6 postbox messages in all (issue 10: within 2x, median under 50 ms).

Run by hand (not in CI):

    python bench/postbox_inbox.py [--total 10000 1000000] [--account 10000] [--runs 300]

For each total, a fresh SQLite store is filled: one account with ``--account`` messages, the rest
spread over other accounts of the same tenant (1 000 messages each). "Opening the inbox" is what
the inbox page reads: :meth:`Mailbox.page` (the newest 20 summaries, decoded) and the unread count
(every message unread, the worst case). Prints the median and the 95th percentile per total,
and the ratio of the medians.

Building 10^6 messages through :meth:`Mailbox.deliver` would take hours (it parses each message
and writes each record in a transaction of its own). The shortcut: every message gets exactly the
records ``deliver`` writes (metadata with its own key, unread mark, the body sealed with that key),
each sealed by the store's own cipher exactly as ``state_put`` seals it, but inserted with
``executemany`` in transactions of 20 000 rows. A sample of them is read back through
:class:`Mailbox` (body included) before measuring, so the records are real ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from siegel import Address, IdentityLevel, load_config
from siegel.clock import FrozenClock
from siegel.crypto import ContentCipher, create_key_file
from siegel.manager import PluginRegistry
from siegel.plugins.postbox import mailbox as mailbox_module
from siegel.plugins.postbox import records
from siegel.plugins.postbox.mailbox import Mailbox, MessageSummary, Threading
from siegel.runtime import Runtime
from siegel.sqlite_store import SQLiteStore, _ts

TENANT = "test"
OWNER = "buerger@example.net"
PER_OTHER_ACCOUNT = 1000
BATCH = 20_000
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CONFIG = """
[tenants.test]
name = "Jobcenter"
domains = ["behoerde.example"]
plugin_set = "postbox"
[portal]
public_base_url = "https://post.behoerde.example"
"""


def _rows(cipher: ContentCipher, address: Address, number: int, at: datetime) -> list[tuple]:
    """The three records ``Mailbox.deliver`` writes for one message, sealed as the store seals."""
    prefix = records.account_prefix(TENANT, address)
    message_id = records.new_id(at, f"{prefix}{number}")
    key = records.new_key()
    summary = MessageSummary(
        id=message_id, folder="inbox", subject=f"Bescheid Nr. {number}",
        sender="Jobcenter <sachbearbeitung@behoerde.example>", received_at=at,
        level=IdentityLevel.MAILBOX, size=2400, attachments=(),
        threading=Threading(message_id=f"<{number}@behoerde.example>",
                            reply_to="sachbearbeitung@behoerde.example"),
        expires_at=at + timedelta(days=365), source=f"source-{number}")
    body_key = f"{prefix}{message_id}/body"
    body = records.seal(key, body_key, json.dumps(
        {"text": "Sehr geehrte Damen und Herren,\n" * 40, "html": None}).encode())
    plain = [
        (records.MESSAGES, f"{prefix}inbox/{message_id}", mailbox_module._encode(
            mailbox_module._Record(summary, key, {"envelope_sender": "sachbearbeitung@behoerde.example"}))),
        (records.UNREAD, f"{prefix}{message_id}", b""),
        (records.CONTENT, body_key, body),
    ]
    stamp = _ts(at)
    rows = []
    for namespace, record_key, value in plain:
        sealed = cipher.seal(f"state:{namespace}:{record_key}", value)
        rows.append((namespace, record_key, sealed.key_id, sealed.wrapped_key, sealed.ciphertext,
                     1, stamp, None))
    return rows


def _address(number: int, account: int) -> Address:
    if number < account:
        return Address.parse(OWNER)
    return Address.parse(f"b{(number - account) // PER_OTHER_ACCOUNT}@example.net")


def _sealed_batch(key_file: str, first: int, last: int, account: int) -> list[tuple]:
    """Rows of messages ``first`` to ``last`` (a worker process seals them)."""
    cipher = ContentCipher.from_key_file(Path(key_file))
    rows: list[tuple] = []
    for number in range(first, last):
        rows += _rows(cipher, _address(number, account), number,
                      START + timedelta(seconds=number))
    return rows


async def fill(store: SQLiteStore, key_file: Path, total: int, account: int) -> float:
    """Seal in worker processes (one per CPU), insert in the store's thread meanwhile."""
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    per_batch = BATCH // 3

    def insert(batch: list[tuple]):  # type: ignore[no-untyped-def]
        def work(db) -> None:  # type: ignore[no-untyped-def]
            store._transaction(db, lambda: db.executemany(
                "INSERT INTO plugin_state (namespace, key, key_id, wrapped_key, value, version,"
                " updated_at, expires_at) VALUES (?,?,?,?,?,?,?,?)", batch))
        return store._run(work)

    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = [loop.run_in_executor(pool, _sealed_batch, str(key_file), first,
                                        min(first + per_batch, total), account)
                   for first in range(0, total, per_batch)]
        for future in futures:
            await insert(await future)
    return time.perf_counter() - started


async def measure(total: int, account: int, runs: int) -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        create_key_file(base / "store.key")
        cipher = ContentCipher.from_key_file(base / "store.key")
        (base / "siegel.toml").write_text(CONFIG)
        registry = PluginRegistry.load()
        config = load_config(base / "siegel.toml", registry)
        store = SQLiteStore(base / "siegel.db", cipher)
        async with store:
            runtime = Runtime(config, registry, store,
                              clock=FrozenClock(START + timedelta(days=30)))
            build = await fill(store, base / "store.key", total, account)
            box = Mailbox(runtime, config.tenants[TENANT], Address.parse(OWNER))
            page = await box.page()
            assert len(page.messages) == 20 and page.unread == account, page.unread
            assert page.messages[0].subject == f"Bescheid Nr. {account - 1}"
            assert (await box.get(page.messages[0].id)).text.startswith("Sehr geehrte")
            for _ in range(20):  # warm the page cache
                await box.page()
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                await box.page()
                times.append((time.perf_counter() - started) * 1000)
        return times, build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--account", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    medians = []
    for total in args.total:
        times, build = asyncio.run(measure(total, args.account, args.runs))
        median = statistics.median(times)
        p95 = statistics.quantiles(times, n=20)[-1]
        medians.append(median)
        print(f"store {total:>9,} messages (built in {build:6.1f} s): inbox page + unread count "
              f"median {median:6.2f} ms, p95 {p95:6.2f} ms", flush=True)
    if len(medians) > 1:
        print(f"ratio largest/smallest store: {medians[-1] / medians[0]:.2f} "
              f"(target <= 2.0, median < 50 ms)")
    sys.exit(0)


if __name__ == "__main__":
    main()
