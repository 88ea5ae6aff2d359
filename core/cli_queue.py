"""``siegel queue``: look at and act on stored messages.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from siegel.addresses import InvalidAddress
from siegel.cli_common import _fail, _load, _run, _with_store, config_option
from siegel.clock import SystemClock
from siegel.model import RecipientState
from siegel.store import MessageStore, StoreError


@click.group()
def queue() -> None:
    """Look at and act on stored messages."""


_STATES = [s.value for s in RecipientState]


@queue.command("list")
@config_option
@click.option("--state", "states", multiple=True, type=click.Choice(_STATES),
              help="Only copies in this state (repeatable).")
@click.option("--tenant", default=None)
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def queue_list(config_path: Path, states: tuple[str, ...], tenant: str | None, limit: int,
               as_json: bool) -> None:
    """List recipients' copies, newest first."""
    config, _ = _load(config_path)
    records = _run(_with_store(config, lambda store: store.list(
        states=[RecipientState(s) for s in states] or None, tenant=tenant, limit=limit)))
    if as_json:
        click.echo(json.dumps([{
            "message_id": r.message_id, "tenant": r.tenant, "from": r.mail_from,
            "recipient": r.recipient, "state": r.state.value, "attempts": r.attempts,
            "received_at": r.received_at.isoformat(), "detail": r.detail,
            "reasons": list(r.reasons)} for r in records], indent=2, ensure_ascii=False))
        return
    if not records:
        click.echo("no messages")
    for r in records:
        click.echo(f"{r.message_id}  {r.received_at:%Y-%m-%d %H:%M}  {r.state.value:<11} "
                   f"{r.mail_from or '<>'} -> {r.recipient}  {r.detail}")


@queue.command("show")
@config_option
@click.argument("message_id")
@click.option("--headers", is_flag=True, help="Also print the message's headers (decrypted).")
def queue_show(config_path: Path, message_id: str, headers: bool) -> None:
    """Show one message: every recipient's state, reasons, and its audit trail."""
    config, _ = _load(config_path)

    async def work(store: MessageStore) -> None:
        records = await store.recipients(message_id)
        if not records:
            _fail(f"no message {message_id}")
        first = records[0]
        click.echo(f"message {message_id}  tenant {first.tenant}  origin {first.origin.value}")
        click.echo(f"  from {first.mail_from or '<>'}  received {first.received_at.isoformat()}"
                   f"  size {first.size}  content {'destroyed' if first.content_destroyed else 'stored'}")
        for r in records:
            click.echo(f"  {r.recipient}: {r.state.value} (attempts {r.attempts}"
                       + (f", next {r.next_attempt_at:%Y-%m-%d %H:%M}" if r.next_attempt_at and
                          r.state is RecipientState.ACCEPTED else "")
                       + (f", held until {r.hold_until:%Y-%m-%d %H:%M}" if r.hold_until else "")
                       + (", released" if r.released else "") + ")")
            if r.method:
                click.echo(f"    method: {r.method}")
            for reason in r.reasons:
                click.echo(f"    - {reason}")
            if r.detail:
                click.echo(f"    detail: {r.detail}")
        if headers and not first.content_destroyed:
            message = await store.load(message_id)
            click.echo("headers:")
            for name, value in message.parsed.items():
                click.echo(f"  {name}: {value}")
        click.echo("events:")
        for event in await store.events(message_id):
            detail = " ".join(f"{k}={v}" for k, v in event.detail.items())
            click.echo(f"  {event.at:%Y-%m-%d %H:%M:%S} {event.kind} {event.recipient or ''} {detail}")

    _run(_with_store(config, work))


def _requeue(config_path: Path, message_id: str, recipients: tuple[str, ...],
             states: list[RecipientState], release: bool) -> int:
    config, _ = _load(config_path)
    try:
        return _run(_with_store(config, lambda store: store.requeue(
            message_id, recipients=recipients or None, states=states, release=release,
            now=SystemClock().now())))
    except StoreError as exc:
        _fail(str(exc))
        raise AssertionError("unreachable") from None
    except InvalidAddress as exc:
        _fail(f"--recipient: {exc}")
        raise AssertionError("unreachable") from None


@queue.command("retry")
@config_option
@click.argument("message_id")
@click.option("--recipient", "recipients", multiple=True, help="Only this recipient (repeatable).")
def queue_retry(config_path: Path, message_id: str, recipients: tuple[str, ...]) -> None:
    """Process quarantined, failed or deferred copies again now, as they are.

    Use this after fixing the cause (configuration, a plugin, the relay). The copies are
    classified again from scratch; nothing is let out that the rules would stop.
    """
    count = _requeue(config_path, message_id, recipients,
                     [RecipientState.QUARANTINED, RecipientState.FAILED, RecipientState.ACCEPTED],
                     release=False)
    click.echo(f"{count} cop{'y' if count == 1 else 'ies'} queued again"
               + ("; a running gateway picks them up within its poll interval" if count else ""))


@queue.command("release")
@config_option
@click.argument("message_id")
@click.option("--recipient", "recipients", multiple=True, help="Only this recipient (repeatable).")
def queue_release(config_path: Path, message_id: str, recipients: tuple[str, ...]) -> None:
    """Release quarantined copies after review.

    A release overrides policy quarantines (e.g. content not fit for e-mail) but never protection:
    a copy that needs protection is still protected, and failures of the gateway itself still
    quarantine.
    """
    count = _requeue(config_path, message_id, recipients, [RecipientState.QUARANTINED],
                     release=True)
    click.echo(f"{count} cop{'y' if count == 1 else 'ies'} released")


@queue.command("purge")
@config_option
@click.argument("message_ids", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask.")
def queue_purge(config_path: Path, message_ids: tuple[str, ...], yes: bool) -> None:
    """Delete messages and their content for good (the audit trail stays)."""
    config, _ = _load(config_path)
    if not yes:
        click.confirm(f"Delete {len(message_ids)} message(s) for good?", abort=True)

    async def work(store: MessageStore) -> list[str]:
        return [m for m in message_ids if not await store.purge(m)]

    missing = _run(_with_store(config, work))
    click.echo(f"{len(message_ids) - len(missing)} purged")
    if missing:
        _fail("\n".join(f"no message {message_id}" for message_id in missing))
