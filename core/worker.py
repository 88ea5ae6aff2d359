"""Worker processes for CPU-bound work on untrusted input: framed pickles over a pipe, a deadline
that really holds, a memory limit.

A worker is its own program (``python -P -m MODULE``), not :mod:`multiprocessing`: ``spawn`` runs
the embedding program's main module again in every worker (a script without a ``__main__`` guard
would start a second gateway), and ``fork`` copies a process that has threads holding locks.
Requests and answers are frames: an 8-byte big-endian length, then a pickle. A worker ends when its
input closes, which is also what happens when the gateway dies.

A Python thread cannot be stopped, a process can: :meth:`WorkerProcess.call` waits for the answer
with a deadline and kills the worker when it passes, so a parser caught in a pathological input
costs its time limit and no more. The worker limits its own address space
(:func:`limit_memory`, ``resource.setrlimit``) so that a decompression bomb ends in a
``MemoryError`` (or the worker's death) instead of the machine's swap.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import selectors
import struct
import subprocess
import sys
import time
from typing import IO

HEADER = struct.Struct(">Q")


class WorkerGone(Exception):
    """The worker ended, crashed or was killed (after its deadline); it takes no more requests."""


class WorkerTimedOut(WorkerGone):
    """The worker did not answer before its deadline and was killed."""


def read_frame(stream: IO[bytes]) -> bytes | None:
    """One frame's payload, or None at the end of the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return payload


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def stop_process(process: subprocess.Popen[bytes], seconds: float = 5.0) -> None:
    """End a worker the way it expects: close its input (it ends when its input closes), wait,
    kill it if it does not end within ``seconds``, and close its output."""
    with contextlib.suppress(OSError):
        if process.stdin is not None:
            process.stdin.close()
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def limit_memory(max_bytes: int) -> None:
    """Limit this process's address space (called by a worker on itself, before any work)."""
    if max_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


def worker_streams() -> tuple[IO[bytes], IO[bytes]]:
    """A worker's request and answer streams. Answers get standard output to themselves: anything
    a library prints goes to standard error."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return sys.stdin.buffer, answers


class WorkerProcess:
    """One worker process, used by one thread at a time."""

    def __init__(self, module: str, *args: str, start_seconds: float = 60.0) -> None:
        # -P: the working directory does not go on the worker's import path.
        self.process = subprocess.Popen(  # noqa: S603 (our own module, no shell)
            [sys.executable, "-P", "-m", module, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._buffer = bytearray()
        self._answer(time.monotonic() + start_seconds)  # "ready": started and warmed up

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read_exactly(self, size: int, deadline: float) -> bytes:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while len(self._buffer) < size:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    self.kill()
                    raise WorkerTimedOut("the worker did not answer in time and was stopped")
                chunk = os.read(fd, max(size - len(self._buffer), 1 << 16))
                if not chunk:
                    code = self.process.wait()
                    raise WorkerGone(f"the worker ended (exit code {code})")
                self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _answer(self, deadline: float) -> object:
        (size,) = HEADER.unpack(self._read_exactly(HEADER.size, deadline))
        return pickle.loads(self._read_exactly(size, deadline))  # noqa: S301 (our own child)

    def call(self, request: object, seconds: float, data: bytes | None = None) -> object:
        """Send ``request`` (and ``data`` as a frame of its own, not copied into a pickle) and
        return the answer; raises :class:`WorkerTimedOut` (the worker was killed) after
        ``seconds``, :class:`WorkerGone` when the worker died."""
        deadline = time.monotonic() + seconds
        assert self.process.stdin is not None
        try:
            write_frame(self.process.stdin,
                        pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
            if data is not None:
                write_frame(self.process.stdin, data)
        except (BrokenPipeError, ValueError, OSError):
            self.kill()
            raise WorkerGone("the worker is gone") from None
        return self._answer(deadline)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.stop()

    def stop(self) -> None:
        stop_process(self.process)
