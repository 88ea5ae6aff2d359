"""Sphinx configuration for the siegel documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html``; CI treats every warning
as an error. Only extensions that ship with Sphinx are used, and nothing is fetched from the
network (no intersphinx).
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

import siegel

project = "siegel"
author = "siegel developers"
project_copyright = "siegel developers, EUPL-1.2"
release = siegel.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc"]

language = "en"
root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []
pygments_style = "sphinx"

html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"siegel {release}"
html_theme_options = {"description": "Secure mail gateway for public administration"}

# -- autodoc ---------------------------------------------------------------------------------------
# siegel's registration objects and data model are attrs classes. Their generated ``__init__`` has
# one keyword argument per field, and the annotations are strings (``from __future__ import
# annotations``) that name classes imported only for type checking (``Tenant``). Showing the types
# in the description instead of the signature keeps the signatures readable and means autodoc
# never has to evaluate those strings, so no warning depends on what can be imported at build
# time. No warning type is suppressed.
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"
add_module_names = False
python_use_unqualified_type_names = True


def _resolve_public_alias(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve ``siegel.Finding`` (the public name the docstrings use) to where the object is
    documented (``siegel.model.Finding``).

    Everything a plugin needs is importable from ``siegel``; the reference pages document each
    object once, under the module that defines it. Without this, cross-references written with the
    public name would render as plain text.
    """
    if node.get("refdomain") != "py":
        return None
    target: str = node.get("reftarget", "")
    if not target.startswith("siegel."):
        return None
    name, _, rest = target.removeprefix("siegel.").partition(".")
    obj = getattr(siegel, name, None)
    module = getattr(obj, "__module__", None)
    if module is None or module == "siegel" or not hasattr(obj, "__qualname__"):
        return None
    real = f"{module}.{obj.__qualname__}" + (f".{rest}" if rest else "")
    if real == target:
        return None
    domain = env.get_domain("py")
    new_node = node.deepcopy()
    new_node["reftarget"] = real
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], real,
                               new_node, contnode)


class SiegelHelp(SphinxDirective):
    """``.. siegel-help:: queue list`` inserts the output of ``siegel queue list --help``.

    The text comes from the command line itself (80 columns), so the reference cannot drift from
    the code. It is built as ``siegel`` builds it, so commands of the built-in plugins (``certs``)
    are included.
    """

    optional_arguments = 3

    def run(self) -> list[nodes.Node]:
        from click.testing import CliRunner

        from siegel.cli import build_cli

        cli = build_cli()
        args = [*self.arguments, "--help"]
        result = CliRunner().invoke(cli, args, prog_name="siegel", terminal_width=80)
        if result.exit_code != 0:
            raise self.error(f"siegel {' '.join(args)} failed: {result.output}")
        text = f"$ siegel {' '.join(args)}\n{result.output.rstrip()}"
        block = nodes.literal_block(text, text)
        block["language"] = "console"
        return [block]


def setup(app: Any) -> dict[str, Any]:
    app.connect("missing-reference", _resolve_public_alias)
    app.add_directive("siegel-help", SiegelHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
