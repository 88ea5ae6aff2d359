"""The settings toolkit: validators for settings classes (the core's, the portal's and the
plugins'), each raising :class:`~siegel.SettingError` with the field's name, so that the message
carries the whole key path (``tenants.kreis.settings.relay.port: must be ...``).

Use them as attrs validators (the first problem stops the class), or, to report every problem of
a table at once, declare the fields with :func:`checked` and call :func:`check_fields` in
``__attrs_post_init__`` (with the problems the class found itself)::

    import attrs
    from siegel import ConfigPath
    from siegel.settings import check_fields, checked, port, positive, readable_file

    @attrs.frozen(kw_only=True)
    class ArchiveSettings:
        host: str = "archiv.behoerde.example"
        port: int = checked(443, port)
        timeout_seconds: float = checked(30.0, positive)
        ca_file: ConfigPath | None = checked(None, readable_file)

        def __attrs_post_init__(self) -> None:
            check_fields(self)
"""

from __future__ import annotations

import ipaddress
from typing import Any

import attrs

from siegel.addresses import Address, InvalidAddress
from siegel.config_errors import ConfigPath, SettingError, raise_all
from siegel.config_errors import _check_fields as check_fields
from siegel.config_errors import _checked as checked


def positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """A number greater than 0 (a size, a count, a time limit in seconds)."""
    if value <= 0:
        raise SettingError(attribute.name, f"must be greater than 0, not {value}")


def not_negative(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """A number that may be 0 (0 usually switches something off)."""
    if value < 0:
        raise SettingError(attribute.name, f"must be 0 or more, not {value}")


def port(_instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    """A TCP port to connect to: 1 to 65535."""
    if not 0 < value < 65536:
        raise SettingError(attribute.name, f"must be between 1 and 65535, not {value}")


def listen_port(_instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    """A TCP port to listen on: 0 to 65535 (0: any free port)."""
    if not 0 <= value <= 65535:
        raise SettingError(attribute.name, f"must be between 0 and 65535, not {value}")


def networks(_instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    """IP addresses or networks (``192.0.2.0/24``, ``::1``)."""
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise SettingError(attribute.name,
                               f"{item!r} is not an address or network: {exc}") from None


def readable_file(_instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    """A file siegel can open for reading (``None``: not set). The message names the file and the
    reason, never its content."""
    if value is None:
        return
    try:
        with open(value, "rb"):
            pass
    except OSError as exc:
        raise SettingError(attribute.name,
                           f"cannot read {value}: {exc.strerror or type(exc).__name__}") from None


def address(_instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    """An e-mail address (``None``: not set)."""
    if value is None:
        return
    try:
        Address.parse(value)
    except InvalidAddress as exc:
        raise SettingError(attribute.name, f"{value!r} is not an e-mail address: {exc}") from None


__all__ = [
    "ConfigPath",
    "SettingError",
    "address",
    "check_fields",
    "checked",
    "listen_port",
    "networks",
    "not_negative",
    "port",
    "positive",
    "raise_all",
    "readable_file",
]
