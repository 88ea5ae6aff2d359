"""Shared pieces of the PIN letter tests."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from siegel import AuditEvent, hookimpl
from siegel.plugins.pin_letters.postal import PostalAddress

ANNA = "anna@example.net"
BERND = "bernd@example.net"
PIN_TEXT = re.compile(r"PIN:\s+([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})")
CONFIG: dict[str, Any] = {"tenants": {"test": {"plugins": ["pin_letters"]}}}

HOME = PostalAddress(name="Anna Müller", supplement="c/o Weiß", street="Hauptstraße 5a",
                     postcode="37073", city="Göttingen")


class AuditRecorder:
    """Collects what ``siegel_audit_event`` receives."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    @hookimpl
    def siegel_audit_event(self, event: AuditEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


def pdf_text(path: Path) -> str:
    """What poppler's pdftotext reads from the PDF (reading order, page by page)."""
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          text=True, check=True, timeout=60).stdout


def pdf_pages(path: Path) -> list[str]:
    return pdf_text(path).split("\f")[:-1]


def qpdf_check(path: Path) -> str:
    result = subprocess.run(["qpdf", "--check", str(path)], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
