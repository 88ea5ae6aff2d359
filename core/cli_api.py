"""``siegel api-client``: the HTTP API's clients (create one and see its token once, list,
remove) and its OpenAPI description."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from siegel.cli_common import _fail, _load, _run, _with_store, config_option
from siegel.clock import SystemClock
from siegel.config import Config
from siegel.crypto import KeyFileError
from siegel.state import PluginState
from siegel.store import MessageStore, StoreError

if TYPE_CHECKING:
    from siegel.http_api import ApiClients


@click.group("api-client")
def api_client() -> None:
    """Clients of the HTTP submission API ([http_api])."""


def _clients(config_path: Path) -> tuple[Config, Callable[[MessageStore], ApiClients]]:
    from siegel.http_api import NAMESPACE, ApiClients

    config, _registry = _load(config_path)

    def clients(store: MessageStore) -> ApiClients:
        return ApiClients(PluginState(store, NAMESPACE, SystemClock()), config)

    return config, clients


@api_client.command("add")
@config_option
@click.argument("tenant")
@click.argument("name")
@click.option("--sender", "senders", multiple=True, metavar="ADDRESS",
              help="An address the client may send as (repeat; default: any of the tenant's).")
def add(config_path: Path, tenant: str, name: str, senders: tuple[str, ...]) -> None:
    """Create client NAME of TENANT and print its token (shown only this once)."""
    from siegel.http_api import ClientError

    config, clients = _clients(config_path)
    try:
        token = _run(_with_store(config, lambda store: clients(store).create(
            tenant, name, senders)))
    except ClientError as exc:
        _fail(str(exc))
        return
    except (KeyFileError, StoreError) as exc:
        _fail(f"cannot open the store: {exc}", 2)
        return
    click.echo(f"client {tenant}/{name} created; its token (shown only now, stored hashed):")
    click.echo(token)


@api_client.command("list")
@config_option
@click.option("--tenant", default=None)
def list_clients(config_path: Path, tenant: str | None) -> None:
    """List the clients (never their tokens)."""
    config, clients = _clients(config_path)
    found = _run(_with_store(config, lambda store: clients(store).clients(tenant)))
    for client in found:
        senders = ", ".join(client.senders) or "any address of the tenant"
        click.echo(f"{client.id}  created {client.created_at:%Y-%m-%d %H:%M}  sends as: {senders}")
    if not found:
        click.echo("no clients")


@api_client.command("remove")
@config_option
@click.argument("tenant")
@click.argument("name")
def remove(config_path: Path, tenant: str, name: str) -> None:
    """Remove a client; its token stops working at once."""
    config, clients = _clients(config_path)
    if not _run(_with_store(config, lambda store: clients(store).remove(tenant, name))):
        _fail(f"no client {tenant}/{name}")
    click.echo(f"client {tenant}/{name} removed")


@api_client.command("openapi")
def openapi() -> None:
    """Print the HTTP API's OpenAPI description (docs/http-api/openapi.json)."""
    from siegel.http_api import openapi_document

    click.echo(json.dumps(openapi_document(), indent=2, ensure_ascii=False, sort_keys=True))
