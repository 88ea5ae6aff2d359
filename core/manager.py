"""Loading plugins and collecting what they register.

Order: built-in plugins (entry-point group ``siegel.builtin``, shipped with siegel), then third-party
plugins (group ``siegel``), then plugins given in code. A plugin that fails to import is recorded
and reported, not fatal; a tenant that enables it fails the configuration check, because a missing
classifier could otherwise let mail out that should have been protected.
"""

from __future__ import annotations

import importlib.metadata
import logging
import traceback
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs
import click
import pluggy

from siegel import hookspecs
from siegel.accounts import Account, PasswordSlot
from siegel.model import AuditEvent, PostboxTopic
from siegel.plugin import (
    PROJECT,
    Classifier,
    ConfigSection,
    DeliveryChannel,
    MaintenanceTask,
    Notifier,
    PluginSet,
    PortalRoute,
    ProtectionMethod,
    Resource,
    Rewriter,
    Transformer,
)

if TYPE_CHECKING:
    from siegel.config import Tenant

log = logging.getLogger(__name__)

BUILTIN_GROUP = "siegel.builtin"
THIRD_PARTY_GROUP = "siegel"


class PluginError(Exception):
    """A plugin registered something siegel cannot use. The message names the plugin."""


@attrs.frozen
class PluginInfo:
    name: str
    origin: str  # "builtin", "entry point", "inline"
    module: str
    distribution: str | None
    hooks: tuple[str, ...]


@attrs.frozen
class PluginLoadFailure:
    name: str
    origin: str
    module: str
    distribution: str | None
    error: str
    traceback: str = attrs.field(repr=False)


def _plugin_module_name(plugin: object) -> str:
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    return f"{type(plugin).__module__}.{type(plugin).__qualname__}"


def create_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


_T = TypeVar("_T", Classifier, Rewriter, ProtectionMethod, DeliveryChannel, Notifier,
             ConfigSection, PluginSet, PortalRoute, Transformer, Resource, MaintenanceTask)


@attrs.frozen
class RegistrationKind:
    """One kind of thing plugins register: the hook, the type it must return, the registry
    attribute that holds what was collected, and the words ``siegel plugins`` uses for it."""

    hook: str
    type: type[Any]
    attribute: str
    label: str


#: Every registration kind, in the order they are collected. Adding a kind is one line here (and
#: its hookspec and attribute annotation below).
REGISTRATION_KINDS: tuple[RegistrationKind, ...] = (
    RegistrationKind("siegel_register_plugin_sets", PluginSet, "plugin_sets", "plugin sets"),
    RegistrationKind("siegel_register_config_sections", ConfigSection, "config_sections",
                     "config sections"),
    RegistrationKind("siegel_register_transformers", Transformer, "transformers", "transformers"),
    RegistrationKind("siegel_register_classifiers", Classifier, "classifiers", "classifiers"),
    RegistrationKind("siegel_register_rewriters", Rewriter, "rewriters", "rewriters"),
    RegistrationKind("siegel_register_protection_methods", ProtectionMethod,
                     "protection_methods", "protection methods"),
    RegistrationKind("siegel_register_delivery_channels", DeliveryChannel, "delivery_channels",
                     "delivery channels"),
    RegistrationKind("siegel_register_notifiers", Notifier, "notifiers", "notifiers"),
    RegistrationKind("siegel_register_portal_routes", PortalRoute, "portal_routes",
                     "portal routes"),
    RegistrationKind("siegel_register_resources", Resource, "resources", "resources"),
    RegistrationKind("siegel_register_maintenance_tasks", MaintenanceTask, "maintenance_tasks",
                     "maintenance tasks"),
)


class PluginRegistry:
    """The loaded plugins and everything they registered; the pipeline's typed facade to pluggy."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        *,
        infos: Sequence[PluginInfo],
        failures: Sequence[PluginLoadFailure],
    ) -> None:
        self.pm = pm
        self.plugins = {info.name: info for info in infos}
        self.failures = {failure.name: failure for failure in failures}
        self.plugin_sets: dict[str, PluginSet]
        self.config_sections: dict[str, ConfigSection]
        self.transformers: dict[str, Transformer]
        self.classifiers: dict[str, Classifier]
        self.rewriters: dict[str, Rewriter]
        self.protection_methods: dict[str, ProtectionMethod]
        self.delivery_channels: dict[str, DeliveryChannel]
        self.notifiers: dict[str, Notifier]
        self.portal_routes: dict[str, PortalRoute]
        self.resources: dict[str, Resource]
        self.maintenance_tasks: dict[str, MaintenanceTask]
        for kind in REGISTRATION_KINDS:
            setattr(self, kind.attribute, self._collect(kind.hook, kind.type))

    @classmethod
    def load(
        cls,
        *,
        entry_points: bool = True,
        extra: Iterable[tuple[str, object]] = (),
        blocked: Iterable[str] = (),
    ) -> PluginRegistry:
        """Load built-in and third-party plugins (unless ``entry_points`` is false), then ``extra``
        (name, plugin object) pairs, skipping the names in ``blocked``."""
        pm = create_plugin_manager()
        blocked = set(blocked)
        for name in blocked:
            pm.set_blocked(name)
        infos: list[PluginInfo] = []
        failures: list[PluginLoadFailure] = []

        def register(name: str, plugin: object, origin: str, distribution: str | None) -> None:
            if name in blocked:
                return
            if pm.has_plugin(name):
                failures.append(PluginLoadFailure(
                    name, origin, _plugin_module_name(plugin), distribution,
                    f"a plugin named {name!r} is already registered", ""))
                return
            pm.register(plugin, name=name)
            hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
            infos.append(PluginInfo(name, origin, _plugin_module_name(plugin), distribution, hooks))

        if entry_points:
            for group, origin in ((BUILTIN_GROUP, "builtin"), (THIRD_PARTY_GROUP, "entry point")):
                for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name):
                    if ep.name in blocked:
                        continue
                    distribution = ep.dist.name if ep.dist else None
                    try:
                        plugin = ep.load()
                    except Exception as exc:
                        log.error("plugin %r (%s) failed to load: %s", ep.name, ep.value, exc)
                        failures.append(PluginLoadFailure(
                            ep.name, origin, ep.value, distribution,
                            f"{type(exc).__name__}: {exc}", traceback.format_exc()))
                        continue
                    register(ep.name, plugin, origin, distribution)
        for name, plugin in extra:
            register(name, plugin, "inline", None)
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin!r}: {exc}") from exc
        return cls(pm, infos=infos, failures=failures)

    def _collect(self, hook_name: str, kind: type[_T]) -> dict[str, _T]:
        hook: pluggy.HookCaller = getattr(self.pm.hook, hook_name)
        collected: dict[str, _T] = {}
        # Each plugin's implementation is called on its own so that what it returns is attributed
        # to it; pluggy's own call would merge the results anonymously. (pluggy's
        # subset_hook_caller would keep the call visible to add_hookcall_monitoring, but it needs
        # hashable plugin objects, which pluggy does not otherwise require.) siegel's own trace:
        # every registration is logged at DEBUG on this module's logger (``siegel -vv``).
        for impl in hook.get_hookimpls():
            try:
                result = impl.function()
                items: list[object] = [] if result is None else list(cast(Iterable[object], result))
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r}: {hook_name} raised {type(exc).__name__}: {exc}"
                ) from exc
            for item in items:
                if not isinstance(item, kind):
                    raise PluginError(
                        f"plugin {impl.plugin_name!r}: {hook_name} returned "
                        f"{type(item).__name__}, expected {kind.__name__}"
                    )
                if item.name in collected:
                    raise PluginError(
                        f"{kind.__name__} {item.name!r} is registered by both plugin "
                        f"{collected[item.name].plugin!r} and plugin {impl.plugin_name!r}"
                    )
                collected[item.name] = attrs.evolve(item, plugin=impl.plugin_name)
                log.debug("plugin %r registered %s %r (%s)", impl.plugin_name, kind.__name__,
                          item.name, hook_name)
        return dict(sorted(collected.items()))

    def enabled(self, items: dict[str, _T], enabled_plugins: Iterable[str]) -> list[_T]:
        allowed = set(enabled_plugins)
        return [item for item in items.values() if item.plugin in allowed]

    def postbox_topics(self, tenant: Tenant) -> list[PostboxTopic]:
        """The topics of ``siegel_register_postbox_topics`` for ``tenant``, from the plugins it
        enables, each marked with its plugin, in the order the plugins gave them."""
        allowed = set(tenant.enabled_plugins)
        found: dict[str, PostboxTopic] = {}
        for impl in self.pm.hook.siegel_register_postbox_topics.get_hookimpls():
            if impl.plugin_name not in allowed:
                continue
            try:
                result = impl.function(tenant)
                items: list[object] = [] if result is None else list(cast(Iterable[object], result))
            except Exception as exc:
                raise PluginError(f"plugin {impl.plugin_name!r}: siegel_register_postbox_topics "
                                  f"raised {type(exc).__name__}: {exc}") from exc
            for item in items:
                if not isinstance(item, PostboxTopic):
                    raise PluginError(f"plugin {impl.plugin_name!r}: siegel_register_postbox_"
                                      f"topics returned {type(item).__name__}, expected "
                                      "PostboxTopic")
                if item.name in found:
                    raise PluginError(f"postbox topic {item.name!r} of tenant {tenant.id!r} is "
                                      f"registered by both plugin {found[item.name].plugin!r} "
                                      f"and plugin {impl.plugin_name!r}")
                found[item.name] = attrs.evolve(item, plugin=impl.plugin_name)
        return list(found.values())

    def register_commands(self, cli: click.Group) -> None:
        self.pm.hook.siegel_register_commands(cli=cli)

    def audit(self, event: AuditEvent) -> None:
        for impl in self.pm.hook.siegel_audit_event.get_hookimpls():
            try:
                impl.function(event)
            except Exception:
                log.exception("plugin %r failed in siegel_audit_event", impl.plugin_name)

    def account_password_slots(self, tenant: Tenant, account: Account,
                               password: str) -> dict[str, PasswordSlot]:
        """Every enabled plugin's answer to a new password (``siegel_account_password_set``),
        by plugin name; plugins that answer ``None`` are left out."""
        values: dict[str, object] = {"tenant": tenant, "account": account, "password": password}
        answers: dict[str, PasswordSlot] = {}
        for impl in self.pm.hook.siegel_account_password_set.get_hookimpls():
            if impl.plugin_name not in tenant.enabled_plugins:
                continue
            result = impl.function(*[values[name] for name in impl.argnames])
            if result is None:
                continue
            if not isinstance(result, PasswordSlot):
                raise PluginError(f"plugin {impl.plugin_name!r}: siegel_account_password_set "
                                  f"returned {type(result).__name__}, expected PasswordSlot")
            answers[impl.plugin_name] = result
        return answers

    def registered_by(self, name: str) -> dict[str, list[str]]:
        """What the named plugin registered, by kind."""
        kinds: dict[str, dict[str, Any]] = {
            kind.label: getattr(self, kind.attribute) for kind in REGISTRATION_KINDS
        }
        return {
            kind: names
            for kind, items in kinds.items()
            if (names := [n for n, item in items.items() if item.plugin == name])
        }

