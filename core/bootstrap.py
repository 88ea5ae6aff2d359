"""Putting the pieces together: plugins, then the configuration they validate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from siegel.config import Config, ConfigError, config_from_file_data, read_config_file
from siegel.manager import PluginRegistry


def blocked_plugins(path: Path) -> tuple[str, ...]:
    """``[plugins] blocked`` must be known before plugins load, i.e. before full validation."""
    return blocked_in(read_config_file(path), str(path))


def blocked_in(data: Mapping[str, Any], source: str) -> tuple[str, ...]:
    """``[plugins] blocked`` of the configuration file's TOML ``data``."""
    plugins = data.get("plugins", {})
    blocked = plugins.get("blocked", []) if isinstance(plugins, dict) else []
    if not isinstance(blocked, list) or not all(isinstance(b, str) for b in blocked):
        raise ConfigError(source, ["plugins.blocked: expected a list of plugin names"])
    return tuple(blocked)


def bootstrap(
    path: Path, *, extra_plugins: Iterable[tuple[str, object]] = (), entry_points: bool = True
) -> tuple[Config, PluginRegistry]:
    """Load the plugins (without the blocked ones), then the configuration; the file is read
    once."""
    data = read_config_file(path)
    registry = PluginRegistry.load(entry_points=entry_points, extra=extra_plugins,
                                   blocked=blocked_in(data, str(path)))
    return config_from_file_data(data, path, registry), registry
