"""Held-queue and account operations at 10⁴, 10⁵ and 10⁶ stored messages, on both backends.

Run by hand (not in CI; it fills a million rows per backend):

    python bench/store_scaling.py [--sizes 10000,100000,1000000] [--backends sqlite,postgresql]

For each size a fresh store (an SQLite file, or a new schema on ``SIEGEL_TEST_PG``, by default
this machine's PostgreSQL) is filled in bulk: finished copies to distinct recipients, plus a fixed
working set that does not grow: 50 held copies of the tenant, 20 copies to one citizen, 200
recipient accounts. Then each operation runs 200 times through the store interface and its
median time is printed, with the ratio of the largest size to the smallest. Target (issue 11):
at most 2× from 10⁴ to 10⁶. tests/test_store_plans.py checks that the plans use indexes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from postgres import DSN, drop_schema, new_schema
from siegel.crypto import ContentCipher, create_key_file
from siegel.model import RecipientState
from siegel.pg_store import PostgreSQLStore
from siegel.sqlite_store import SQLiteStore
from siegel.store import MessageStore

CITIZEN = "buerger@example.net"
_FILL = """
INSERT INTO messages (id, tenant, origin, channel, mail_from, received_at, size, key_id)
  SELECT 'm' || g, 't', 'smtp', NULL, 's@t.example', {time}, 1000, 'k' FROM {series};
INSERT INTO recipients (message_id, position, address, state, updated_at, reasons, detail)
  SELECT 'm' || g, 0,
         CASE WHEN g % {step} = 0 AND g / {step} <= 20 THEN '{citizen}'
              ELSE 'r' || g || '@example.net' END,
         CASE WHEN g % {step} = 1 AND g / {step} < 50 THEN 'held' ELSE 'delivered' END,
         {time}, '[]', '' FROM {series};
"""


def fill_sql(backend: str, count: int) -> list[str]:
    if backend == "postgresql":
        series = f"generate_series(1, {count}) AS s(g)"
        stamp = "now() - g * interval '1 second'"
    else:
        series = (f"(WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM c"
                  f" WHERE g < {count}) SELECT g FROM c)")
        stamp = "strftime('%Y-%m-%dT%H:%M:%f', 'now', '-' || g || ' seconds') || '000Z'"
    text = _FILL.format(time=stamp, series=series, step=count // 60, citizen=CITIZEN)
    return [s for s in text.split(";") if s.strip()]


async def fill(store: MessageStore, backend: str, count: int) -> None:
    statements = fill_sql(backend, count)
    if isinstance(store, PostgreSQLStore):
        async with store._transaction() as cur:
            for statement in statements:
                await cur.execute(statement.encode())
            await cur.execute("ANALYZE")
    else:
        assert isinstance(store, SQLiteStore)

        # No ANALYZE: siegel never runs it on SQLite, so the planner keeps its defaults.
        def work(db: Any) -> None:
            for statement in statements:
                db.execute(statement)

        await store._run(lambda db: store._transaction(db, lambda: work(db)))
    for n in range(200):
        await store.state_put("accounts", f"t:buerger{n}@example.net", b'{"hash": "x"}')


async def median_ms(operation: Callable[[], Awaitable[object]], runs: int = 200) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await operation()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def measure(store: MessageStore) -> dict[str, float]:
    async def held() -> None:
        found = await store.list(states=[RecipientState.HELD], tenant="t", limit=100)
        assert len(found) >= 40, len(found)

    async def citizen() -> None:
        assert len(await store.list(recipient=CITIZEN, limit=100)) >= 10

    async def account() -> None:
        assert await store.state_get("accounts", "t:buerger7@example.net") is not None

    async def accounts() -> None:
        assert len(await store.state_scan("accounts", "t:buerger1")) == 111

    async def claim() -> None:
        await store.claim_due(datetime.now(UTC), 8, 60)

    return {"held queue (100)": await median_ms(held),
            "a citizen's copies": await median_ms(citizen),
            "one account": await median_ms(account),
            "accounts by prefix": await median_ms(accounts),
            "claim (nothing due)": await median_ms(claim)}


async def run(backend: str, sizes: list[int], folder: Path) -> dict[int, dict[str, float]]:
    create_key_file(folder / f"{backend}.key")
    cipher = ContentCipher.from_key_file(folder / f"{backend}.key")
    results = {}
    for size in sizes:
        schema = new_schema()
        store: MessageStore = (PostgreSQLStore(DSN, cipher, schema=schema) if backend == "postgresql"
                               else SQLiteStore(folder / f"{size}.db", cipher))
        try:
            async with store:
                started = time.perf_counter()
                await fill(store, backend, size)
                print(f"{backend}: {size} messages filled in {time.perf_counter() - started:.1f} s",
                      flush=True)
                results[size] = await measure(store)
        finally:
            if backend == "postgresql":
                drop_schema(schema)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            results = asyncio.run(run(backend, sizes, Path(folder)))
            print(f"\n{backend}: median ms per operation")
            print(f"{'operation':<22}" + "".join(f"{size:>12}" for size in sizes) + "   ratio")
            for name in results[sizes[0]]:
                row = [results[size][name] for size in sizes]
                print(f"{name:<22}" + "".join(f"{value:>12.3f}" for value in row)
                      + f"   {row[-1] / row[0]:.2f}×")


if __name__ == "__main__":
    main()
