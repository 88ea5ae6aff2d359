"""The plugins and contrib rules shipped with siegel import only the public API: names in
``siegel.__all__`` and the modules in ``siegel.PUBLIC_MODULES`` (what they define without a
leading underscore, or their ``__all__``). Anything else they need must be exported first, so a
third-party plugin can do what a built-in one does."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import siegel

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "plugins").rglob("*.py"), *(ROOT / "contrib").rglob("*.py")])
OWN_PACKAGES = ("siegel.plugins", "siegel.contrib")


def siegel_imports(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line, module, name) for every absolute import of siegel; name None for ``import x``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "siegel" or alias.name.startswith("siegel."):
                    yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "siegel" or node.module.startswith("siegel.")):
            for alias in node.names:
                yield node.lineno, node.module, alias.name


def public_names(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    if exported is not None:
        return set(exported)
    return {name for name in vars(module) if not name.startswith("_")}


def problems_in(path: Path, shown_as: str) -> list[str]:
    found = []
    for line, module, name in siegel_imports(path):
        where = f"{shown_as}:{line}"
        if module.startswith(OWN_PACKAGES):
            continue  # a built-in plugin's own package, or a contrib rule building on another
        if module not in siegel.PUBLIC_MODULES:
            found.append(f"{where}: imports {module} (not a public module)")
        elif name is not None and name != "*" and name not in public_names(module):
            found.append(f"{where}: imports {name} from {module} (not exported)")
    return found


def test_sources_are_found():
    # Guards the test below: an empty list would check nothing.
    names = {p.relative_to(ROOT).as_posix() for p in SOURCES}
    assert {"plugins/smtp_relay.py", "contrib/district.py"} <= names
    assert any(True for p in SOURCES for _ in siegel_imports(p))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_plugins_import_only_the_public_api(path):
    assert problems_in(path, path.relative_to(ROOT).as_posix()) == []


def test_the_check_catches_an_inner_import(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("from siegel.store import StoreError\nfrom siegel import _private\n"
                      "from siegel.mime import subject_of\nimport siegel.runtime\n"
                      "from siegel.plugins.smime import plugin\n")
    assert problems_in(source, "probe.py") == [
        "probe.py:1: imports siegel.store (not a public module)",
        "probe.py:2: imports _private from siegel (not exported)",
        "probe.py:4: imports siegel.runtime (not a public module)",
    ]


def test_every_public_module_imports():
    for module in siegel.PUBLIC_MODULES:
        assert public_names(module), module


def test_the_embedding_api_is_public_and_typed():
    """An application embeds siegel with ``siegel.open`` (:mod:`siegel.embed`); what it gets
    back is exported and documented, and the package ships ``py.typed`` for its type checker."""
    from importlib import resources

    import siegel.embed

    assert "siegel.embed" in siegel.PUBLIC_MODULES
    assert siegel.open is siegel.embed.open and siegel.open_sync is siegel.embed.open_sync
    for name in ("Gateway", "MessageStatus", "RecipientStatus"):
        assert getattr(siegel, name) is getattr(siegel.embed, name)
    for name in siegel.embed.__all__:
        value = getattr(siegel.embed, name)
        if callable(value):
            assert value.__doc__, f"siegel.embed.{name} has no docstring"
    assert resources.files("siegel").joinpath("py.typed").is_file()
