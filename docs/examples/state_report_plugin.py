"""A plugin command that works on the configured gateway without running it: it reports how many
records a plugin keeps in its state, for one tenant's view of the configuration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from siegel import hookimpl
from siegel.commands import OfflineError, config_option, open_offline


async def count_records(config_path: Path, namespace: str, tenant: str | None) -> str:
    async with open_offline(config_path) as offline:
        chosen = offline.tenant(tenant)
        records = await offline.state(namespace).scan()
        return f"{chosen.id}: {len(records)} records in {namespace}"


@hookimpl
def siegel_register_commands(cli: click.Group) -> None:
    @cli.command("state-report")
    @config_option
    @click.option("--tenant", help="The tenant (needed when there are several).")
    @click.argument("namespace")
    def state_report(config_path: Path, tenant: str | None, namespace: str) -> None:
        """How many records the plugin state NAMESPACE keeps."""
        try:
            click.echo(asyncio.run(count_records(config_path, namespace, tenant)))
        except OfflineError as exc:
            raise click.ClickException(str(exc)) from None
