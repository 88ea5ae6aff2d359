"""The event-loop watchdog of ``siegel serve``: the last resort against a stalled gateway.

Time limits end a plugin's wait at its next ``await``; code that computes without awaiting cannot
be interrupted, and while it runs on the event loop, the listener answers nobody. The pipeline does
its own CPU work on threads, but a plugin may not. If the loop does not answer for
``[delivery] stall_exit_seconds``, the watchdog (a thread of its own) writes where every thread is
(code locations only, never message content) to standard error and ends the process with exit
status 75 (``EX_TEMPFAIL``), so that the supervisor starts it again. The copy that was being
processed keeps its durable processing start: after ``max_processing_starts`` such ends it is
quarantined as a poison message instead of stalling the gateway again.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Exit status after a stall: EX_TEMPFAIL, "try again later" (systemd restarts on failure).
STALL_EXIT_STATUS = 75


def exit_after_stall(seconds: float) -> None:
    """What ``siegel serve`` does on a stall: say so, show where, end the process."""
    log.critical("the event loop has not answered for %.0f s (a plugin computing without "
                 "awaiting?); ending with status %d so that the supervisor restarts siegel",
                 seconds, STALL_EXIT_STATUS)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(STALL_EXIT_STATUS)


class LoopWatchdog:
    """Calls ``on_stall(seconds)`` (on its own thread) once the loop has not run a callback
    for ``stall_seconds``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stall_seconds: float,
                 on_stall: Callable[[float], None] = exit_after_stall) -> None:
        self.loop = loop
        self.stall_seconds = stall_seconds
        self.on_stall = on_stall
        self._last_beat = time.monotonic()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="siegel-watchdog", daemon=True)

    def _beat(self) -> None:
        self._last_beat = time.monotonic()

    def start(self) -> LoopWatchdog:
        self._last_beat = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        interval = min(1.0, self.stall_seconds / 4)
        while not self._stopped.wait(interval):
            try:
                self.loop.call_soon_threadsafe(self._beat)
            except RuntimeError:  # the loop is closed
                return
            silent = time.monotonic() - self._last_beat
            if silent > self.stall_seconds:
                self.on_stall(silent)
                return
