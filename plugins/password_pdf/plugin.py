"""The ``password_pdf`` plugin: registers the protection method and its settings.

Portal pages (registration, password reset, login and password change, reply form) call
:class:`.workflow.Workflow`.
"""

from __future__ import annotations

from siegel import (
    Availability,
    ConfigSection,
    PortalRoute,
    ProtectionMethod,
    ProtectionResult,
    RecipientContext,
    Resource,
    Text,
    hookimpl,
)

from .render_pool import RENDER_POOL
from .workflow import METHOD, SECTION, PasswordPdfSettings, Workflow


async def can_serve(ctx: RecipientContext) -> Availability:
    # Every recipient can be served: on first contact the message is held until they choose a
    # password. Deliberately no state lookup here, so `siegel explain` needs no store.
    return Availability.yes(Text(
        de="PDF mit dem Passwort des Empfängers (beim Erstkontakt zurückgehalten, bis es gesetzt ist)",
        en="PDF with the recipient's password (held on first contact until it is set)"))


async def protect(ctx: RecipientContext) -> ProtectionResult:
    return await Workflow(ctx.services, ctx.tenant).protect(ctx)


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=PasswordPdfSettings,
                          description="Password-protected PDF: portal link, hold time, carrier mail")]


@hookimpl
def siegel_register_protection_methods() -> list[ProtectionMethod]:
    return [ProtectionMethod(name=METHOD, can_serve=can_serve, protect=protect,
                             description="AES-256 PDF with a password the recipient chooses")]


@hookimpl
def siegel_register_resources() -> list[Resource]:
    return [RENDER_POOL.resource()]


@hookimpl
def siegel_register_portal_routes() -> list[PortalRoute]:
    from . import portal

    return portal.routes()
