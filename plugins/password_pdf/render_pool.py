"""Where the gateway renders its PDFs: in worker processes, or on one thread beside the event loop.

Rendering is pure-Python CPU work. On a thread of the gateway process it takes turns with the event
loop at the interpreter lock, so while a PDF is rendered the gateway accepts, classifies and
delivers nothing, and a gateway never uses more than one core for PDFs. Worker processes
(``render_processes``, default 1; :mod:`.render_worker`) render beside the event loop on a core of
their own; the message goes to them as bytes and the encrypted PDF comes back as bytes, over a
pipe (never through a file). A worker is started when first needed and lives until the gateway
stops: :data:`RENDER_POOL` owns the render thread and the workers, and the plugin registers it as
the resource ``password-pdf-renderers``, whose stop ends them (``siegel serve``, the test harness
and a one-shot :meth:`~siegel.runtime.Runtime.run_until_idle` stop it). The pool is one per
process, not one per event loop: threads and processes are not bound to a loop. A render after the
stop starts them again.

Large messages are rendered on the gateway's own thread all the same: sending one to a worker
holds it several more times at once (pickled here, received and parsed there, the PDF pickled
back), which would break the memory budget of a large attachment for a gain that only counts with
many small messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

from siegel import Resource, Services
from siegel.worker import read_frame, stop_process, write_frame

from .encrypt import RecipientKey
from .render import Language, Letterhead, render_encrypted
from .signing import PdfSigning


class RenderFailed(Exception):
    """A worker could not render the message, or died while doing it."""


class WorkerDied(RenderFailed):
    """The worker process ended (killed, out of memory); it is replaced for the next message,
    and this one may be tried again."""


class _Worker:
    """One render worker process, used by one thread at a time."""

    def __init__(self) -> None:
        # -P: the working directory does not go on the worker's import path.
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "siegel.plugins.password_pdf.render_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._answer()  # "ready": started and warmed up

    def _answer(self) -> tuple[str, object]:
        assert self.process.stdout is not None
        payload = read_frame(self.process.stdout)
        if payload is None:
            code = self.process.wait()
            raise WorkerDied(f"the render worker ended (exit code {code})")
        answer: tuple[str, object] = pickle.loads(payload)  # noqa: S301 (our own child)
        return answer

    def render(self, raw: bytes, letterhead: Letterhead, key: RecipientKey, language: Language,
               signing: PdfSigning | None) -> bytes:
        assert self.process.stdin is not None
        request = pickle.dumps((raw, letterhead, key, language, signing),
                               protocol=pickle.HIGHEST_PROTOCOL)
        try:
            write_frame(self.process.stdin, request)
        except (BrokenPipeError, ValueError):
            raise WorkerDied("the render worker is gone") from None
        del request
        kind, value = self._answer()
        if kind != "pdf" or not isinstance(value, bytes):
            raise RenderFailed(f"the render worker failed: {value}")
        return value

    def stop(self) -> None:
        stop_process(self.process)


class _Pool:
    """``size`` workers, each driven by a thread of its own (the threads only wait on pipes)."""

    def __init__(self, size: int) -> None:
        self.threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="siegel-render")
        self.idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self.all: list[_Worker] = []
        self.size = size
        self._lock = threading.Lock()

    def _take(self) -> _Worker:
        with self._lock:
            if len(self.all) < self.size and self.idle.empty():
                worker = _Worker()
                self.all.append(worker)
                return worker
        return self.idle.get()

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            self.all.remove(worker)
        with contextlib.suppress(OSError):
            worker.process.kill()
        worker.stop()

    def render(self, raw: bytes, letterhead: Letterhead, key: RecipientKey, language: Language,
               signing: PdfSigning | None) -> bytes:
        worker = self._take()
        try:
            pdf = worker.render(raw, letterhead, key, language, signing)
        except WorkerDied:
            self._forget(worker)
            raise
        except RenderFailed:  # this message could not be rendered; the worker is fine
            self.idle.put(worker)
            raise
        except BaseException:
            self._forget(worker)  # the pipe may hold half a frame
            raise
        self.idle.put(worker)
        return pdf

    def stop(self) -> None:
        self.threads.shutdown(wait=True)
        with self._lock:
            workers, self.all = self.all, []
        for worker in workers:
            worker.stop()


class RenderPool:
    """The gateway's renderers: one thread for PDFs rendered in the gateway's process, and a pool
    of worker processes per ``render_processes`` setting, each started when first needed.
    :meth:`stop` ends them all (waiting for the renders under way)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: ThreadPoolExecutor | None = None
        self._pools: dict[int, _Pool] = {}

    def _in_gateway(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._thread is None:
                # More than one thread at it made each PDF about 40 % more expensive (they evict
                # each other's caches), so a gateway renders on its own thread one PDF at a time.
                self._thread = ThreadPoolExecutor(max_workers=1,
                                                  thread_name_prefix="siegel-render")
            return self._thread

    def _pool(self, processes: int) -> _Pool:
        with self._lock:
            pool = self._pools.get(processes)
            if pool is None:
                pool = self._pools[processes] = _Pool(processes)
            return pool

    def worker_pids(self) -> list[int]:
        """The process ids of the running render workers."""
        with self._lock:
            pools = list(self._pools.values())
        return [worker.process.pid for pool in pools for worker in list(pool.all)]

    def shutdown(self) -> None:
        """Stop the render thread and the worker processes, after the renders under way
        (blocks; they are started again when next needed)."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown(wait=True)
        for pool in pools:
            pool.stop()

    async def start(self, _services: Services) -> None:
        """Nothing to start: a worker is started when first needed, so that a gateway whose
        tenants send no PDF runs none."""

    async def stop(self) -> None:
        """:meth:`shutdown`, off the event loop (waiting for a render must not stall it)."""
        await asyncio.to_thread(self.shutdown)

    def resource(self) -> Resource:
        return Resource(name="password-pdf-renderers", start=self.start, stop=self.stop,
                        description="the PDF render thread and render worker processes")

    async def render(self, message: EmailMessage, raw: Callable[[], bytes], *, size: int,
                     letterhead: Letterhead, key: RecipientKey, language: Language,
                     processes: int, in_gateway_above_bytes: int,
                     signing: PdfSigning | None = None) -> bytes:
        """The encrypted PDF of ``message``, whose bytes ``raw()`` gives and are about ``size``
        long.

        With ``processes`` > 0 and ``size`` no larger than ``in_gateway_above_bytes``, a worker
        process renders it from ``raw()``; otherwise the gateway's render thread does, from
        ``message`` (and ``raw`` is not called, so no second copy of a large message is made).
        With ``signing``, the PDF carries the tenant's PAdES signature. A worker that dies
        (killed, out of memory) fails this message with :class:`WorkerDied` (the workflow answers
        "retry later"), and the next message gets a new worker; a message the worker could not
        render fails with :class:`RenderFailed`."""
        loop = asyncio.get_running_loop()
        if processes <= 0 or size > in_gateway_above_bytes:
            return await loop.run_in_executor(self._in_gateway(), functools.partial(
                render_encrypted, message, letterhead=letterhead, key=key, language=language,
                signing=signing))
        pool = self._pool(processes)
        return await loop.run_in_executor(pool.threads, pool.render, raw(), letterhead, key,
                                          language, signing)


#: The process's renderers, registered by the plugin as a resource.
RENDER_POOL = RenderPool()
