"""Jinja2 environments: the portal's own templates, and one environment per plugin.

A plugin's templates live in ``portal_templates/`` next to the module that defines its endpoints
and may extend the portal's ``base.html`` and import ``forms.html``; a plugin's template of the
same name as a portal template wins for that plugin only. Autoescaping is on for everything, and
an undefined variable is an error rather than an empty string.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).parent / "templates"
PLUGIN_TEMPLATES = "portal_templates"
PLUGIN_LOCALES = "portal_locales"
#: Files a plugin's pages load (scripts, images), served as ``/static/plugins/PLUGIN/NAME``.
PLUGIN_STATIC = "portal_static"


def asset_folder(endpoint: Callable[..., Any], name: str) -> Path | None:
    """``name`` next to the module that defines ``endpoint``, if that folder exists."""
    module = inspect.getmodule(endpoint)
    if module is None:
        module = importlib.import_module(endpoint.__module__)
    file = getattr(module, "__file__", None)
    if not file:
        return None
    folder = Path(file).parent / name
    return folder if folder.is_dir() else None


def _environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    return environment


class Templates:
    def __init__(self, plugin_folders: Mapping[str, Sequence[Path]] | None = None) -> None:
        core = jinja2.FileSystemLoader(TEMPLATES)
        self._core = _environment(core)
        self._plugins = {
            plugin: _environment(jinja2.ChoiceLoader([jinja2.FileSystemLoader(list(folders)), core]))
            for plugin, folders in (plugin_folders or {}).items() if folders
        }

    def environment(self, plugin: str = "") -> jinja2.Environment:
        return self._plugins.get(plugin, self._core)

    def render(self, name: str, variables: Mapping[str, Any], plugin: str = "") -> str:
        return self.environment(plugin).get_template(name).render(variables)
