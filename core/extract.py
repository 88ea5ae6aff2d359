"""The text of attachments (PDF, office documents, archives), read in worker processes.

Extraction is CPU-bound work on attacker input, so it never runs on the event loop nor in the
gateway's process: each attachment goes to a worker (:mod:`siegel.extract_worker`) over a pipe,
with a deadline for all attachments of a copy. A worker that passes the deadline is killed (a
thread could not be stopped) and the next copy gets a new one; a worker limits its own memory. What
could not be read (a timeout, a crash, an encrypted or broken file, a picture) is returned as
:class:`~siegel.mime.Unreadable` parts, so that the content rules count it against the message.

The workers (:data:`WORKERS`, one per process: threads and processes are not bound to an event
loop) are started when first needed; the runtime stops them with the plugins' resources
(``siegel serve``, the test harness, a one-shot run), and at the latest they end with the process.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import attrs

from siegel.mime import Attachment, PartText, Unreadable
from siegel.settings import positive
from siegel.worker import WorkerGone, WorkerProcess, WorkerTimedOut

WORKER_MODULE = "siegel.extract_worker"


@attrs.frozen(kw_only=True)
class ExtractLimits:
    """How much one copy's attachments may cost. Beyond a limit a part counts as unreadable."""

    #: For all attachments of one copy together (the worker is killed when it passes).
    seconds: float = attrs.field(default=20.0, validator=positive)
    #: Per attachment, as decoded; larger attachments are not read.
    max_bytes: int = attrs.field(default=25 * 1024 * 1024, validator=positive)
    #: Characters of text kept per attachment.
    max_chars: int = attrs.field(default=10 * 1024 * 1024, validator=positive)
    #: Address space of a worker process.
    memory_bytes: int = attrs.field(default=1024 * 1024 * 1024, validator=positive)


@attrs.frozen(kw_only=True)
class Extraction:
    """What the extractor read in a copy's attachments, and what it could not read."""

    texts: tuple[PartText, ...] = ()
    unreadable: tuple[Unreadable, ...] = ()

    @property
    def text(self) -> str:
        return "\n".join(part.text for part in self.texts)


class ExtractionWorkers:
    """One worker process per thread of the pool, started when first needed."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="siegel-extract")
        self._local = threading.local()
        self._lock = threading.Lock()
        self.running: list[WorkerProcess] = []

    def worker(self, memory_bytes: int) -> WorkerProcess:
        current: tuple[int, WorkerProcess] | None = getattr(self._local, "worker", None)
        if current is not None and current[0] == memory_bytes \
                and current[1].process.poll() is None:
            return current[1]
        if current is not None:
            self.discard(current[1])
        worker = WorkerProcess(WORKER_MODULE, str(memory_bytes))
        self._local.worker = (memory_bytes, worker)
        with self._lock:
            self.running.append(worker)
        return worker

    def discard(self, worker: WorkerProcess) -> None:
        self._local.worker = None
        with self._lock:
            if worker in self.running:
                self.running.remove(worker)
        worker.kill()

    def stop(self) -> None:
        """End the running workers (blocks; a thread that reads next starts a new one)."""
        with self._lock:
            workers, self.running = self.running, []
        for worker in workers:
            worker.stop()


#: The process's extraction workers; the runtime stops them when it stops.
WORKERS = ExtractionWorkers()
atexit.register(WORKERS.stop)


def worker_pids() -> list[int]:
    """The process ids of the running extraction workers."""
    return [worker.pid for worker in list(WORKERS.running)]


def _extract_one(data: bytes, limits: ExtractLimits, seconds: float) -> tuple[str, list[str]]:
    try:
        worker = WORKERS.worker(limits.memory_bytes)
    except (OSError, WorkerGone):
        return "", ["worker-failed"]
    try:
        answer = worker.call(limits.max_chars, seconds, data)
    except WorkerTimedOut:
        WORKERS.discard(worker)
        return "", ["timed-out"]
    except WorkerGone:  # crashed, or killed by the memory limit
        WORKERS.discard(worker)
        return "", ["worker-failed"]
    if not (isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], str)
            and isinstance(answer[1], list)):
        WORKERS.discard(worker)
        return "", ["worker-failed"]
    return answer[0], [str(code) for code in answer[1]]


def extract_blocking(attachments: Sequence[Attachment], limits: ExtractLimits) -> Extraction:
    """The text of ``attachments`` (blocks; :func:`extract` is the asynchronous form)."""
    import time

    deadline = time.monotonic() + limits.seconds
    texts: list[PartText] = []
    unreadable: list[Unreadable] = []
    for attachment in attachments:
        remaining = deadline - time.monotonic()
        data = None if attachment.size > limits.max_bytes * 2 else attachment.decoded()
        if attachment.size > limits.max_bytes * 2 or (data is not None
                                                      and len(data) > limits.max_bytes):
            text, problems = "", ["too-large"]
        elif data is None:
            text, problems = "", ["undecodable"]
        elif not data:
            text, problems = "", []
        elif remaining <= 0:
            text, problems = "", ["timed-out"]
        else:
            text, problems = _extract_one(data, limits, remaining)
        del data
        if text.strip():
            texts.append(PartText(path=attachment.path, content_type=attachment.content_type,
                                  text=text))
        unreadable += (Unreadable(path=attachment.path, content_type=attachment.content_type,
                                  problem=code) for code in problems)
    return Extraction(texts=tuple(texts), unreadable=tuple(unreadable))


async def extract(attachments: Sequence[Attachment], limits: ExtractLimits) -> Extraction:
    """The text of ``attachments``, read in a worker process beside the event loop. Whatever
    happens to the worker, this returns within about ``limits.seconds`` of the work starting."""
    if not attachments:
        return Extraction()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(WORKERS.threads, extract_blocking, attachments, limits)
