"""Starting and stopping the gateway: the runtime, the SMTP listeners, the portal and the loop
watchdog, in order, and stopping them in reverse on SIGTERM or SIGINT (``siegel serve``).
"""

from __future__ import annotations

import asyncio
import signal
import sys

import click

from siegel import __version__
from siegel.cli_common import _fail
from siegel.runtime import Runtime
from siegel.store import StoreError
from siegel.watchdog import LoopWatchdog


async def _serve(runtime: Runtime) -> None:
    from siegel.gateway import SmtpGateway

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await runtime.start()
    except StoreError as exc:
        _fail(f"cannot open the store: {exc}", 2)
    watchdog = LoopWatchdog(loop, runtime.config.delivery.stall_exit_seconds).start()
    gateway = SmtpGateway(runtime)
    try:
        bound = await gateway.start()
    except OSError as exc:
        await runtime.stop()
        _fail(f"cannot listen: {exc}", 2)
    for host, port in bound:
        click.echo(f"siegel {__version__} listening on {host}:{port} (SMTP)")
    portal = None
    if runtime.config.portal.enabled:
        from siegel.portal import PortalError, PortalServer, create_app
        from siegel.portal.i18n import CatalogError

        try:
            portal = PortalServer(create_app(runtime, settings=runtime.config.portal),
                                  runtime.config.portal)
            portal_host, portal_port = await portal.start()
        except (PortalError, CatalogError, OSError) as exc:
            await gateway.stop()
            await runtime.stop()
            _fail(f"cannot start the portal: {exc}", 2)
        click.echo(f"recipient portal on http://{portal_host}:{portal_port} "
                   f"(links in mails: {runtime.config.portal.base_url})")
    api = None
    if runtime.config.http_api.enabled:
        from siegel.http_api import api_server

        api = api_server(runtime)
        try:
            api_host, api_port = await api.start()
        except (OSError, ValueError) as exc:
            if portal is not None:
                await portal.stop()
            await gateway.stop()
            await runtime.stop()
            _fail(f"cannot start the HTTP API: {exc}", 2)
        scheme = "https" if runtime.config.http_api.tls else "http"
        click.echo(f"HTTP API on {scheme}://{api_host}:{api_port}/v1/")
    tenants = ", ".join(f"{t.id} ({', '.join(t.own_domains)})" for t in runtime.config.tenants.values())
    click.echo(f"tenants: {tenants}")
    if bound:
        host, port = bound[0]
        first = next(iter(runtime.config.tenants.values()))
        domain = next(iter(first.own_domains))
        click.echo(f"send a test mail: siegel send-test --port {port} --from clerk@{domain} "
                   f"--to someone@example.net  (add --customer to trigger protection)")
    else:
        click.echo("no [[listeners]] configured: only delivering what is queued")
    click.echo("stop with Ctrl-C")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        click.echo("stopping")
        if api is not None:
            await api.stop()
        if portal is not None:
            await portal.stop()
        await gateway.stop()
        await runtime.stop()
        watchdog.stop()
