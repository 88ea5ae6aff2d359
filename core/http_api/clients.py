"""The HTTP API's clients: applications of a tenant, each with its own token and the addresses it
may send as. They live in the store (every instance sees the same clients, a removed client is
gone everywhere at once), the token only as its SHA-256 hash: it is 256 random bits, so a hash is
enough to make a stolen database useless for sending, and it can be looked up directly.

Which messages a client submitted is kept there too, for the client's list of recent messages,
for as long as the store keeps finished messages.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

import attrs

from siegel.addresses import Address, InvalidAddress
from siegel.config import Config
from siegel.crypto import hash_token
from siegel.state import PluginState
from siegel.store import StateConflict

#: The state namespace of the clients and their submissions.
NAMESPACE = "siegel.http_api"
#: Tokens start with this, so that a leaked one is recognised (secret scanners, logs).
TOKEN_PREFIX = "siegel_api_"  # noqa: S105 (a prefix, not a secret)
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}\Z")


class ClientError(ValueError):
    """A client cannot be created or removed as asked; the message says why."""


@attrs.frozen(kw_only=True)
class ApiClient:
    """An application that may submit through the HTTP API for ``tenant``, as ``senders`` (lower
    case; empty: any address of the tenant). It is a :class:`siegel.submission.Permit`."""

    tenant: str
    name: str
    senders: tuple[str, ...] = ()
    created_at: datetime

    @property
    def id(self) -> str:
        return f"{self.tenant}/{self.name}"

    def encode(self) -> bytes:
        return json.dumps({"tenant": self.tenant, "name": self.name, "senders": self.senders,
                           "created_at": self.created_at.isoformat()}).encode()

    @classmethod
    def decode(cls, value: bytes) -> ApiClient:
        data = json.loads(value)
        return cls(tenant=data["tenant"], name=data["name"], senders=tuple(data["senders"]),
                   created_at=datetime.fromisoformat(data["created_at"]))




class ApiClients:
    """The clients and their submissions in the store."""

    def __init__(self, state: PluginState, config: Config) -> None:
        self.state = state
        self.config = config

    async def create(self, tenant: str, name: str, senders: Iterable[str] = ()) -> str:
        """Create a client; returns its token, which is shown once and stored only hashed.
        Raises :class:`ClientError` (unknown tenant, a sender outside the tenant's domains, a
        name in use)."""
        owner = self.config.tenants.get(tenant)
        if owner is None:
            raise ClientError(f"unknown tenant {tenant!r} (known: {', '.join(self.config.tenants)})")
        if not _NAME.match(name):
            raise ClientError(f"client name {name!r}: use a-z, 0-9, '.', '_' and '-' "
                              "(at most 63, starting with a letter or digit)")
        checked: list[str] = []
        for sender in senders:
            try:
                address = Address.parse(sender)
            except InvalidAddress as exc:
                raise ClientError(f"sender {sender!r}: {exc}") from None
            if not owner.own_domains.match(address.domain):
                raise ClientError(f"sender {address} is not in a domain of tenant {tenant!r}")
            checked.append(str(address).lower())
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        client = ApiClient(tenant=tenant, name=name, senders=tuple(dict.fromkeys(checked)),
                           created_at=self.state.clock.now())
        try:
            await self.state.put(f"name/{client.id}", hash_token(token).encode(), expect_version=0)
        except StateConflict:
            raise ClientError(f"client {client.id} exists; remove it first") from None
        await self.state.put(f"token/{hash_token(token)}", client.encode())
        return token

    async def authenticate(self, token: str) -> ApiClient | None:
        """The client this token belongs to, or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        record = await self.state.get(f"token/{hash_token(token)}")
        if record is None:
            return None
        client = ApiClient.decode(record.value)
        return client if client.tenant in self.config.tenants else None

    async def clients(self, tenant: str | None = None) -> list[ApiClient]:
        found = [ApiClient.decode(r.value) for r in await self.state.scan("token/")]
        return sorted((c for c in found if tenant is None or c.tenant == tenant),
                      key=lambda c: c.id)

    async def remove(self, tenant: str, name: str) -> bool:
        """Remove a client: its token stops working at once, on every instance."""
        record = await self.state.get(f"name/{tenant}/{name}")
        if record is None:
            return False
        await self.state.delete(f"token/{record.value.decode()}")
        await self.state.delete(f"name/{tenant}/{name}")
        return True

    async def submitted(self, client: ApiClient, message_id: str, at: datetime) -> None:
        """Remember that ``client`` submitted ``message_id``, for its list of recent messages."""
        keep = timedelta(days=self.config.store.retention_days + 1)
        await self.state.put(f"sent/{client.id}/{at:%Y%m%dT%H%M%S%f}/{message_id}", b"",
                             ttl=keep)

    async def recent(self, client: ApiClient, limit: int) -> list[str]:
        """The ids of the client's most recent submissions, newest first."""
        records = await self.state.scan(f"sent/{client.id}/")
        return [r.key.rsplit("/", 1)[1] for r in reversed(records)][:limit]
