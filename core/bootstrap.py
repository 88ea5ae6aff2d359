"""Putting the pieces together: plugins, then the configuration they validate."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path

from siegel.config import Config, ConfigError, load_config
from siegel.manager import PluginRegistry


def blocked_plugins(path: Path) -> tuple[str, ...]:
    """``[plugins] blocked`` must be known before plugins load, i.e. before full validation."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found (create one with 'siegel init')"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read: {exc}"]) from None
    plugins = data.get("plugins", {})
    blocked = plugins.get("blocked", []) if isinstance(plugins, dict) else []
    if not isinstance(blocked, list) or not all(isinstance(b, str) for b in blocked):
        raise ConfigError(str(path), ["plugins.blocked: expected a list of plugin names"])
    return tuple(blocked)


def bootstrap(
    path: Path, *, extra_plugins: Iterable[tuple[str, object]] = (), entry_points: bool = True
) -> tuple[Config, PluginRegistry]:
    registry = PluginRegistry.load(entry_points=entry_points, extra=extra_plugins,
                                   blocked=blocked_plugins(path))
    return load_config(path, registry), registry
