"""The configuration file: one TOML document, validated into frozen attrs objects.

Every error names the key path (``tenants.landkreis.settings.relay.port``) and what is wrong; unknown
keys are errors, because a misspelt security setting must not be silently ignored.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from siegel.addresses import (
    Address,
    internal_match,
    normalize_domain,
)
from siegel.config_errors import (
    ConfigError,
    ConfigPath,
    SettingError,
    _strict_types,
    _StructureError,
    deep_merge,
    raise_all,
    structure,
)
from siegel.config_schema import (
    DeliveryConfig,
    FileConfig,
    HttpApiConfig,
    ListenerConfig,
    PluginsConfig,
    StoreConfig,
    TenantConfig,
)
from siegel.tenants import BOUNCE_LOCAL_PART, Tenant, _check_overlaps, _resolve_tenant

if TYPE_CHECKING:
    from siegel.manager import PluginRegistry
    from siegel.portal.settings import PortalSettings

DEFAULT_CONFIG_NAME = "siegel.toml"
CONFIG_ENV = "SIEGEL_CONFIG"


@attrs.frozen(kw_only=True)
class Config:
    source: str
    base_dir: Path
    file: FileConfig
    tenants: Mapping[str, Tenant]
    portal: PortalSettings

    def portal_link(self, tenant: str, path: str) -> str:
        """An absolute link to a portal page of ``tenant`` (for mails)."""
        return f"{self.portal.base_url}/t/{tenant}{path}"

    @property
    def listeners(self) -> tuple[ListenerConfig, ...]:
        return self.file.listeners

    @property
    def store(self) -> StoreConfig:
        return self.file.store

    @property
    def delivery(self) -> DeliveryConfig:
        return self.file.delivery

    @property
    def http_api(self) -> HttpApiConfig:
        return self.file.http_api

    def path(self, value: str) -> Path:
        """A path from the file, relative to the file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def tenant_of_sender(self, sender: Address | None) -> Tenant | None:
        if sender is None:
            return None
        for tenant in self.tenants.values():
            if internal_match(tenant.own_domains, sender):
                return tenant
        return None

    def tenant_of_recipient(self, recipient: Address) -> Tenant | None:
        for tenant in self.tenants.values():
            if internal_match(tenant.own_domains, recipient):
                return tenant
        return None


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The configuration file's TOML, not yet validated (read once by :func:`siegel.bootstrap`
    for both ``[plugins] blocked`` and the configuration)."""
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(source, ["file not found (create one with 'siegel init')"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot read: {exc}"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None


def load_config(path: str | os.PathLike[str], registry: PluginRegistry) -> Config:
    """Read, validate and resolve a configuration file against the loaded plugins."""
    return config_from_file_data(read_config_file(path), path, registry)


def config_from_file_data(data: Mapping[str, Any], path: str | os.PathLike[str],
                          registry: PluginRegistry) -> Config:
    """Validate and resolve what :func:`read_config_file` read from ``path``."""
    return config_from_mapping(data, registry, source=str(path),
                               base_dir=Path(path).resolve().parent)


def _section(data: Any, cls: type[Any], where: str, base_dir: Path,
             problems: list[str]) -> Any | None:
    """One table structured into ``cls``, or None with its problems added to ``problems``."""
    if isinstance(data, Mapping) and attrs.has(cls):
        # Named here, not by cattrs: it reports unknown keys instead of the other problems.
        names = {field.name for field in attrs.fields(cls)}
        problems += [f"{where}.{key}: unknown key" for key in data if key not in names]
        data = {key: value for key, value in data.items() if key in names}
    before = len(problems)
    _strict_types(data, where, problems, cls)
    if len(problems) > before:
        return None
    try:
        section = structure(data, cls, where, base_dir)
    except _StructureError as exc:
        problems += exc.problems
        return None
    return section  # without its unknown keys: what it says is still checked further


def _table(data: Mapping[str, Any], key: str, problems: list[str]) -> Mapping[str, Any]:
    value = data.get(key, {})
    if isinstance(value, Mapping):
        return value
    problems.append(f"{key}: expected a table ([{key}]), got {type(value).__name__} {value!r}")
    return {}


def _file_config(data: Mapping[str, Any], base_dir: Path, problems: list[str]) -> FileConfig:
    """The file's tables, each checked on its own: a mistake in one does not hide the others.
    What cannot be used is left out (or left at its default); its problems are in ``problems``."""
    known = {field.name for field in attrs.fields(FileConfig)}
    problems += [f"{key}: unknown key" for key in data if key not in known]
    sections: dict[str, Any] = {}
    for key, cls in (("store", StoreConfig), ("delivery", DeliveryConfig),
                     ("plugins", PluginsConfig), ("http_api", HttpApiConfig)):
        section = _section(_table(data, key, problems), cls, key, base_dir, problems)
        if section is not None:
            sections[key] = section
    listeners_data = data.get("listeners", None)
    if listeners_data is not None:
        listeners: list[ListenerConfig] = []
        if not isinstance(listeners_data, list):
            problems.append("listeners: expected an array of tables ([[listeners]]), got "
                            f"{type(listeners_data).__name__}")
            listeners_data = []
        for index, item in enumerate(listeners_data):
            where = f"listeners[{index}]"
            if not isinstance(item, Mapping):
                problems.append(f"{where}: expected a table, got {type(item).__name__}")
                continue
            listener = _section(item, ListenerConfig, where, base_dir, problems)
            if listener is not None:
                listeners.append(listener)
        sections["listeners"] = tuple(listeners)
    sections["portal"] = dict(_table(data, "portal", problems))
    settings: dict[str, dict[str, Any]] = {}
    for name, value in _table(data, "settings", problems).items():
        if isinstance(value, Mapping):
            settings[name] = dict(value)
        else:
            problems.append(f"settings.{name}: expected a table, got {type(value).__name__}")
    sections["settings"] = settings
    tenants: dict[str, TenantConfig] = {}
    for tenant_id, value in _table(data, "tenants", problems).items():
        where = f"tenants.{tenant_id}"
        if not isinstance(value, Mapping):
            problems.append(f"{where}: expected a table, got {type(value).__name__}")
            continue
        tenant = _section(value, TenantConfig, where, base_dir, problems)
        if tenant is not None:
            tenants[tenant_id] = tenant
    sections["tenants"] = tenants
    return FileConfig(**sections)


def config_from_mapping(
    data: Mapping[str, Any], registry: PluginRegistry, *, source: str, base_dir: Path
) -> Config:
    """Check everything and raise one :class:`ConfigError` listing every problem found."""
    problems: list[str] = []
    file = _file_config(data, base_dir, problems)
    tenant_ids = list(_table(data, "tenants", []))
    tenants: dict[str, Tenant] = {}
    for tenant_id, tenant_config in file.tenants.items():
        tenant = _resolve_tenant(tenant_id, tenant_config, file, registry, problems, base_dir)
        if tenant is not None:
            tenants[tenant_id] = tenant
    _check_globals(file, registry, problems)
    _check_overlaps(tenants, problems)
    if not tenant_ids:
        problems.append("tenants: at least one tenant is needed ([tenants.ID] with name and domains)")
    listeners_data = data.get("listeners", [])
    for index, listener in enumerate(listeners_data if isinstance(listeners_data, list) else []):
        users_file = listener.get("auth_users_file") if isinstance(listener, Mapping) else None
        if isinstance(users_file, str):
            path = Path(users_file).expanduser()
            _check_users_file(f"listeners[{index}].auth_users_file",
                              path if path.is_absolute() else base_dir / path,
                              tenant_ids, tenants, problems)
    portal = _portal_settings(file, base_dir, problems)
    if problems:
        raise ConfigError(source, problems)
    assert portal is not None
    return Config(source=source, base_dir=base_dir, file=file, tenants=tenants, portal=portal)


def _portal_settings(file: FileConfig, base_dir: Path, problems: list[str]) -> PortalSettings | None:
    from siegel.portal.settings import PortalSettings

    before = len(problems)
    _strict_types(file.portal, "portal", problems, PortalSettings)
    if len(problems) > before:
        return None
    try:
        settings: PortalSettings = structure(file.portal, PortalSettings, "portal", base_dir)
    except _StructureError as exc:
        problems += exc.problems
        return None
    return settings


def _check_users_file(where: str, path: Path, tenant_ids: list[str],
                      tenants: Mapping[str, Tenant], problems: list[str]) -> None:
    """A listener's ``auth_users_file``: every line, and the tenants and senders it names."""
    from siegel.smtp_auth import UsersFileError, read_users

    try:
        users = read_users(path)
    except UsersFileError as exc:
        problems += [f"{where}: {exc.path}: {p}" for p in exc.problems]
        return
    for user in users.values():
        if user.tenant not in tenant_ids:
            problems.append(f"{where}: user {user.name!r}: unknown tenant "
                            f"{user.tenant!r} (known: {', '.join(tenant_ids) or 'none'})")
            continue
        tenant = tenants.get(user.tenant)
        if tenant is None:
            continue  # the tenant's own problems are reported
        for sender in user.senders:
            if not tenant.own_domains.match(Address.parse(sender).domain):
                problems.append(f"{where}: user {user.name!r}: sender {sender} "
                                f"is not in a domain of tenant {tenant.id!r}")


def _check_globals(file: FileConfig, registry: PluginRegistry, problems: list[str]) -> None:
    for name in file.settings:
        if name not in registry.config_sections:
            problems.append(f"settings.{name}: no loaded plugin reads this section")


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_NAME))


__all__ = [
    "BOUNCE_LOCAL_PART",
    "CONFIG_ENV",
    "DEFAULT_CONFIG_NAME",
    "Config",
    "ConfigError",
    "ConfigPath",
    "DeliveryConfig",
    "HttpApiConfig",
    "ListenerConfig",
    "SettingError",
    "StoreConfig",
    "Tenant",
    "TenantConfig",
    "deep_merge",
    "load_config",
    "normalize_domain",
    "raise_all",
]
