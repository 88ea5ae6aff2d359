"""The ``password_pdf`` plugin: registers the protection method and its settings.

Portal pages (registration, password reset, reply form) call :class:`.workflow.Workflow`; a
password changed on the accounts plugin's page reaches the PDF key material through
``siegel_account_password_set``.
"""

from __future__ import annotations

from siegel import (
    Account,
    Address,
    Availability,
    ConfigSection,
    PasswordSlot,
    PortalRoute,
    ProtectionMethod,
    ProtectionResult,
    RecipientContext,
    Resource,
    Tenant,
    Text,
    hookimpl,
)

from .accounts import encode_key
from .encrypt import derive_recipient_key
from .render_pool import RENDER_POOL
from .workflow import METHOD, SECTION, PasswordPdfSettings, Workflow, password_problems


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


@hookimpl
def siegel_account_password_set(tenant: Tenant, account: Account,
                                password: str) -> PasswordSlot:
    """A password set anywhere (the accounts plugin's page, this plugin's links) is also the
    password of the recipient's next PDFs: the key material in this plugin's slot follows it."""
    settings: PasswordPdfSettings = tenant.settings[SECTION]
    problems = password_problems(password, Address.load(account.address),
                                 settings.minimum_password_length)
    if problems:
        return PasswordSlot(problems=problems)
    return PasswordSlot(data=encode_key(derive_recipient_key(password)))
