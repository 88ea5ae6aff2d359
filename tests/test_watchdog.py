"""The event-loop watchdog: a loop that stops answering is noticed; a busy but answering one
is not."""

from __future__ import annotations

import asyncio
import threading
import time

from siegel.watchdog import LoopWatchdog


async def test_a_loop_blocked_by_code_that_never_awaits_is_reported() -> None:
    stalls: list[float] = []
    reported = threading.Event()

    def on_stall(seconds: float) -> None:
        stalls.append(seconds)
        reported.set()

    watchdog = LoopWatchdog(asyncio.get_running_loop(), 0.4, on_stall).start()
    try:
        deadline = time.monotonic() + 10
        while not reported.is_set() and time.monotonic() < deadline:
            pass  # computing on the event loop without ever awaiting
        assert reported.is_set(), "the watchdog did not notice a loop blocked for 10 s"
        assert stalls[0] > 0.4
    finally:
        watchdog.stop()


async def test_a_loop_that_keeps_answering_is_left_alone() -> None:
    stalls: list[float] = []
    watchdog = LoopWatchdog(asyncio.get_running_loop(), 0.5, stalls.append).start()
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            time.sleep(0.05)  # short pieces of blocking work, each well inside the limit
            await asyncio.sleep(0)
        assert stalls == []
    finally:
        watchdog.stop()


def test_a_stalled_process_ends_with_status_75_and_says_where() -> None:
    """What ``siegel serve`` does: a process whose loop is blocked ends itself, so that the
    supervisor restarts it, and its log shows where it was stuck."""
    import subprocess
    import sys

    program = (
        "import asyncio, time\n"
        "from siegel.watchdog import LoopWatchdog\n"
        "def stuck_in_a_plugin():\n"
        "    while True:\n"
        "        time.sleep(0.01)\n"
        "async def main():\n"
        "    LoopWatchdog(asyncio.get_running_loop(), 0.5).start()\n"
        "    stuck_in_a_plugin()\n"
        "asyncio.run(main())\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 75, result.stderr
    assert "the event loop has not answered for" in result.stderr
    assert "stuck_in_a_plugin" in result.stderr
