"""The relay's one use of a private aiosmtplib member (``_drain_helper``) sits behind
``writable_waiter``, which falls back to the public transport API when it is gone."""

from __future__ import annotations

import asyncio

import aiosmtplib.protocol

from siegel.plugins.smtp_relay import writable_waiter


async def test_aiosmtplibs_own_drain_is_used_while_it_exists():
    # Fails when aiosmtplib drops _drain_helper: then the fallback below is what runs in
    # production, and this test should be changed to say so.
    protocol = aiosmtplib.protocol.SMTPProtocol()
    assert writable_waiter(protocol) == protocol._drain_helper


class Plain(asyncio.Protocol):
    """A protocol with no private drain: only the public transport API is there."""

    def connection_made(self, transport):
        self.transport = transport


async def test_the_fallback_waits_until_the_buffer_has_room():
    server_side: list[asyncio.Transport] = []

    class Slow(asyncio.Protocol):
        def connection_made(self, transport):
            transport.pause_reading()  # the peer reads nothing until told
            server_side.append(transport)

    loop = asyncio.get_running_loop()
    listener = await loop.create_server(Slow, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    transport, protocol = await loop.create_connection(Plain, "127.0.0.1", port)
    try:
        assert not hasattr(protocol, "_drain_helper")
        transport.set_write_buffer_limits(high=64 * 1024)
        chunk = b"x" * (1024 * 1024)
        for _ in range(16):  # far more than the kernel's socket buffers hold
            transport.write(chunk)
        assert transport.get_write_buffer_size() > 64 * 1024
        waiting = asyncio.create_task(writable_waiter(protocol)())
        await asyncio.sleep(0.2)
        assert not waiting.done()  # cannot finish: the peer does not read
        server_side[0].resume_reading()
        await asyncio.wait_for(waiting, 30)
        assert transport.get_write_buffer_size() <= 64 * 1024
    finally:
        transport.close()
        listener.close()
        await listener.wait_closed()
