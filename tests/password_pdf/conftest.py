"""Fixtures for the password_pdf tests: one realistic encrypted message, real PDF tools."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from password_pdf_helpers import PASSWORD, TOOLS, make_message

from siegel.plugins.password_pdf import (
    Letterhead,
    RecipientKey,
    derive_recipient_key,
    render_encrypted,
)


@pytest.fixture(autouse=True, scope="session")
def _pdf_tools_present() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        # These tests are about what real PDF tools see; without the tools they prove
        # nothing, so fail loudly instead of skipping quietly.
        pytest.fail(f"password_pdf tests need {', '.join(missing)} (Debian: qpdf, poppler-utils)")


@pytest.fixture(scope="session")
def letterhead() -> Letterhead:
    return Letterhead(
        tenant_name="Stadt Köln – Ordnungsamt",
        address_lines=("Willy-Brandt-Platz 2", "50679 Köln"),
    )


@pytest.fixture(scope="session")
def recipient_key() -> RecipientKey:
    return derive_recipient_key(PASSWORD)


@pytest.fixture(scope="session")
def encrypted_pdf(
    tmp_path_factory: pytest.TempPathFactory, letterhead: Letterhead, recipient_key: RecipientKey
) -> Path:
    """The standard message rendered and encrypted once for all read-only checks."""
    path = tmp_path_factory.mktemp("encrypted") / "nachricht.pdf"
    path.write_bytes(render_encrypted(make_message(), letterhead=letterhead, key=recipient_key))
    return path


@pytest.fixture
def write_pdf(tmp_path: Path) -> Callable[[bytes, str], Path]:
    def write(data: bytes, name: str = "out.pdf") -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return write
