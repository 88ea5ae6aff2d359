"""The configuration file: one TOML document, validated into frozen attrs objects.

Every error names the key path (``tenants.landkreis.settings.relay.port``) and what is wrong; unknown
keys are errors, because a misspelt security setting must not be silently ignored.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from siegel.addresses import Address, DomainSet, InvalidAddress, normalize_domain

if TYPE_CHECKING:
    from siegel.manager import PluginRegistry
    from siegel.portal.settings import PortalSettings

DEFAULT_CONFIG_NAME = "siegel.toml"
CONFIG_ENV = "SIEGEL_CONFIG"


class ConfigError(Exception):
    """The configuration is not usable. ``problems`` lists each one as ``key.path: what``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def __str__(self) -> str:
        lines = [f"{self.source}: configuration error" + ("s" if len(self.problems) > 1 else "")]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class ConfigPath(str):
    """A file or folder named in the configuration; relative paths are made absolute against the
    configuration file's folder when the file is loaded. Plugins use it for their settings too."""

    __slots__ = ()


class SettingError(ValueError):
    """Raised by a settings validator: ``key`` is the field the problem is in.

    Validators of attrs classes used for configuration raise this so that the error message carries
    the full key path (``tenants.t.settings.relay.port: ...``)."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise SettingError(attribute.name, f"must be greater than 0, not {value}")


def _port(_instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 <= value <= 65535:
        raise SettingError(attribute.name, f"must be between 0 and 65535, not {value}")


def _networks(_instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise SettingError(attribute.name, str(exc)) from None


@attrs.frozen(kw_only=True)
class ListenerConfig:
    """An SMTP listener (``[[listeners]]``)."""

    host: str = "127.0.0.1"
    port: int = attrs.field(default=10025, validator=_port)
    #: Largest message accepted, in bytes; larger ones get 552 before anything is stored.
    max_message_size: int = attrs.field(default=50 * 1024 * 1024, validator=_positive)
    #: Largest header block (all header fields up to the blank line), in bytes; a message with a
    #: larger one gets 552 at the end of DATA. Postfix's header_size_limit is 100 kB too.
    max_header_size: int = attrs.field(default=100 * 1024, validator=_positive)
    max_recipients: int = attrs.field(default=100, validator=_positive)
    #: Client networks allowed to send; everyone else gets 554. siegel is never an open relay.
    allowed_clients: tuple[str, ...] = attrs.field(
        default=("127.0.0.0/8", "::1/128"), validator=_networks
    )
    #: "off", "optional" (offered) or "required" (no MAIL before STARTTLS).
    starttls: Literal["off", "optional", "required"] = "off"
    tls_certificate: ConfigPath | None = None
    tls_key: ConfigPath | None = None
    hostname: str | None = None


# Relative to the configuration file's folder (resolved by Config.path).
_DEFAULT_DATABASE = ConfigPath("var/siegel.db")
_DEFAULT_KEY_FILE = ConfigPath("keys/store.key")


@attrs.frozen(kw_only=True)
class StoreConfig:
    """The durable message store (``[store]``)."""

    backend: Literal["sqlite"] = "sqlite"
    #: SQLite database file (relative paths are relative to the config file).
    path: ConfigPath = _DEFAULT_DATABASE
    #: The key that encrypts message content at rest; created by ``siegel init``.
    key_file: ConfigPath = _DEFAULT_KEY_FILE
    #: Content of finished (delivered, failed, expired) messages is destroyed after this many days.
    retention_days: float = attrs.field(default=7.0, validator=_positive)


@attrs.frozen(kw_only=True)
class DeliveryConfig:
    """Retries, concurrency and time-outs of the pipeline (``[delivery]``)."""

    concurrency: int = attrs.field(default=8, validator=_positive)
    first_retry_seconds: float = attrs.field(default=60.0, validator=_positive)
    max_retry_seconds: float = attrs.field(default=3600.0, validator=_positive)
    #: A copy still undeliverable after this long fails and the sender is told.
    give_up_after_hours: float = attrs.field(default=120.0, validator=_positive)
    classify_timeout_seconds: float = attrs.field(default=30.0, validator=_positive)
    #: A copy with a larger header block (its own or a MIME part's) is quarantined unread.
    max_header_size: int = attrs.field(default=100 * 1024, validator=_positive)
    protect_timeout_seconds: float = attrs.field(default=120.0, validator=_positive)
    deliver_timeout_seconds: float = attrs.field(default=300.0, validator=_positive)
    #: A copy whose processing was started this many times without finishing (the process
    #: crashed, hung or was stopped each time) is quarantined as a poison message at the next.
    max_processing_starts: int = attrs.field(default=3, validator=_positive)
    #: A copy whose protection method answered "retry later" this many times in a row is
    #: quarantined with the method's reason.
    max_protect_retries: int = attrs.field(default=3, validator=_positive)
    #: ``siegel serve`` ends itself (status 75, for the supervisor to restart it) when its event
    #: loop has not answered for this long: a plugin computing without awaiting.
    stall_exit_seconds: float = attrs.field(default=300.0, validator=_positive)
    #: How long a worker may hold a claimed job before another may take it over.
    lease_seconds: float = attrs.field(default=900.0, validator=_positive)
    poll_seconds: float = attrs.field(default=5.0, validator=_positive)


@attrs.frozen(kw_only=True)
class PluginsConfig:
    """Plugin loading (``[plugins]``)."""

    #: Plugin names not to load at all, built-in or third-party.
    blocked: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class TenantConfig:
    """One authority (``[tenants.ID]``), as written in the file."""

    name: str
    #: The tenant's own mail domains: mail from these (or to these) belongs to the tenant.
    domains: tuple[str, ...]
    #: Further domains whose recipients are inside the trusted network (exact match).
    internal_domains: tuple[str, ...] = ()
    #: Domains that are internal together with all their subdomains.
    internal_subdomains: tuple[str, ...] = ()
    plugin_set: str | None = None
    plugins: tuple[str, ...] = ()
    disabled_plugins: tuple[str, ...] = ()
    #: Protection methods in order of preference; default: the plugin set's.
    protection: tuple[str, ...] | None = None
    #: Channel for copies that may leave as they are, and for notices.
    delivery_channel: str = "smtp"
    language: Literal["de", "en"] = "de"
    #: Sender address of notices; default ``postmaster@`` the first own domain.
    notice_from: str | None = None
    settings: dict[str, dict[str, Any]] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class FileConfig:
    """The whole file, before plugins are consulted."""

    listeners: tuple[ListenerConfig, ...] = (ListenerConfig(),)
    store: StoreConfig = StoreConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    plugins: PluginsConfig = PluginsConfig()
    #: The recipient portal (``siegel.portal.PortalSettings``); validated after the rest.
    portal: dict[str, Any] = attrs.field(factory=dict)
    settings: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    tenants: dict[str, TenantConfig] = attrs.field(factory=dict)


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

    def path(self, value: str) -> Path:
        """A path from the file, relative to the file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def tenant_of_sender(self, sender: Address | None) -> Tenant | None:
        if sender is None:
            return None
        for tenant in self.tenants.values():
            if tenant.own_domains.match(sender.domain):
                return tenant
        return None

    def tenant_of_recipient(self, recipient: Address) -> Tenant | None:
        for tenant in self.tenants.values():
            if tenant.own_domains.match(recipient.domain):
                return tenant
        return None


_converter = cattrs.Converter(forbid_extra_keys=True)


def _sub_path(path: str, exc: BaseException) -> str:
    for note in getattr(exc, "__notes__", ()):
        name = getattr(note, "name", None)
        if name is not None:
            return f"{path}.{name}" if path else str(name)
        if hasattr(note, "index"):
            index = note.index
            if isinstance(index, str):
                return f"{path}.{index}" if path else index
            return f"{path}[{index}]"
    return path


def _messages(exc: BaseException, path: str) -> list[str]:
    """Turn cattrs' nested validation errors into ``key.path: what`` lines."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        problems: list[str] = []
        for inner in exc.exceptions:
            problems += _messages(inner, _sub_path(path, inner))
        return problems
    if isinstance(exc, ForbiddenExtraKeysError):
        return [f"{path}.{key}: unknown key" if path else f"{key}: unknown key"
                for key in sorted(exc.extra_fields)]
    if isinstance(exc, SettingError):
        return [f"{path}.{exc.key}: {exc}" if path else f"{exc.key}: {exc}"]
    if isinstance(exc, KeyError):
        return [f"{path}: required key is missing"]
    if isinstance(exc, ValueError | TypeError):
        text = str(exc) or type(exc).__name__
        if "invalid literal" in text or "could not convert" in text:
            text = f"invalid value ({text})"
        return [f"{path}: {text}"]
    if isinstance(exc, ExceptionGroup):
        return [p for inner in exc.exceptions for p in _messages(inner, path)]
    return [f"{path}: {type(exc).__name__}: {exc}"]


def _converter_for(base_dir: Path) -> cattrs.Converter:
    converter = _converter.copy()

    def config_path(value: Any, _type: Any) -> ConfigPath:
        if not isinstance(value, str):
            raise ValueError(f"expected a path, got {type(value).__name__} {value!r}")
        path = Path(value).expanduser()
        return ConfigPath(path if path.is_absolute() else base_dir / path)

    converter.register_structure_hook(ConfigPath, config_path)
    return converter


def structure(data: Any, cls: type[Any], path: str, base_dir: Path | None = None) -> Any:
    """Structure ``data`` into ``cls`` or raise :class:`ValueError` carrying ``key.path`` lines."""
    converter = _converter_for(base_dir or Path.cwd())
    try:
        return converter.structure(data, cls)
    except Exception as exc:
        raise _StructureError(_messages(exc, path)) from exc


class _StructureError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def deep_merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = deep_merge(merged[key], value)
            else:
                merged[key] = value
    return merged


def _strict_types(data: Any, path: str, problems: list[str], spec: type[Any]) -> None:
    """cattrs converts "25" to 25 and 1 to True; a config file that says port = "25" is a mistake
    worth naming, so scalar types are checked against the attrs field types first."""
    if not isinstance(data, Mapping) or not attrs.has(spec):
        return
    hints = attrs.resolve_types(spec)
    for field in attrs.fields(hints):
        if field.name not in data:
            continue
        value = data[field.name]
        expected = field.type
        where = f"{path}.{field.name}" if path else field.name
        if expected in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            problems.append(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        elif expected is int and isinstance(value, float):
            problems.append(f"{where}: expected a whole number, got {value!r}")
        elif expected is bool and not isinstance(value, bool):
            problems.append(f"{where}: expected true or false, got {value!r}")
        elif expected in (str, ConfigPath) and not isinstance(value, str):
            problems.append(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        elif attrs.has(expected):
            _strict_types(value, where, problems, expected)


def load_config(path: str | os.PathLike[str], registry: PluginRegistry) -> Config:
    """Read, validate and resolve a configuration file against the loaded plugins."""
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(source, ["file not found (create one with 'siegel init')"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot read: {exc}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    return config_from_mapping(data, registry, source=source, base_dir=Path(path).resolve().parent)


def config_from_mapping(
    data: Mapping[str, Any], registry: PluginRegistry, *, source: str, base_dir: Path
) -> Config:
    problems: list[str] = []
    for key, cls in (("store", StoreConfig), ("delivery", DeliveryConfig), ("plugins", PluginsConfig)):
        _strict_types(data.get(key, {}), key, problems, cls)
    for index, listener in enumerate(data.get("listeners", []) or []):
        _strict_types(listener, f"listeners[{index}]", problems, ListenerConfig)
    tenants_data = data.get("tenants", {})
    if isinstance(tenants_data, Mapping):
        for tenant_id, tenant in tenants_data.items():
            _strict_types(tenant, f"tenants.{tenant_id}", problems, TenantConfig)
    if problems:
        raise ConfigError(source, problems)
    try:
        file = structure(data, FileConfig, "", base_dir)
    except _StructureError as exc:
        raise ConfigError(source, [p.lstrip(".") for p in exc.problems]) from None
    tenants: dict[str, Tenant] = {}
    for tenant_id, tenant_config in file.tenants.items():
        tenant = _resolve_tenant(tenant_id, tenant_config, file, registry, problems, base_dir)
        if tenant is not None:
            tenants[tenant_id] = tenant
    _check_globals(file, registry, problems)
    _check_overlaps(tenants, problems)
    if not file.tenants:
        problems.append("tenants: at least one tenant is needed ([tenants.ID] with name and domains)")
    for index, listener in enumerate(file.listeners):
        if listener.starttls != "off" and not (listener.tls_certificate and listener.tls_key):
            problems.append(
                f"listeners[{index}].starttls: {listener.starttls!r} needs tls_certificate and tls_key"
            )
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


def _check_globals(file: FileConfig, registry: PluginRegistry, problems: list[str]) -> None:
    for name in file.settings:
        if name not in registry.config_sections:
            problems.append(f"settings.{name}: no loaded plugin reads this section")


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
    if len(problems) > before:
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
    )


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_NAME))


__all__ = [
    "Config",
    "ConfigError",
    "DeliveryConfig",
    "ListenerConfig",
    "SettingError",
    "StoreConfig",
    "Tenant",
    "TenantConfig",
    "load_config",
    "normalize_domain",
]
