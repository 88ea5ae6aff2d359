"""Where PDFs are rendered: worker processes for ordinary messages, the gateway's thread for large
ones, and a dead worker fails one message, not the gateway."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from password_pdf_helpers import PASSWORD, make_message, run, sha256

from siegel.plugins.password_pdf import Letterhead, RecipientKey, render_pool

pytestmark = pytest.mark.slow


@pytest.fixture
def workers() -> Iterator[render_pool.RenderPool]:
    pool = render_pool.RenderPool()
    yield pool
    pool.shutdown()


def _text(pdf: Path) -> str:
    return run("pdftotext", "-upw", PASSWORD, "-enc", "UTF-8", pdf, "-").stdout


async def _render(pool: render_pool.RenderPool, letterhead: Letterhead, key: RecipientKey, *,
                  processes: int) -> bytes:
    message = make_message()
    raw = message.as_bytes()
    return await pool.render(message, lambda: raw, size=len(raw), letterhead=letterhead,
                                 key=key, language="de", processes=processes,
                                 in_gateway_above_bytes=len(raw))


async def test_a_worker_process_renders_the_same_pdf_as_the_thread(
        workers: render_pool.RenderPool, letterhead: Letterhead, recipient_key: RecipientKey,
        write_pdf: Callable[[bytes, str], Path]) -> None:
    in_worker = write_pdf(await _render(workers, letterhead, recipient_key, processes=1), "worker.pdf")
    on_thread = write_pdf(await _render(workers, letterhead, recipient_key, processes=0), "thread.pdf")

    assert "R = 6" in run("qpdf", f"--password={PASSWORD}", "--show-encryption", in_worker).stdout
    assert _text(in_worker) == _text(on_thread)
    assert "Straßenreinigung" in _text(in_worker)
    for pdf in (in_worker, on_thread):
        out = pdf.with_suffix("")
        out.mkdir()
        run("pdfdetach", "-upw", PASSWORD, "-saveall", "-o", out, pdf)
    assert ({p.name: sha256(p.read_bytes()) for p in in_worker.with_suffix("").iterdir()}
            == {p.name: sha256(p.read_bytes()) for p in on_thread.with_suffix("").iterdir()})


async def test_a_large_message_is_rendered_in_the_gateway_process(
        workers: render_pool.RenderPool, letterhead: Letterhead, recipient_key: RecipientKey,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_workers(processes: int) -> None:
        raise AssertionError("a large message was sent to a worker process")

    monkeypatch.setattr(workers, "_pool", no_workers)
    message = make_message()
    raw = message.as_bytes()

    def no_copy() -> bytes:
        raise AssertionError("the bytes of a large message were made")

    pdf = await workers.render(message, no_copy, size=len(raw), letterhead=letterhead,
                                key=recipient_key, language="de", processes=1,
                                in_gateway_above_bytes=len(raw) - 1)
    assert pdf.startswith(b"%PDF-")


async def test_a_dead_worker_fails_that_message_and_the_next_gets_a_new_one(
        workers: render_pool.RenderPool, letterhead: Letterhead, recipient_key: RecipientKey) -> None:
    await _render(workers, letterhead, recipient_key, processes=1)
    for pid in workers.worker_pids():
        os.kill(pid, signal.SIGKILL)

    with pytest.raises(render_pool.RenderFailed, match="render worker"):
        await _render(workers, letterhead, recipient_key, processes=1)
    assert (await _render(workers, letterhead, recipient_key, processes=1)).startswith(b"%PDF-")


async def test_a_message_the_worker_cannot_render_fails_alone(
        workers: render_pool.RenderPool, letterhead: Letterhead, recipient_key: RecipientKey) -> None:
    broken_logo = Letterhead(tenant_name="Stadt Köln", logo_png=b"\x89PNG\r\n\x1a\nnot an image")
    await _render(workers, letterhead, recipient_key, processes=1)
    [worker] = workers.worker_pids()

    with pytest.raises(render_pool.RenderFailed, match=r"the render worker failed: \w+ in \w+\.py:\d+"):
        await _render(workers, broken_logo, recipient_key, processes=1)
    assert (await _render(workers, letterhead, recipient_key, processes=1)).startswith(b"%PDF-")
    assert workers.worker_pids() == [worker]
