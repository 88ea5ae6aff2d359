"""Tenants: the configuration's tenant tables resolved against the loaded plugins into
:class:`Tenant` objects (domains, plugin set, protection, settings), and the checks between them.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from siegel.addresses import (
    Address,
    DomainSet,
    InvalidAddress,
)
from siegel.config_errors import _strict_types, _StructureError, deep_merge, structure
from siegel.config_schema import FileConfig, TenantConfig
from siegel.localtime import DEFAULT_TIME_ZONE, UnknownTimeZone, format_moment, time_zone
from siegel.model import IdentityLevel

if TYPE_CHECKING:
    from siegel.manager import PluginRegistry

#: The local part of a tenant's default ``bounce_address``.
BOUNCE_LOCAL_PART = "siegel-bounce"


@attrs.frozen(kw_only=True, eq=False)
class Tenant:
    """A tenant resolved against the loaded plugins: what the pipeline works with.

    Compared by identity: one configuration has exactly one object per tenant."""

    id: str
    name: str
    own_domains: DomainSet
    internal: DomainSet
    enabled_plugins: frozenset[str]
    protection: tuple[str, ...]
    delivery_channel: str
    language: Literal["de", "en"]
    notice_from: str
    settings: Mapping[str, Any]
    time_zone: zoneinfo.ZoneInfo = attrs.field(factory=lambda: zoneinfo.ZoneInfo(DEFAULT_TIME_ZONE))
    #: The base of VERP envelope senders for mails about held copies; None: null sender.
    bounce_address: Address | None = None
    #: The identity level an account needs to read messages (in a postbox) and to write.
    read_level: IdentityLevel = IdentityLevel.MAILBOX
    write_level: IdentityLevel = IdentityLevel.MAILBOX

    def format_time(self, moment: datetime, language: str | None = None) -> str:
        """``moment`` as a person of this tenant reads it, in its time zone with the zone named:
        "3. Dezember 2026, 17:05 Uhr (MEZ)" / "3 December 2026, 17:05 CET"."""
        return format_moment(moment, self.time_zone, language or self.language)


def _check_overlaps(tenants: Mapping[str, Tenant], problems: list[str]) -> None:
    owner: dict[str, str] = {}
    for tenant in tenants.values():
        for domain in tenant.own_domains:
            if domain in owner:
                problems.append(
                    f"tenants.{tenant.id}.domains: {domain} belongs to tenant {owner[domain]!r} "
                    "already; a message must belong to exactly one tenant"
                )
            owner[domain] = tenant.id


def _resolve_tenant(
    tenant_id: str,
    config: TenantConfig,
    file: FileConfig,
    registry: PluginRegistry,
    problems: list[str],
    base_dir: Path,
) -> Tenant | None:
    prefix = f"tenants.{tenant_id}"
    before = len(problems)
    if not config.domains:
        problems.append(f"{prefix}.domains: a tenant needs at least one own domain")
    plugin_set = None
    if config.plugin_set is not None:
        plugin_set = registry.plugin_sets.get(config.plugin_set)
        if plugin_set is None:
            known = ", ".join(registry.plugin_sets) or "none"
            problems.append(
                f"{prefix}.plugin_set: unknown plugin set {config.plugin_set!r} (known: {known})"
            )
    domain_sets: dict[str, DomainSet] = {}
    for key, exact, subdomains in (
        ("domains", config.domains, ()),
        ("internal_domains",
         (*config.internal_domains, *(plugin_set.internal_domains if plugin_set else ())), ()),
        ("internal_subdomains", (),
         (*config.internal_subdomains, *(plugin_set.internal_subdomains if plugin_set else ()))),
    ):
        try:
            domain_sets[key] = DomainSet.build(exact, subdomains)
        except InvalidAddress as exc:
            where = f"plugin set {plugin_set.name!r}" if plugin_set and key != "domains" else prefix
            problems.append(f"{where}.{key}: {exc}")
    enabled = set(plugin_set.plugins if plugin_set else ()) | set(config.plugins)
    enabled -= set(config.disabled_plugins)
    set_known = config.plugin_set is None or plugin_set is not None
    if not enabled and set_known:
        problems.append(f"{prefix}: enables no plugins (set plugin_set or plugins)")
    elif set_known and not any(c.plugin in enabled for c in registry.classifiers.values()):
        problems.append(f"{prefix}: enables no classifier, so nothing would decide what needs "
                        "protection (enable recipient_scope at least)")
    for name in sorted(enabled):
        if name in registry.failures:
            problems.append(
                f"{prefix}: enables plugin {name!r}, which failed to load: "
                f"{registry.failures[name].error}"
            )
        elif name not in registry.plugins:
            problems.append(f"{prefix}: enables plugin {name!r}, which is not installed")
    protection = config.protection if config.protection is not None else (
        plugin_set.protection if plugin_set else ()
    )
    for name in protection:
        method = registry.protection_methods.get(name)
        if method is None:
            problems.append(f"{prefix}.protection: unknown protection method {name!r}")
        elif method.plugin not in enabled:
            problems.append(
                f"{prefix}.protection: method {name!r} belongs to plugin {method.plugin!r}, "
                "which this tenant does not enable"
            )
    channel = registry.delivery_channels.get(config.delivery_channel)
    if not set_known:
        pass  # everything below depends on the set; its problem is reported already
    elif channel is None:
        problems.append(
            f"{prefix}.delivery_channel: unknown delivery channel {config.delivery_channel!r}"
        )
    elif channel.plugin not in enabled:
        problems.append(
            f"{prefix}.delivery_channel: channel {config.delivery_channel!r} belongs to plugin "
            f"{channel.plugin!r}, which this tenant does not enable"
        )
    settings: dict[str, Any] = {}
    for name in config.settings:
        if name not in registry.config_sections:
            problems.append(f"{prefix}.settings.{name}: no loaded plugin reads this section")
    for name, section in registry.config_sections.items():
        if section.plugin not in enabled:
            continue
        layers = [
            plugin_set.settings.get(name, {}) if plugin_set else {},
            file.settings.get(name, {}),
            config.settings.get(name, {}),
        ]
        where = f"{prefix}.settings.{name}"
        merged = deep_merge(*layers)
        section_problems: list[str] = []
        _strict_types(merged, where, section_problems, section.type)
        if section_problems:
            problems += section_problems
            continue
        try:
            settings[name] = structure(merged, section.type, where, base_dir)
        except _StructureError as exc:
            problems += exc.problems
    notice_from = config.notice_from
    if notice_from is None and config.domains:
        notice_from = f"postmaster@{config.domains[0]}"
    if notice_from is not None:
        try:
            Address.parse(notice_from)
        except InvalidAddress as exc:
            problems.append(f"{prefix}.notice_from: {exc}")
    bounce_address: Address | None = None
    bounce_text = config.bounce_address
    if bounce_text is None and config.domains:
        bounce_text = f"{BOUNCE_LOCAL_PART}@{config.domains[0]}"
    if bounce_text:
        try:
            bounce_address = Address.parse(bounce_text)
        except InvalidAddress as exc:
            problems.append(f"{prefix}.bounce_address: {exc}")
        else:
            if "+" in bounce_address.local:
                problems.append(f"{prefix}.bounce_address: {bounce_text!r} must not contain '+' "
                                "(siegel adds '+TOKEN' to it)")
    zone: zoneinfo.ZoneInfo | None = None
    try:
        zone = time_zone(config.time_zone)
    except UnknownTimeZone as exc:
        problems.append(f"{prefix}.time_zone: {exc}")
    levels: dict[str, IdentityLevel] = {}
    for key in ("read_level", "write_level"):
        value = getattr(config, key)
        try:
            levels[key] = (IdentityLevel.of(value) if value is not None
                           else getattr(plugin_set, key, IdentityLevel.MAILBOX))
        except ValueError as exc:
            problems.append(f"{prefix}.{key}: {exc}")
    if len(problems) > before or zone is None:
        return None
    own = domain_sets["domains"]
    internal = DomainSet(
        own.exact | domain_sets["internal_domains"].exact,
        domain_sets["internal_subdomains"].with_subdomains,
    )
    return Tenant(
        id=tenant_id,
        name=config.name,
        own_domains=own,
        internal=internal,
        enabled_plugins=frozenset(enabled),
        protection=tuple(protection),
        delivery_channel=config.delivery_channel,
        language=config.language,
        notice_from=notice_from or "",
        settings=settings,
        time_zone=zone,
        bounce_address=bounce_address,
        read_level=levels["read_level"],
        write_level=levels["write_level"],
    )
