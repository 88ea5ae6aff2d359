"""Registers the accounts plugin's settings and portal pages."""

from __future__ import annotations

from siegel import ConfigSection, PortalRoute, hookimpl

from .settings import SECTION, AccountsSettings


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=AccountsSettings,
                          description="Portal sign-in: second factor, password length")]


@hookimpl
def siegel_register_portal_routes() -> list[PortalRoute]:
    from . import portal, second_factor

    return [*portal.routes(), *second_factor.routes()]
