"""The configuration file: one TOML document, validated into frozen attrs objects.

Every error names the key path (``tenants.landkreis.settings.relay.port``) and what is wrong; unknown
keys are errors, because a misspelt security setting must not be silently ignored.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
import zoneinfo
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from siegel.addresses import (
    Address,
    DomainSet,
    InvalidAddress,
    internal_match,
    normalize_domain,
)
from siegel.localtime import DEFAULT_TIME_ZONE, UnknownTimeZone, format_moment, time_zone

if TYPE_CHECKING:
    from siegel.manager import PluginRegistry
    from siegel.portal.settings import PortalSettings

DEFAULT_CONFIG_NAME = "siegel.toml"
#: The local part of a tenant's default ``bounce_address``.
BOUNCE_LOCAL_PART = "siegel-bounce"
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


def raise_all(problems: list[SettingError]) -> None:
    """Raise every problem a settings class found (in ``__attrs_post_init__``), not only the
    first: one :class:`SettingError`, or an :class:`ExceptionGroup` of several."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ExceptionGroup("settings problems", problems)


def _check_fields(instance: Any, problems: list[SettingError] | None = None) -> None:
    """Run every field's check (``metadata["check"]``) and raise all problems found (with
    ``problems`` found by the class itself), so that a table with two wrong values gets two
    messages."""
    problems = list(problems or ())
    for field in attrs.fields(type(instance)):
        check = field.metadata.get("check")
        if check is None:
            continue
        try:
            check(instance, field, getattr(instance, field.name))
        except SettingError as exc:
            problems.append(exc)
    raise_all(problems)


def _checked(default: Any, check: Any) -> Any:
    """A field whose value ``check`` validates in :func:`_check_fields`."""
    return attrs.field(default=default, metadata={"check": check})


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
    port: int = _checked(10025, _port)
    #: Largest message accepted, in bytes; larger ones get 552 before anything is stored.
    max_message_size: int = _checked(50 * 1024 * 1024, _positive)
    #: Largest header block (all header fields up to the blank line), in bytes; a message with a
    #: larger one gets 552 at the end of DATA. Postfix's header_size_limit is 100 kB too.
    max_header_size: int = _checked(100 * 1024, _positive)
    max_recipients: int = _checked(100, _positive)
    #: Client networks allowed to send; everyone else gets 554. siegel is never an open relay.
    allowed_clients: tuple[str, ...] = _checked(("127.0.0.0/8", "::1/128"), _networks)
    #: "off", "optional" (offered) or "required" (no MAIL before STARTTLS).
    starttls: Literal["off", "optional", "required"] = "off"
    #: TLS from the first byte (SMTPS, usually port 465) instead of STARTTLS.
    implicit_tls: bool = False
    tls_certificate: ConfigPath | None = None
    tls_key: ConfigPath | None = None
    hostname: str | None = None
    #: Users who may authenticate (SMTP AUTH PLAIN/LOGIN, only over TLS) and then send from
    #: outside ``allowed_clients`` as their tenant's senders; see :mod:`siegel.smtp_auth`.
    auth_users_file: ConfigPath | None = None
    #: Failed AUTH attempts per client address within the window before AUTH is refused.
    auth_max_failures: int = _checked(5, _positive)
    auth_failure_window_seconds: float = _checked(900.0, _positive)

    def __attrs_post_init__(self) -> None:
        problems = []
        has_keys = bool(self.tls_certificate and self.tls_key)
        if self.starttls != "off" and not has_keys:
            problems.append(SettingError(
                "starttls", f"{self.starttls!r} needs tls_certificate and tls_key"))
        if self.implicit_tls:
            if not has_keys:
                problems.append(SettingError("implicit_tls", "needs tls_certificate and tls_key"))
            if self.starttls != "off":
                problems.append(SettingError(
                    "implicit_tls", 'the connection is encrypted from the start; set starttls = '
                    '"off"'))
        if self.auth_users_file is not None and not self.tls:
            problems.append(SettingError(
                "auth_users_file", "SMTP AUTH is offered only over TLS; set starttls (with "
                "tls_certificate and tls_key) or implicit_tls"))
        _check_fields(self, problems)

    @property
    def tls(self) -> bool:
        """Whether this listener can speak TLS (STARTTLS or implicit)."""
        return self.implicit_tls or self.starttls != "off"


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
    retention_days: float = _checked(7.0, _positive)

    def __attrs_post_init__(self) -> None:
        _check_fields(self)


@attrs.frozen(kw_only=True)
class DeliveryConfig:
    """Retries, concurrency and time-outs of the pipeline (``[delivery]``)."""

    concurrency: int = _checked(8, _positive)
    first_retry_seconds: float = _checked(60.0, _positive)
    max_retry_seconds: float = _checked(3600.0, _positive)
    #: A copy still undeliverable after this long fails and the sender is told.
    give_up_after_hours: float = _checked(120.0, _positive)
    classify_timeout_seconds: float = _checked(30.0, _positive)
    #: A copy with a larger header block (its own or a MIME part's) is quarantined unread.
    max_header_size: int = _checked(100 * 1024, _positive)
    protect_timeout_seconds: float = _checked(120.0, _positive)
    deliver_timeout_seconds: float = _checked(300.0, _positive)
    #: A copy whose processing was started this many times without finishing (the process
    #: crashed, hung or was stopped each time) is quarantined as a poison message at the next.
    max_processing_starts: int = _checked(3, _positive)
    #: A copy whose protection method answered "retry later" this many times in a row is
    #: quarantined with the method's reason.
    max_protect_retries: int = _checked(3, _positive)
    #: ``siegel serve`` ends itself (status 75, for the supervisor to restart it) when its event
    #: loop has not answered for this long: a plugin computing without awaiting.
    stall_exit_seconds: float = _checked(300.0, _positive)
    #: How long a worker may hold a claimed job before another may take it over.
    lease_seconds: float = _checked(900.0, _positive)
    poll_seconds: float = _checked(5.0, _positive)

    def __attrs_post_init__(self) -> None:
        _check_fields(self)


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
    #: The IANA time zone in which times in mails and portal pages are shown.
    time_zone: str = DEFAULT_TIME_ZONE
    #: Sender address of notices; default ``postmaster@`` the first own domain.
    notice_from: str | None = None
    #: Where bounces of invitations go back to (VERP, ``LOCAL+TOKEN@DOMAIN``); default
    #: ``siegel-bounce@`` the first own domain; "" sends them with the null sender.
    bounce_address: str | None = None
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
    time_zone: zoneinfo.ZoneInfo = attrs.field(factory=lambda: zoneinfo.ZoneInfo(DEFAULT_TIME_ZONE))
    #: The base of VERP envelope senders for mails about held copies; None: null sender.
    bounce_address: Address | None = None

    def format_time(self, moment: datetime, language: str | None = None) -> str:
        """``moment`` as a person of this tenant reads it, in its time zone with the zone named:
        "3. Dezember 2026, 17:05 Uhr (MEZ)" / "3 December 2026, 17:05 CET"."""
        return format_moment(moment, self.time_zone, language or self.language)


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
            if internal_match(tenant.own_domains, sender):
                return tenant
        return None

    def tenant_of_recipient(self, recipient: Address) -> Tenant | None:
        for tenant in self.tenants.values():
            if internal_match(tenant.own_domains, recipient):
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
                     ("plugins", PluginsConfig)):
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
    "raise_all",
]
