"""Commands for trying siegel out: ``siegel sink`` (a local SMTP server that prints what siegel
delivers) and ``siegel send-test`` (a small test message to a listener).
"""

from __future__ import annotations

import contextlib
import signal
import smtplib
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import click

from siegel.cli_common import _fail
from siegel.clock import SystemClock


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=10026, show_default=True)
@click.option("--maildir", type=click.Path(path_type=Path), default=None,
              help="Also write every received message to this folder.")
def sink(host: str, port: int, maildir: Path | None) -> None:
    """A local SMTP server that prints what siegel delivers (for trying siegel out)."""
    from siegel.sink import ReceivedMail, SmtpSink

    def show(mail: ReceivedMail) -> None:
        parsed = mail.parsed
        click.echo(f"received: {mail.mail_from or '<>'} -> {', '.join(mail.rcpt_to)}: "
                   f"{parsed.get('subject', '')!s} ({len(mail.raw)} bytes)")

    server = SmtpSink(host, port, maildir=maildir, on_message=show)
    server.start()
    click.echo(f"sink listening on {host}:{server.port}; stop with Ctrl-C")
    with contextlib.suppress(KeyboardInterrupt):
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    server.stop()


@click.command("send-test")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=10025, show_default=True)
@click.option("--from", "sender", required=True)
@click.option("--to", "recipients", multiple=True, required=True)
@click.option("--customer", is_flag=True, help="Ask for encryption (X-Siegel-Encrypt: yes).")
def send_test(host: str, port: int, sender: str, recipients: tuple[str, ...],
              customer: bool) -> None:
    """Send a small test message to a siegel listener."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = "siegel Testnachricht"
    message["Date"] = format_datetime(SystemClock().now())
    message["Message-ID"] = make_msgid()
    if customer:
        message["X-Siegel-Encrypt"] = "yes"
    message.set_content("Guten Tag,\n\ndies ist eine Testnachricht über siegel. Grüße\n")
    try:
        with smtplib.SMTP(host, port, timeout=30) as smtp:
            refused = smtp.send_message(message, from_addr=sender, to_addrs=list(recipients))
    except (smtplib.SMTPException, OSError) as exc:
        _fail(f"{host}:{port}: {exc}")
    for rcpt, (code, text) in refused.items():
        click.secho(f"refused {rcpt}: {code} {text.decode(errors='replace')}", fg="yellow")
    click.echo(f"sent to {host}:{port}")
