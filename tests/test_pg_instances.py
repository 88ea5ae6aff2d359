"""Several instances on one PostgreSQL database: two store objects (two pools, as two
processes would have) claiming, writing state and running maintenance at the same time, and
a listener whose database goes away and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiosmtplib
import pytest

from postgres import DSN
from siegel import Address, Envelope, Message
from siegel.clock import FrozenClock, new_message_id
from siegel.crypto import ContentCipher, create_key_file
from siegel.gateway import SmtpGateway
from siegel.model import RecipientState
from siegel.store import RecipientUpdate, StateConflict, StateWrite
from siegel.testing import make_message

pytestmark = pytest.mark.usefixtures("pg_schema")


@pytest.fixture
def cipher(tmp_path):
    create_key_file(tmp_path / "store.key")
    return ContentCipher.from_key_file(tmp_path / "store.key")


@pytest.fixture
async def two(pg_schema, cipher) -> AsyncIterator[tuple[Any, Any]]:
    from siegel.pg_store import PostgreSQLStore

    first = PostgreSQLStore(DSN, cipher, schema=pg_schema, pool_size=4)
    second = PostgreSQLStore(DSN, cipher, schema=pg_schema, pool_size=4)
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def message(now, rcpts=("a@x.example",)) -> Message:
    return Message(id=new_message_id(), tenant="t",
                   envelope=Envelope(Address.parse("s@t.example"),
                                     tuple(Address.parse(r) for r in rcpts)),
                   raw=b"Subject: hi\r\n\r\nhallo\r\n", received_at=now)


async def test_instances_claiming_at_once_never_get_the_same_copy(two):
    first, second = two
    clock = FrozenClock()
    for _ in range(60):
        await first.accept(message(clock.now(), rcpts=("a@x.example", "b@x.example")))
    claimed: list[tuple[str, str]] = []

    async def worker(store: Any) -> None:
        while jobs := await store.claim_due(clock.now(), 7, lease_seconds=60):
            claimed.extend((j.message_id, str(j.recipient)) for j in jobs)
            await asyncio.sleep(0)

    await asyncio.gather(*(worker(s) for s in (first, second, first, second)))
    assert len(claimed) == 120 and len(set(claimed)) == 120


async def test_a_dead_instances_jobs_are_taken_over_when_the_lease_ends(two):
    first, second = two
    clock = FrozenClock()
    await first.accept(message(clock.now()))
    [job] = await first.claim_due(clock.now(), 10, lease_seconds=30)
    await first.close()  # the instance dies holding the lease
    assert await second.claim_due(clock.now(), 10, lease_seconds=30) == []
    clock.advance(seconds=31)
    [again] = await second.claim_due(clock.now(), 10, lease_seconds=30)
    assert (again.message_id, again.starts) == (job.message_id, 2)
    await second.finish(again, RecipientUpdate(state=RecipientState.DELIVERED, detail="ok"),
                        now=clock.now())


async def test_racing_versioned_writes_let_exactly_one_win(two):
    first, second = two
    await first.state_put("ns", "k", b"v0")
    results = await asyncio.gather(
        *(store.state_put("ns", "k", f"from {i}".encode(), expect_version=1)
          for i, store in enumerate((first, second) * 5)), return_exceptions=True)
    assert sum(r == 2 for r in results) == 1
    assert all(isinstance(r, StateConflict) for r in results if r != 2)
    created = await asyncio.gather(
        *(store.state_put("ns", "new", b"x", expect_version=0) for store in (first, second) * 3),
        return_exceptions=True)
    assert created.count(1) == 1


async def test_racing_read_modify_writes_lose_no_update(two):
    first, second = two

    def increment(record: Any) -> tuple[StateWrite, int]:
        count = 0 if record is None else json.loads(record.value)
        return StateWrite(value=json.dumps(count + 1).encode()), count + 1

    results = await asyncio.gather(*(store.state_update("throttle", "ip", increment)
                                     for store in (first, second) * 20))
    assert sorted(results) == list(range(1, 41))
    record = await second.state_get("throttle", "ip")
    assert record is not None and (json.loads(record.value), record.version) == (40, 40)


async def test_maintenance_runs_on_one_instance_at_a_time(two):
    first, second = two
    async with first.exclusive("maintenance") as mine:
        assert mine
        async with second.exclusive("maintenance") as theirs:
            assert not theirs
        async with second.exclusive("something else") as other:
            assert other
    async with second.exclusive("maintenance") as theirs:
        assert theirs


class Proxy:
    """A TCP forwarder to the database that the test can cut and restore (the database
    becoming unreachable, as in a network failure, and coming back on the same address)."""

    def __init__(self, target_port: int = 5432) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._streams |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for stream in self._streams:
            stream.transport.abort()
        self._streams.clear()
        await self._server.wait_closed()

    async def stop(self) -> None:
        with contextlib.suppress(AssertionError):
            await self.cut()


async def test_the_listener_answers_451_while_the_database_is_away_and_recovers(
        siegel_harness, pg_schema):
    proxy = Proxy()
    await proxy.start()
    config = {"store": {"backend": "postgresql", "schema": pg_schema,
                        "dsn": f"host=127.0.0.1 port={proxy.port} dbname=test user=postgres"},
              "listeners": [{"host": "127.0.0.1", "port": 0}]}
    try:
        async with siegel_harness(config=config) as harness:
            harness.runtime.store._connect_timeout = 2.0
            gateway = SmtpGateway(harness.runtime)
            [(host, port)] = await gateway.start()

            async def send(subject: str) -> int:
                raw = make_message(to="kollegin@behoerde.example", subject=subject)
                try:
                    await aiosmtplib.send(raw, hostname=host, port=port, timeout=30,
                                          sender="sachbearbeitung@behoerde.example",
                                          recipients=["kollegin@behoerde.example"])
                except aiosmtplib.SMTPDataError as exc:
                    return exc.code
                return 250

            try:
                assert await send("before") == 250
                await proxy.cut()
                assert await send("while away") == 451
                await proxy.start()  # the same port: the database is back
                assert await send("after") == 250
                # What was answered 250 is stored; what was answered 451 is not.
                assert len(await harness.runtime.store.list()) == 2
            finally:
                await gateway.stop()
    finally:
        await proxy.stop()
