"""First contact, shared by every protection method that needs the recipient to act first (the
password PDF, the postbox): one-time links and the copies waiting for a registration.

* :class:`OneTimeLinks`: a link's token is 256 random bits, stored only as its SHA-256, for one
  purpose and one tenant, expiring; :meth:`OneTimeLinks.consume` makes it single use.
* :class:`WaitingCopies`: the held copies of one recipient (keyed by :attr:`siegel.Address.key`,
  so that one invitation serves every spelling of the address), released together once the
  recipient registered. The first copy of a recipient says so (``first``), so that the method
  sends one invitation, not one per message.

Both live in plugin state (the store), so that they survive a restart and every instance sees
them; each plugin keeps them in its own namespaces.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta

import attrs

from siegel.addresses import Address
from siegel.crypto import hash_token
from siegel.plugin import Services
from siegel.state import PluginState
from siegel.store import StateConflict

__all__ = ["LinkInvalid", "LinkRecord", "OneTimeLinks", "WaitingCopies", "hash_token",
           "waiting_key"]


class LinkInvalid(Exception):
    """A link that is unknown, used, expired or meant for something else. Deliberately vague."""




@attrs.frozen(kw_only=True)
class LinkRecord:
    """What a link stands for: its purpose, tenant and recipient, and what its issuer added."""

    purpose: str
    tenant: str
    recipient: str
    created_at: str
    #: The stored record's key (the token's hash) and version.
    key: str
    version: int
    extra: Mapping[str, str] = attrs.field(factory=dict)


class OneTimeLinks:
    """Tokens for links in mails, of one tenant, kept in ``state`` (a plugin's namespace)."""

    def __init__(self, state: PluginState, tenant: str) -> None:
        self.state = state
        self.tenant = tenant

    async def issue(self, purpose: str, recipient: Address, ttl: timedelta,
                    **extra: str) -> str:
        """A new token for ``purpose``; only its hash is stored, for ``ttl``."""
        token = secrets.token_urlsafe(32)
        record = {"purpose": purpose, "tenant": self.tenant, "recipient": str(recipient),
                  "created_at": self.state.clock.now().isoformat(), **extra}
        await self.state.put(hash_token(token), json.dumps(record).encode(), ttl=ttl,
                             expect_version=0)
        return token

    async def read(self, token: str, purpose: str) -> LinkRecord:
        """The record of an unused, unexpired token of this tenant and purpose."""
        record = await self.state.get(hash_token(token))
        if record is None:
            raise LinkInvalid("unknown or expired link")
        data = json.loads(record.value)
        if data.get("purpose") != purpose or data.get("tenant") != self.tenant:
            raise LinkInvalid("link for another purpose")
        known = ("purpose", "tenant", "recipient", "created_at")
        return LinkRecord(**{k: data[k] for k in known}, key=record.key, version=record.version,
                          extra={k: v for k, v in data.items() if k not in known})

    async def consume(self, token: str, purpose: str) -> LinkRecord:
        """Read and delete a token; a second use fails."""
        record = await self.read(token, purpose)
        if not await self.state.delete(record.key):
            raise LinkInvalid("link already used")
        return record


def waiting_key(tenant: str, recipient: Address) -> str:
    return f"{tenant}/{recipient.key}"


class WaitingCopies:
    """The copies of one tenant that wait for their recipient's registration, kept in ``state``
    as one record per recipient: ``{"messages": [...], "until": ISO time, "held": {message id:
    the address as the message has it}}``, expiring with the hold."""

    def __init__(self, state: PluginState, tenant: str) -> None:
        self.state = state
        self.tenant = tenant

    def updating(self, recipient: Address) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold while deciding whether to wait or not (see :meth:`PluginState.updating`): a copy
        is then either in the list that :meth:`release` reads, or sees the registration."""
        return self.state.updating(waiting_key(self.tenant, recipient))

    async def add(self, message_id: str, recipient: Address,
                  hold: timedelta) -> tuple[datetime, bool]:
        """Record the copy as waiting; returns when the wait ends and whether this is the
        recipient's first waiting copy (then the caller sends the invitation). Later copies
        wait as long as the first."""
        key = waiting_key(self.tenant, recipient)
        now = self.state.clock.now()
        for _attempt in range(5):
            record = await self.state.get(key)
            if record is not None:
                data = json.loads(record.value)
                until = datetime.fromisoformat(data["until"])
                if message_id not in data["messages"]:
                    data["messages"].append(message_id)
                    data.setdefault("held", {})[message_id] = str(recipient)
                    try:
                        await self.state.put(key, json.dumps(data).encode(), ttl=until - now,
                                             expect_version=record.version)
                    except StateConflict:  # a concurrent first-contact message won; read again
                        continue
                return until, False
            until = now + hold
            data = {"messages": [message_id], "until": until.isoformat(),
                    "held": {message_id: str(recipient)}}
            try:
                await self.state.put(key, json.dumps(data).encode(), ttl=hold, expect_version=0)
            except StateConflict:
                continue
            return until, True
        raise StateConflict(f"could not record the held message for {recipient}")

    async def release(self, recipient: Address, services: Services) -> list[str]:
        """Process every waiting copy of ``recipient`` again now (it registered); returns the
        ids of their messages."""
        key = waiting_key(self.tenant, recipient)
        async with self.state.updating(key):
            record = await self.state.get(key)
            if record is None:
                return []
            data = json.loads(record.value)
            held = data.get("held", {})
            for message_id in data["messages"]:
                spelt = held.get(message_id)
                await services.release(message_id,
                                       Address.load(spelt) if spelt else recipient)
            await self.state.delete(key)
            return list(data["messages"])
