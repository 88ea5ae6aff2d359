"""The ``pin_letters`` plugin: its settings, portal pages and ``siegel letters`` commands."""

from __future__ import annotations

import click

from siegel import ConfigSection, PortalRoute, hookimpl

from .settings import SECTION, PinLetterSettings


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=PinLetterSettings,
                          description="PIN letters: validity, attempts, letterhead, DIN 5008 form")]


@hookimpl
def siegel_register_portal_routes() -> list[PortalRoute]:
    from . import portal

    return portal.routes()


@hookimpl
def siegel_register_commands(cli: click.Group) -> None:
    from .cli import letters

    cli.add_command(letters)
