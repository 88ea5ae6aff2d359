"""What a plugin's command (``siegel_register_commands``) needs to work on the configured gateway
without running it: the configuration, the plugin registry, the store and plugin state, opened the
same way ``siegel serve`` opens them.

Example (a command that counts a plugin's state records for one tenant)::

    import asyncio
    import click
    from siegel import hookimpl
    from siegel.commands import OfflineError, config_option, open_offline

    @hookimpl
    def siegel_register_commands(cli):
        @cli.command("greetings")
        @config_option
        @click.option("--tenant")
        def greetings(config_path, tenant):
            async def work():
                async with open_offline(config_path) as offline:
                    chosen = offline.tenant(tenant, section="greeting")
                    click.echo(f"{chosen.id}: {offline.state('greeting').namespace}")
            try:
                asyncio.run(work())
            except OfflineError as exc:
                raise click.ClickException(str(exc)) from None
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click

from siegel.accounts import NAMESPACE as ACCOUNTS_NAMESPACE
from siegel.accounts import Accounts
from siegel.bootstrap import bootstrap
from siegel.clock import SystemClock
from siegel.config import CONFIG_ENV, DEFAULT_CONFIG_NAME, Config, ConfigError, Tenant
from siegel.crypto import KeyFileError
from siegel.manager import PluginError, PluginRegistry
from siegel.model import AuditEvent, Notice
from siegel.plugin import Clock
from siegel.runtime import open_store
from siegel.state import PluginState
from siegel.store import MessageStore

_F = TypeVar("_F", bound=Any)


class OfflineError(Exception):
    """The configuration, a plugin or the store key cannot be used; the message says which and
    where (it never contains a secret)."""


def config_option(function: _F) -> _F:
    """``--config/-c PATH`` as every siegel command has it (default ``siegel.toml`` or
    ``$SIEGEL_CONFIG``), passed as ``config_path``."""
    option = click.option(
        "--config", "-c", "config_path", type=click.Path(path_type=Path), envvar=CONFIG_ENV,
        default=DEFAULT_CONFIG_NAME, show_default=True,
        help=f"Configuration file (or ${CONFIG_ENV}).")
    decorated: _F = option(function)
    return decorated


@attrs.frozen
class OfflineServices:
    """The configured gateway, opened for a command: nothing listens and no job runs."""

    config: Config
    registry: PluginRegistry
    store: MessageStore
    clock: Clock

    def state(self, namespace: str) -> PluginState:
        """A plugin's durable state, as ``services.state(namespace)`` gives it while serving."""
        return PluginState(self.store, namespace, self.clock)

    def accounts(self, tenant: str) -> Accounts:
        """A tenant's recipient accounts, as ``services.accounts(tenant)`` gives them."""
        return Accounts(self.state(ACCOUNTS_NAMESPACE), tenant)

    async def report(self, tenant: str, *, notices: Sequence[Notice] = (),
                     events: Sequence[AuditEvent] = ()) -> None:
        """Record audit ``events`` as ``services.report`` does while serving (stored, and
        observed by ``siegel_audit_event``). A command sends no notices: it runs no delivery."""
        if notices:
            raise OfflineError(f"{tenant}: a siegel command cannot send notices")
        await self.store.record_events(events)
        for event in events:
            self.registry.audit(event)

    def tenant(self, tenant_id: str | None, *, section: str | None = None) -> Tenant:
        """The tenant ``tenant_id``; without one, the only tenant (that has settings ``section``,
        when given). Raises :class:`OfflineError` naming the choices otherwise."""
        candidates = [t for t in self.config.tenants.values()
                      if section is None or section in t.settings]
        if tenant_id is None:
            if len(candidates) != 1:
                what = f"with settings [{section}]" if section else "configured"
                names = ", ".join(t.id for t in candidates) or "none"
                raise OfflineError(f"give the tenant: tenants {what}: {names}")
            return candidates[0]
        if tenant_id not in self.config.tenants:
            raise OfflineError(
                f"unknown tenant {tenant_id!r} (known: {', '.join(self.config.tenants)})")
        chosen = self.config.tenants[tenant_id]
        if section is not None and section not in chosen.settings:
            raise OfflineError(f"tenant {tenant_id!r} has no settings section {section!r} "
                               "(does it enable the plugin?)")
        return chosen


@asynccontextmanager
async def open_offline(
    config_path: Path,
    *,
    extra_plugins: Iterable[tuple[str, object]] = (),
    clock: Clock | None = None,
) -> AsyncIterator[OfflineServices]:
    """Load the plugins (honouring ``[plugins] blocked``) and the configuration at
    ``config_path``, open the store with its key, and close the store again on exit.
    ``extra_plugins`` are ``(name, plugin)`` pairs registered after the installed ones (tests)."""
    try:
        config, registry = bootstrap(config_path, extra_plugins=extra_plugins)
    except (ConfigError, PluginError) as exc:
        raise OfflineError(str(exc)) from None
    try:
        store = open_store(config)
    except KeyFileError as exc:
        raise OfflineError(f"{config_path}: {exc}") from None
    async with store:
        yield OfflineServices(config, registry, store, clock or SystemClock())


__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_NAME",
    "OfflineError",
    "OfflineServices",
    "bootstrap",
    "config_option",
    "open_offline",
    "open_store",
]
