"""The ``postbox`` plugin: its settings, protection method, delivery channel, maintenance,
registration page and the plugin set ``postbox``."""

from __future__ import annotations

from siegel import (
    Availability,
    ConfigSection,
    DeliveryChannel,
    MaintenanceTask,
    PluginSet,
    PortalRoute,
    PostboxTopic,
    ProtectionMethod,
    ProtectionResult,
    RecipientContext,
    Tenant,
    Text,
    hookimpl,
)
from siegel.plugins.baseline import BUILTIN_PLUGINS

from . import maintenance
from .method import CHANNEL, METHOD, Postbox, confirm
from .settings import SECTION, PostboxSettings

PLUGIN = "postbox"


async def can_serve(ctx: RecipientContext) -> Availability:
    return await Postbox(ctx.services, ctx.tenant).can_serve(ctx)


async def protect(ctx: RecipientContext) -> ProtectionResult:
    return await Postbox(ctx.services, ctx.tenant).protect(ctx)


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=PostboxSettings,
                          description="Postbox: retention, bin, notices, invitations")]


@hookimpl
def siegel_register_protection_methods() -> list[ProtectionMethod]:
    return [ProtectionMethod(name=METHOD, can_serve=can_serve, protect=protect,
                             description="The message stays on the portal, in the recipient's "
                             "postbox (encrypted, its own key); a notice mail without content")]


@hookimpl
def siegel_register_delivery_channels() -> list[DeliveryChannel]:
    return [DeliveryChannel(name=CHANNEL, deliver=confirm,
                            description="Confirms copies the postbox method stored")]


@hookimpl
def siegel_register_maintenance_tasks() -> list[MaintenanceTask]:
    return [MaintenanceTask(name="postbox", run=maintenance.maintain,
                            description="Postbox retention, bin, expiry and retrieval reminders")]


@hookimpl
def siegel_register_portal_routes() -> list[PortalRoute]:
    from . import portal, registration

    return [*registration.routes(), *portal.routes()]


@hookimpl
def siegel_register_postbox_topics(tenant: Tenant) -> list[PostboxTopic]:
    settings: PostboxSettings = tenant.settings[SECTION]
    return [PostboxTopic(name=topic.name, label=Text(de=topic.label_de, en=topic.label_en),
                         recipient=topic.recipient) for topic in settings.topics]


@hookimpl
def siegel_register_plugin_sets() -> list[PluginSet]:
    return [PluginSet(
        name="postbox",
        description="Baseline with the postbox: protected mail stays on the portal",
        plugins=(*BUILTIN_PLUGINS, "accounts", PLUGIN), protection=(PLUGIN,))]
