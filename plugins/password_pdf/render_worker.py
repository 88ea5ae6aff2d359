"""A render worker process: ``python -m siegel.plugins.password_pdf.render_worker``.

Started by :mod:`.render_pool`, never by hand. It reads requests from standard input and writes
answers to standard output, each a frame (:mod:`siegel.worker`): an 8-byte big-endian length,
then a pickle. A request is
``(raw, letterhead, key, language, signing)``; the answer is ``("pdf", bytes)`` or ``("error", text)``.
The worker ends when its input closes, which is also what happens when the gateway dies.

Its own process rather than :mod:`multiprocessing`: ``spawn`` runs the embedding program's main
module again in every worker (a script without a ``__main__`` guard would start a second
gateway), and ``fork`` copies a process that has threads holding locks.
"""

from __future__ import annotations

import pickle
import traceback
from pathlib import Path
from typing import IO

from siegel import parse_email
from siegel.worker import read_frame, worker_streams, write_frame

from .encrypt import derive_recipient_key
from .render import Letterhead, render_encrypted


def _warm_up() -> None:
    """Fonts and modules are loaded before the first real message."""
    message = parse_email(b"From: a@example.org\r\nTo: b@example.org\r\nSubject: -\r\n\r\n-\r\n")
    render_encrypted(message, letterhead=Letterhead(tenant_name="-"),
                     key=derive_recipient_key("warm-up password"))


def _describe(exc: BaseException) -> str:
    """The exception's type and where it was raised, without its text: that text can quote the
    message (a paragraph the layout refused, say), and it ends up in the gateway's log."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    place = f" in {Path(where.filename).name}:{where.lineno} ({where.name})" if where else ""
    return f"{type(exc).__name__}{place}"


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    _warm_up()
    write_frame(answers, pickle.dumps(("ready", None)))
    while (payload := read_frame(requests)) is not None:
        raw, letterhead, key, language, signing = pickle.loads(payload)  # noqa: S301 (our parent)
        del payload
        try:
            answer: tuple[str, object] = ("pdf", render_encrypted(
                parse_email(raw), letterhead=letterhead, key=key, language=language,
                signing=signing))
        except Exception as exc:  # the gateway fails this message closed and keeps it
            answer = ("error", _describe(exc))
        del raw
        write_frame(answers, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


def main() -> None:
    serve(*worker_streams())


if __name__ == "__main__":
    main()
