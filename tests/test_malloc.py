"""glibc's memory-map threshold is pinned by ``siegel serve`` (see siegel.malloc)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from siegel.malloc import pin_mmap_threshold

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")


def _in_a_fresh_process(code: str, **env: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={"PATH": "/usr/bin:/bin", **env}).stdout.strip()


@glibc
def test_the_threshold_is_pinned() -> None:
    assert _in_a_fresh_process(
        "from siegel.malloc import pin_mmap_threshold; print(pin_mmap_threshold())") == "True"


@glibc
def test_an_operators_own_setting_is_left_alone() -> None:
    assert _in_a_fresh_process(
        "from siegel.malloc import pin_mmap_threshold; print(pin_mmap_threshold())",
        MALLOC_MMAP_THRESHOLD_="65536") == "False"


@glibc
def test_a_freed_large_buffer_no_longer_raises_the_threshold() -> None:
    """Without the pin, freeing a 16 MB block makes glibc serve the next 4 MB from the heap, which
    it keeps once freed; with it, that block is mapped and given back: RSS drops again."""
    code = """
import sys
from siegel.malloc import pin_mmap_threshold
if sys.argv[1:] == ["pin"]:
    pin_mmap_threshold()
def rss_kb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])
block = bytearray(16 << 20); del block          # raises glibc's threshold unless pinned
below = [bytearray(1024) for _ in range(100)]    # from malloc's heap (over pymalloc's 512 B)
buffers = [bytearray(4 << 20) for _ in range(8)] # 32 MB of 4 MB buffers, touched
above = [bytearray(1024) for _ in range(100)]    # keeps the heap's top in use
before = rss_kb()
del buffers
print(before - rss_kb())
"""
    freed_pinned = int(subprocess.run([sys.executable, "-c", code, "pin"], capture_output=True,
                                      text=True, check=True).stdout)
    freed_unpinned = int(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                        text=True, check=True).stdout)
    assert freed_pinned > 30_000  # KB: all 32 MB given back
    assert freed_unpinned < 1_000  # kept by the process


def test_elsewhere_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", "1.2"))
    assert pin_mmap_threshold() is False
