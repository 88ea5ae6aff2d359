"""``siegel letters``: request, print and list PIN letters."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from siegel import Address, InvalidAddress, Tenant
from siegel.commands import OfflineError, OfflineServices, config_option, open_offline

from .letter_pdf import Sender, render_letters
from .letters import Letter, LetterBook, LetterStatus
from .postal import FIELDS, check_address
from .settings import SECTION, settings_of

CONFIRM_PATH = "/pin-letter/confirm"

_T = TypeVar("_T")


def _run(config_path: Path, work: Callable[[OfflineServices], Awaitable[_T]]) -> _T:
    async def main() -> _T:
        async with open_offline(config_path) as offline:
            return await work(offline)

    try:
        return asyncio.run(main())
    except OfflineError as exc:
        raise click.ClickException(str(exc)) from None


def _book(offline: OfflineServices, tenant: Tenant) -> LetterBook:
    settings = settings_of(tenant)
    return LetterBook(offline, tenant.id, valid_days=settings.valid_days,
                      max_attempts=settings.max_attempts)


def _address(value: str) -> Address:
    try:
        return Address.parse(value)
    except InvalidAddress as exc:
        raise click.BadParameter(str(exc), param_hint="--address") from None


tenant_option = click.option("--tenant", default=None,
                             help="Tenant (default: the only one that enables pin_letters).")


@click.group("letters")
def letters() -> None:
    """PIN letters: request, print (render) and list them."""


@letters.command("request")
@config_option
@tenant_option
@click.option("--address", required=True, help="The e-mail address of the account.")
@click.option("--name", required=True, help="First name and surname.")
@click.option("--supplement", default="", help="Address supplement (c/o, floor), optional.")
@click.option("--street", required=True, help="Street and house number, or 'Postfach NNN'.")
@click.option("--postcode", required=True, help="Five-digit German postcode.")
@click.option("--city", required=True, help="Town or city.")
def request_command(config_path: Path, tenant: str | None, address: str, **postal: str) -> None:
    """Ask for a PIN letter to the holder of an account (replaces an unused one)."""
    recipient, errors = check_address(postal)
    if recipient is None:
        raise click.UsageError("; ".join(f"--{field}: {errors[field].en}"
                                         for field in FIELDS if field in errors))
    account_address = _address(address)

    async def work(offline: OfflineServices) -> Letter:
        chosen = offline.tenant(tenant, section=SECTION)
        if await offline.accounts(chosen.id).get(account_address) is None:
            raise OfflineError(f"tenant {chosen.id!r} has no account for {account_address}: "
                               "the recipient registers first")
        return await _book(offline, chosen).request(account_address, recipient,
                                                    requested_by="cli")

    letter = _run(config_path, work)
    click.echo(f"requested a PIN letter for {letter.address} to "
               f"{', '.join(letter.recipient.lines)}")


@letters.command("render")
@config_option
@tenant_option
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The PDF to write (one page per letter).")
@click.option("--again", "again", multiple=True, metavar="ADDRESS",
              help="Print this account's letter again with a new PIN (the old one stops "
                   "working); repeatable.")
def render_command(config_path: Path, tenant: str | None, output: Path,
                   again: tuple[str, ...]) -> None:
    """Render every pending letter of a tenant into one PDF for printing and issue their PINs.

    The letters are marked printed; their PINs exist only in the PDF. Print it, put the letters
    in DL window envelopes and delete the file."""
    again_addresses = [_address(value) for value in again]

    async def work(offline: OfflineServices) -> int:
        chosen = offline.tenant(tenant, section=SECTION)
        settings = settings_of(chosen)
        book = _book(offline, chosen)
        for address in again_addresses:
            if await book.again(address) is None:
                raise OfflineError(f"{address}: no letter that can be printed again")
        pending = await book.pending()
        if not pending:
            return 0
        sender = Sender(name=chosen.name, letterhead_lines=settings.letterhead_lines,
                        return_address=settings.return_address,
                        confirm_url=offline.config.portal_link(chosen.id, CONFIRM_PATH),
                        max_attempts=settings.max_attempts)
        issued = await book.issue(pending)
        try:
            pdf = render_letters(issued, sender=sender, tenant=chosen, form=settings.form)
            _write_private(output, pdf)
        except BaseException:
            for item in issued:  # nothing was printed: the letters wait for the next run
                await book.again(Address.parse(item.letter.address))
            raise
        return len(issued)

    count = _run(config_path, work)
    if count == 0:
        click.echo("no pending letters")
        return
    click.echo(f"wrote {count} letter{'s' if count != 1 else ''} to {output}; print it, send "
               "the letters and delete the file (it holds the PINs)")


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only, all or nothing."""
    folder = path.resolve().parent
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@letters.command("list")
@config_option
@tenant_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_command(config_path: Path, tenant: str | None, as_json: bool) -> None:
    """List a tenant's letters: pending, printed (with validity and attempts), used, void."""

    async def work(offline: OfflineServices) -> list[Letter]:
        return await _book(offline, offline.tenant(tenant, section=SECTION)).all()

    found = _run(config_path, work)
    if as_json:
        click.echo(json.dumps([{
            "address": letter.address, "status": letter.status.value,
            "requested_at": letter.requested_at.isoformat(), "requested_by": letter.requested_by,
            "reference": letter.reference,
            "printed_at": letter.printed_at.isoformat() if letter.printed_at else None,
            "valid_until": letter.valid_until.isoformat() if letter.valid_until else None,
            "attempts": letter.attempts,
        } for letter in found], indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo("no letters")
    for letter in found:
        line = f"{letter.address}: {letter.status.value} (requested {letter.requested_at:%Y-%m-%d}"
        if letter.status is LetterStatus.PRINTED and letter.valid_until is not None:
            line += (f", printed {letter.reference}, valid until {letter.valid_until:%Y-%m-%d %H:%M}"
                     f" UTC, {letter.attempts} wrong")
        click.echo(line + ")")
