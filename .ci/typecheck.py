"""Run mypy on the package as it installs (``siegel`` = core/, ``siegel.plugins`` = plugins/,
``siegel.contrib`` = contrib/).

mypy cannot follow setuptools' package-dir mapping, so this builds a tree of symlinks with the
installed layout in a temporary folder and checks ``-p siegel`` there. Paths in mypy's messages are
shown relative to that tree (``siegel/plugins/x.py`` is ``plugins/x.py`` in the repository).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="siegel-mypy-") as tmp:
        package = Path(tmp) / "siegel"
        package.mkdir()
        for entry in (ROOT / "core").iterdir():
            if entry.name != "__pycache__":
                (package / entry.name).symlink_to(entry)
        (package / "plugins").symlink_to(ROOT / "plugins")
        (package / "contrib").symlink_to(ROOT / "contrib")
        command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                   "-p", "siegel", *sys.argv[1:]]
        return subprocess.run(command, cwd=tmp, check=False).returncode  # noqa: S603 (our own command line)


if __name__ == "__main__":
    sys.exit(main())
