"""A plugin with a start and a stop: helper processes that live as long as the gateway runs.

Here the helpers are ``cat`` processes; a real plugin would start its render or scan workers the
same way. siegel awaits ``start`` when ``siegel serve`` (or the test harness) starts and ``stop``
when it stops, after the last message was processed.
"""

from __future__ import annotations

import asyncio
import asyncio.subprocess

from siegel import Resource, Services, hookimpl


class HelperPool:
    """Owns its processes; nothing lives in a module global that another event loop could see."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self, services: Services) -> None:
        for _ in range(self.size):
            self.processes.append(await asyncio.create_subprocess_exec(
                "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))

    async def stop(self) -> None:
        processes, self.processes = self.processes, []
        for process in processes:
            process.kill()
            await process.wait()


POOL = HelperPool()


@hookimpl
def siegel_register_resources() -> list[Resource]:
    return [Resource(name="helper-pool", start=POOL.start, stop=POOL.stop,
                     description="two helper processes for the whole gateway")]
