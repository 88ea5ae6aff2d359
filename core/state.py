"""Durable state a plugin keeps: recipient accounts, certificates, one-time tokens.

Each plugin works in its own namespace; values are bytes (the plugin chooses the encoding, e.g.
JSON) and are encrypted at rest like message content. Records may expire; expired records read as
absent and are purged by the gateway's maintenance.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TypeVar

from siegel.plugin import Clock
from siegel.store import MessageStore, StateRecord, StateUpdate

_R = TypeVar("_R")

# One lock per record being updated in this process; a lock lives only while someone holds or
# waits for it.
_UPDATING: weakref.WeakValueDictionary[tuple[int, str, str], asyncio.Lock] = (
    weakref.WeakValueDictionary())


class PluginState:
    def __init__(self, store: MessageStore, namespace: str, clock: Clock) -> None:
        self.store = store
        self.namespace = namespace
        self.clock = clock

    async def get(self, key: str) -> StateRecord | None:
        record = await self.store.state_get(self.namespace, key)
        if record is None or (record.expires_at is not None
                              and record.expires_at <= self.clock.now()):
            return None
        return record

    async def put(self, key: str, value: bytes, *, ttl: timedelta | None = None,
                  expect_version: int | None = None) -> int:
        """Write ``value``; ``expect_version`` (0 = must not exist) guards against lost updates."""
        expires_at = self.clock.now() + ttl if ttl is not None else None
        return await self.store.state_put(self.namespace, key, value, expires_at=expires_at,
                                          expect_version=expect_version)

    async def update(self, key: str, update: StateUpdate[_R]) -> _R:
        """Read, decide and write one record atomically (see
        :meth:`~siegel.store.MessageStore.state_update`); expired records reach ``update`` as
        ``None``."""
        return await self.store.state_update(self.namespace, key, update, now=self.clock.now())

    async def delete(self, key: str) -> bool:
        return await self.store.state_delete(self.namespace, key)

    @contextlib.asynccontextmanager
    async def updating(self, key: str) -> AsyncIterator[None]:
        """Hold while reading, changing and writing back the record ``key``: other updates of
        the same record in this process wait, so that they do not conflict.

        ``expect_version`` still guards against writers in other processes, but many updates
        of one record at once (twenty first-contact messages for one new recipient) would
        otherwise all read the same version, and all but one fail, round after round."""
        lock_key = (id(self.store), self.namespace, key)
        lock = _UPDATING.get(lock_key)
        if lock is None:
            lock = _UPDATING[lock_key] = asyncio.Lock()
        async with lock:
            yield

    async def scan(self, prefix: str = "") -> list[StateRecord]:
        return await self.store.state_scan(self.namespace, prefix, now=self.clock.now())

    async def page(self, prefix: str, *, limit: int, after: str | None = None,
                   descending: bool = False) -> list[StateRecord]:
        """One page of the unexpired records under ``prefix`` in key order (see
        :meth:`~siegel.store.MessageStore.state_page`); pass the last key of a page as ``after``
        to get the next one."""
        return await self.store.state_page(self.namespace, prefix, limit=limit, after=after,
                                           descending=descending, now=self.clock.now())

    async def count(self, prefix: str) -> int:
        """How many unexpired records have a key that starts with ``prefix``."""
        return await self.store.state_count(self.namespace, prefix, now=self.clock.now())


class ReadOnlyPluginState(PluginState):
    """Plugin state for dry runs (``siegel explain``): reads work, writes are refused."""

    async def put(self, key: str, value: bytes, *, ttl: timedelta | None = None,
                  expect_version: int | None = None) -> int:
        raise PermissionError(f"{self.namespace}: a dry run must not write plugin state")

    async def update(self, key: str, update: StateUpdate[_R]) -> _R:
        raise PermissionError(f"{self.namespace}: a dry run must not write plugin state")

    async def delete(self, key: str) -> bool:
        raise PermissionError(f"{self.namespace}: a dry run must not write plugin state")
