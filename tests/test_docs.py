"""The documentation is checked like code: every hook and every configuration key is documented,
the docs build without warnings, and the plugin tutorial (docs/examples/) works as printed."""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
import tomllib
import typing
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import attrs
import pytest

from siegel import hookspecs
from siegel.config import (
    DeliveryConfig,
    HttpApiConfig,
    ListenerConfig,
    StoreConfig,
    TenantConfig,
)
from siegel.manager import PluginRegistry
from siegel.portal import PortalSettings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
TUTORIAL_PLUGIN = EXAMPLES / "health_data_plugin.py"

# -- hooks ------------------------------------------------------------------------------------

HOOK_NAMES = sorted(
    name for name, value in vars(hookspecs).items()
    if name.startswith("siegel_") and inspect.isfunction(value)
)


def test_hook_names_are_found():
    # Guards the parametrization below: an empty list would silently test nothing.
    assert "siegel_register_classifiers" in HOOK_NAMES
    assert len(HOOK_NAMES) >= 9


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_plugin_hooks_are_documented(hook):
    assert (getattr(hookspecs, hook).__doc__ or "").strip(), f"{hook} has no docstring"
    lines = {line.strip() for line in (DOCS / "hooks.rst").read_text(encoding="utf-8").splitlines()}
    assert f".. autofunction:: siegel.hookspecs.{hook}" in lines, (
        f"docs/hooks.rst has no '.. autofunction:: siegel.hookspecs.{hook}'")


# -- configuration keys -------------------------------------------------------------------------


def _attrs_classes_in(annotation: object) -> Iterator[type]:
    """The attrs classes an annotation names, also inside tuple[...], X | None and the like."""
    if isinstance(annotation, type) and attrs.has(annotation):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _attrs_classes_in(argument)


def _keys(cls: type, where: str) -> Iterator[tuple[str, str]]:
    """(where, key) for every field of an attrs settings class, and of the classes it nests."""
    for field in attrs.fields(attrs.resolve_types(cls)):
        if not field.init:  # derived state (e.g. loaded certificates), not a key in the file
            continue
        yield where, field.name
        for nested in _attrs_classes_in(field.type):
            yield from _keys(nested, f"{where}.{field.name}")


def _documented_keys() -> list[tuple[str, str]]:
    keys = [
        *_keys(ListenerConfig, "listeners"),
        *_keys(StoreConfig, "store"),
        *_keys(DeliveryConfig, "delivery"),
        *_keys(TenantConfig, "tenants.ID"),
        *_keys(PortalSettings, "portal"),
        *_keys(HttpApiConfig, "http_api"),
    ]
    registry = PluginRegistry.load()
    for name, section in registry.config_sections.items():
        info = registry.plugins.get(section.plugin)
        if info is not None and info.origin == "builtin":
            keys += _keys(section.type, f"settings.{name}")
    return keys


CONFIG_KEYS = _documented_keys()


def test_config_keys_are_found():
    where = {w for w, _key in CONFIG_KEYS}
    assert {"listeners", "store", "delivery", "tenants.ID", "settings.relay",
            "settings.content_rules.rules"} <= where


@pytest.mark.parametrize(("where", "key"), CONFIG_KEYS, ids=[f"{w}.{k}" for w, k in CONFIG_KEYS])
def test_config_keys_are_documented(where, key):
    text = (DOCS / "configuration.rst").read_text(encoding="utf-8")
    assert f"``{key}``" in text, f"docs/configuration.rst does not mention ``{key}`` ({where})"


# -- the build ----------------------------------------------------------------------------------


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "html" / "_images" / "pipeline.svg").is_file()


def test_pipeline_picture_is_well_formed_svg():
    root = ET.parse(DOCS / "_static" / "pipeline.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "_static/pipeline.svg" in (DOCS / "architecture.rst").read_text(encoding="utf-8")


# -- the plugin tutorial --------------------------------------------------------------------------


@pytest.fixture
def tutorial_plugin(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """docs/examples/health_data_plugin.py, imported by path under its own name."""
    monkeypatch.delitem(sys.modules, "health_data_plugin", raising=False)
    spec = importlib.util.spec_from_file_location("health_data_plugin", TUTORIAL_PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "health_data_plugin", module)
    spec.loader.exec_module(module)
    return module


def test_tutorial_plugin_registers_what_the_tutorial_says(tutorial_plugin):
    registry = PluginRegistry.load(entry_points=False, extra=[("health_data", tutorial_plugin)])
    assert registry.config_sections["health_data"].type is tutorial_plugin.HealthDataSettings
    assert registry.classifiers["health_data"].plugin == "health_data"
    assert registry.rewriters["health_data_private"].plugin == "health_data"


def test_tutorial_entry_point_is_found_by_siegel(tutorial_plugin, tmp_path, monkeypatch):
    """Install the tutorial's pyproject.toml entry points as a distribution on sys.path."""
    project = tomllib.loads((EXAMPLES / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    entry_points = project["entry-points"]["siegel"]
    site = tmp_path / "site"
    dist_info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (dist_info / "entry_points.txt").write_text(
        "[siegel]\n" + "".join(f"{name} = {target}\n" for name, target in entry_points.items()))
    monkeypatch.syspath_prepend(str(site))

    registry = PluginRegistry.load()
    assert entry_points == {"health_data": "health_data_plugin"}
    info = registry.plugins["health_data"]
    assert (info.origin, info.distribution) == ("entry point", project["name"])
    assert registry.classifiers["health_data"].plugin == "health_data"
    assert not registry.failures


def test_tutorial_tests_pass():
    """Run docs/examples/ as the tutorial tells a plugin author to: pytest in the project folder,
    with its own pyproject.toml and conftest.py."""
    pytest.importorskip("pytest_asyncio")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES)],
        cwd=EXAMPLES, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout, result.stdout
