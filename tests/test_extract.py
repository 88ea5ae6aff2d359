"""Attachment text is read in a worker process whose limits hold: a deadline that kills it, a
memory limit it sets on itself, a new worker after a crash, and the event loop free meanwhile."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import zipfile
from email.message import EmailMessage

import pytest

from content_samples import CUSTOMER, docx, pdf
from siegel import extract
from siegel.extract import ExtractLimits
from siegel.mime import Attachment

pytestmark = pytest.mark.slow
# The tests read through extract.extract, as the gateway does: its one thread keeps one worker.


def attachment(data: bytes, path: str = "2") -> Attachment:
    part = EmailMessage()
    part.set_content(data, maintype="application", subtype="octet-stream")
    return Attachment(path=path, content_type="application/octet-stream", filename=None,
                      part=part)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child that was reaped is gone; one not yet reaped is a zombie.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


async def test_the_deadline_kills_the_worker_and_the_next_copy_gets_a_new_one():
    slow = attachment(pdf(CUSTOMER, pages=6000))
    await extract.extract([attachment(pdf("warm"))], ExtractLimits())  # started and warm
    [before] = extract.worker_pids()
    result = await extract.extract([slow, attachment(pdf(CUSTOMER), "3")],
                                      ExtractLimits(seconds=0.3))
    assert [(u.path, u.problem) for u in result.unreadable] == [("2", "timed-out"),
                                                                  ("3", "timed-out")]
    assert not alive(before)
    again = await extract.extract([attachment(pdf(CUSTOMER))], ExtractLimits())
    assert CUSTOMER in again.text and not again.unreadable
    assert extract.worker_pids() != [before]


async def test_the_memory_limit_holds_inside_the_worker():
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("big.txt", bytes(180 * 1024 * 1024))
    limits = ExtractLimits(memory_bytes=160 * 1024 * 1024)
    result = await extract.extract([attachment(archive.getvalue())], limits)
    assert [u.problem for u in result.unreadable] in (["too-large"], ["worker-failed"])
    # Within its memory, the same worker settings read an ordinary document.
    result = await extract.extract([attachment(docx(CUSTOMER))], limits)
    assert CUSTOMER in result.text


async def test_a_worker_that_dies_fails_its_attachment_and_is_replaced():
    limits = ExtractLimits(seconds=60)
    await extract.extract([attachment(pdf("warm"))], limits)
    [pid] = extract.worker_pids()
    slow = attachment(pdf(CUSTOMER, pages=6000))
    asyncio.get_running_loop().call_later(0.3, os.kill, pid, signal.SIGKILL)
    result = await extract.extract([slow], limits)
    assert [u.problem for u in result.unreadable] == ["worker-failed"]
    # A worker that died while idle is replaced without failing anything.
    [pid] = extract.worker_pids() or [None]
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
    result = await extract.extract([attachment(pdf(CUSTOMER))], limits)
    assert CUSTOMER in result.text and not result.unreadable


async def test_the_event_loop_keeps_running_while_an_attachment_is_read():
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    result = await extract.extract([attachment(pdf(CUSTOMER, pages=3000))],
                                   ExtractLimits(seconds=60))
    ticker.cancel()
    assert CUSTOMER in result.text
    assert ticks >= 10


async def test_attachments_larger_than_the_limit_are_not_read():
    result = await extract.extract([attachment(pdf(CUSTOMER))],
                                      ExtractLimits(max_bytes=100))
    assert [u.problem for u in result.unreadable] == ["too-large"]
    assert result.text == ""


async def test_the_runtime_stops_the_extraction_workers(siegel_harness):
    # The harness stops what `siegel serve` stops (Runtime.stop_resources): no worker is left.
    from siegel.testing import make_message

    raw = make_message(to="buerger@example.net",
                       attachments=[("bescheid.pdf", "application/pdf", pdf(CUSTOMER))])
    async with siegel_harness() as harness:
        extraction = await harness.context(raw, "buerger@example.net").attachment_text()
        assert CUSTOMER in extraction.text
        pids = extract.worker_pids()
        assert pids and all(alive(pid) for pid in pids)
    assert extract.worker_pids() == []
    assert not any(alive(pid) for pid in pids)
