"""Real-browser helpers for the portal tests: Debian's Chromium driven by Playwright, axe-core.

Needs ``/usr/bin/chromium`` (or ``SIEGEL_CHROMIUM``) and ``npm`` (axe-core is installed once into
pytest's cache folder); ``sh .ci/browser-packages`` installs both on Debian. Set
``SIEGEL_SKIP_BROWSER=1`` to skip the browser tests on a machine without them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

playwright_api = pytest.importorskip("playwright.async_api")

BROWSER_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("SIEGEL_SKIP_BROWSER") == "1",
                       reason="SIEGEL_SKIP_BROWSER=1"),
]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def chromium_path() -> str:
    path = os.environ.get("SIEGEL_CHROMIUM", "/usr/bin/chromium")
    if not Path(path).exists():
        pytest.fail(f"Chromium not found at {path}: run 'sh .ci/browser-packages' (Debian) or "
                    "set SIEGEL_CHROMIUM to a Chromium binary; SIEGEL_SKIP_BROWSER=1 skips these "
                    "tests", pytrace=False)
    return path


def axe_script(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> str:
    """axe-core's script, installed with npm once into pytest's cache folder."""
    cache = getattr(pytestconfig, "cache", None)
    folder = cache.mkdir("axe-core") if cache is not None else tmp_path_factory.mktemp("axe")
    script = Path(folder) / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install axe-core for the accessibility tests: run "
                        "'sh .ci/browser-packages' (Debian) or install Node.js with npm; "
                        "SIEGEL_SKIP_BROWSER=1 skips these tests", pytrace=False)
        result = subprocess.run(
            [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "axe-core@4"],
            capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0 or not script.exists():
            pytest.fail(f"'npm install axe-core@4' failed:\n{result.stdout}\n{result.stderr}",
                        pytrace=False)
    return script.read_text(encoding="utf-8")


@asynccontextmanager
async def browser_page(chromium: str, locale: str = "de-DE") -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(locale=locale, viewport={"width": 1024,
                                                                         "height": 800})
            page = await context.new_page()
            page.problems = []  # type: ignore[attr-defined]
            # Errors in the console: CSP violations ("Refused to apply inline style ...") and
            # script errors. The 403/404 pages we open on purpose are not problems.
            page.on("console", lambda message: message.type == "error"
                    and not message.text.startswith("Failed to load resource")
                    and page.problems.append(message.text))
            page.on("pageerror", lambda error: page.problems.append(str(error)))
            yield page
        finally:
            await browser.close()


async def axe_violations(page: Any, axe_source: str) -> list[str]:
    # Evaluated through the DevTools protocol, which the page's CSP does not govern (the page
    # itself may not run scripts).
    await page.evaluate(axe_source)
    result = await page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
    return [f"{v['id']}: {v['help']} at {[n['target'] for n in v['nodes']]}"
            for v in result["violations"]]


