"""``siegel certs``: import, list, show, remove and check recipients' S/MIME certificates.

The commands work on a :class:`~.directory.CertificateDirectory` that an *opener* provides: an async
context manager factory ``open_directory(config_path, tenant)``. :func:`config_directory_opener`
is the standard one (load the configuration with its plugins, open the store, build the tenant's
policy from its settings section); the gateway wires it in with::

    @hookimpl
    def siegel_register_commands(cli):
        register_certs_command(cli, config_directory_opener("smime"))
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from siegel import (
    Clock,
    InvalidAddress,
)
from siegel.commands import (
    CONFIG_ENV,
    DEFAULT_CONFIG_NAME,
    OfflineError,
    OfflineServices,
    open_offline,
)

from .capabilities import CAPABILITY_NAMES
from .cert_files import ImportFailure
from .certificates import certified_addresses, fingerprint, san_addresses
from .checks import EKU_NAMES
from .directory import CERTIFICATES_NAMESPACE, INTERMEDIATES_NAMESPACE, CertificateDirectory
from .policy import SmimeDirectorySettings, policy_from_settings
from .profiles import AlgorithmChoice, Declined
from .records import CertificateEntry, Refusal, UsableCertificate
from .texts import describe, format_time

_T = TypeVar("_T")

OpenDirectory = Callable[[Path, "str | None"], AbstractAsyncContextManager[CertificateDirectory]]
"""``open_directory(config_path, tenant)``: yields the directory of the tenant (None: the only
tenant that uses S/MIME). Raises :class:`click.ClickException` when it cannot."""

MIN_FINGERPRINT_PREFIX = 8


class ConfigProblem(click.ClickException):
    """The configuration or the store cannot be used (exit code 2, like ``siegel config check``)."""

    exit_code = 2


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coroutine)


def _when(value: Any, lang: str = "en") -> str:
    if value is None:
        return "-"
    de, en = format_time(value)
    return de if lang == "de" else en


def _key_description(certificate: x509.Certificate) -> str:
    try:
        key = certificate.public_key()
    except ValueError:
        return "unreadable"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__.removeprefix("_").replace("PublicKey", "")


def _usages(certificate: x509.Certificate) -> tuple[str, str]:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        key_usage = "(not restricted)"
    else:
        names = ["digital_signature", "content_commitment", "key_encipherment",
                 "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign"]
        key_usage = ", ".join(n for n in names if getattr(usage, n)) or "none"
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        extended = "(not restricted)"
    else:
        extended = ", ".join(EKU_NAMES.get(oid, oid.dotted_string) for oid in eku)
    return key_usage, extended


def _capabilities(oids: Sequence[str] | None) -> str:
    if oids is None:
        return "-"
    return ", ".join(CAPABILITY_NAMES.get(oid, oid) for oid in oids) or "(none)"


def _entry_json(entry: CertificateEntry) -> dict[str, Any]:
    certificate = entry.certificate
    return {
        "address": entry.address,
        "fingerprint": entry.fingerprint,
        "subject": entry.subject,
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": f"{certificate.serial_number:x}",
        "not_before": certificate.not_valid_before_utc.isoformat(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "key": _key_description(certificate),
        "source": entry.source,
        "added_at": entry.added_at.isoformat(),
        "seen_at": entry.seen_at.isoformat() if entry.seen_at else None,
        "capabilities": list(entry.capabilities) if entry.capabilities is not None else None,
        "last_used": entry.last_used.isoformat() if entry.last_used else None,
    }


def _echo_certificate(certificate: x509.Certificate) -> None:
    key_usage, extended = _usages(certificate)
    addresses = certified_addresses(certificate)
    where = "subjectAltName" if san_addresses(certificate) or not addresses else "subject"
    click.echo(f"certificate {fingerprint(certificate)}")
    click.echo(f"  subject:            {describe(certificate)}")
    click.echo(f"  issuer:             {certificate.issuer.rfc4514_string()}")
    click.echo(f"  serial:             {certificate.serial_number:#x}")
    click.echo(f"  valid:              {_when(certificate.not_valid_before_utc)} to "
               f"{_when(certificate.not_valid_after_utc)}")
    click.echo(f"  key:                {_key_description(certificate)}")
    click.echo(f"  addresses:          {', '.join(addresses) or '-'} ({where})")
    click.echo(f"  key usage:          {key_usage}")
    click.echo(f"  extended key usage: {extended}")


def _echo_result(result: UsableCertificate | Refusal, lang: str) -> None:
    if isinstance(result, UsableCertificate):
        chain = " <- ".join(describe(c) for c in result.chain)
        click.echo(f"    usable; chain: {chain}")
        return
    click.secho("    refused:", fg="yellow")
    for problem in result.problems:
        click.echo(f"      - [{problem.code}] {problem.reason.get(lang)}")


config_option = click.option(
    "--config", "-c", "config_path", type=click.Path(path_type=Path), envvar=CONFIG_ENV,
    default=DEFAULT_CONFIG_NAME, show_default=True, help=f"Configuration file (or ${CONFIG_ENV}).")
tenant_option = click.option(
    "--tenant", default=None, help="Tenant whose S/MIME settings apply (default: the only one).")
lang_option = click.option("--lang", type=click.Choice(["en", "de"]), default="en",
                           show_default=True, help="Language of the reasons.")


def _echo_algorithms(choice: AlgorithmChoice | Declined, lang: str) -> None:
    if isinstance(choice, Declined):
        click.secho(f"  S/MIME declined: {choice.reason.get(lang)}", fg="yellow")
        return
    click.echo(f"  {choice.describe().get(lang)}")
    for deviation in choice.tr02102_deviations:
        click.echo(f"    - TR-02102-1: {deviation.get(lang)}")


def _prefix(value: str) -> str:
    wanted = value.replace(":", "").lower()
    if len(wanted) < MIN_FINGERPRINT_PREFIX or any(c not in "0123456789abcdef" for c in wanted):
        raise click.BadParameter(
            f"give at least {MIN_FINGERPRINT_PREFIX} hex digits of the SHA-256 fingerprint, not "
            f"{value!r}")
    return wanted


def certs_group(open_directory: OpenDirectory) -> click.Group:
    """The ``certs`` command group, working on the directories ``open_directory`` opens."""

    @click.group("certs")
    def certs() -> None:
        """Recipients' S/MIME certificates: import, list, show, remove, check."""

    @certs.command("import")
    @config_option
    @tenant_option
    @click.argument("files", nargs=-1, required=True,
                    type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="File holding the password of PKCS#12 files (first line).")
    def import_command(config_path: Path, tenant: str | None, files: tuple[Path, ...],
                       password_file: Path | None) -> None:
        """Import certificates from FILE... (PEM, DER, PKCS#7, PKCS#12).

        End-entity certificates are filed under every address they name; CA certificates are
        kept to build chains. Root certificates and private keys are never imported."""
        password = None
        if password_file is not None:
            lines = password_file.read_bytes().splitlines()
            password = lines[0] if lines else b""

        async def work() -> int:
            failures = 0
            async with open_directory(config_path, tenant) as directory:
                for path in files:
                    try:
                        report = await directory.import_file(path, password=password)
                    except ImportFailure as exc:
                        click.secho(f"error: {exc}", fg="red", err=True)
                        failures += 1
                        continue
                    for entry in report.added:
                        click.echo(f"{path.name}: added {entry.address} {entry.fingerprint[:16]} "
                                   f"({entry.subject}), valid until "
                                   f"{_when(entry.certificate.not_valid_after_utc)}")
                    for entry in report.present:
                        click.echo(f"{path.name}: already present {entry.address} "
                                   f"{entry.fingerprint[:16]}")
                    for subject in report.intermediates:
                        click.echo(f"{path.name}: intermediate {subject}")
                    for note in report.skipped:
                        click.secho(f"{path.name}: skipped: {note}", fg="yellow")
                    for label in report.unchecked:
                        click.secho(f"{path.name}: warning: {label} names no CRL distribution "
                                    "point or OCSP responder the settings can use, and no CRL "
                                    "file covers it: it is refused (revocation-unknown) until "
                                    "its issuer's CRL is in crl_files", fg="yellow")
            return failures

        if _run(work()):
            sys.exit(1)

    @certs.command("list")
    @config_option
    @tenant_option
    @click.option("--address", default=None, help="Only this address.")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    def list_command(config_path: Path, tenant: str | None, address: str | None,
                     as_json: bool) -> None:
        """List stored certificates (without checking them; see 'check')."""

        async def work() -> list[CertificateEntry]:
            async with open_directory(config_path, tenant) as directory:
                try:
                    return await directory.entries(address)
                except InvalidAddress as exc:
                    raise click.BadParameter(str(exc), param_hint="--address") from None

        entries = _run(work())
        if as_json:
            click.echo(json.dumps([_entry_json(e) for e in entries], indent=2, ensure_ascii=False))
            return
        if not entries:
            click.echo("no certificates")
        for entry in entries:
            click.echo(f"{entry.address}  {entry.fingerprint[:16]}  until "
                       f"{entry.certificate.not_valid_after_utc:%Y-%m-%d}  {entry.source}  "
                       f"{entry.subject}")

    @certs.command("show")
    @config_option
    @tenant_option
    @lang_option
    @click.argument("what")
    def show_command(config_path: Path, tenant: str | None, lang: str, what: str) -> None:
        """Show certificates by FINGERPRINT (at least 8 hex digits) or ADDRESS, with whether
        each may be used now."""

        async def work() -> bool:
            async with open_directory(config_path, tenant) as directory:
                if "@" in what:
                    try:
                        entries = await directory.entries(what)
                    except InvalidAddress as exc:
                        raise click.BadParameter(str(exc), param_hint="ADDRESS") from None
                    intermediates: list[x509.Certificate] = []
                else:
                    wanted = _prefix(what)
                    entries = await directory.find(wanted)
                    intermediates = [c for c in await directory.intermediates()
                                     if fingerprint(c).startswith(wanted)]
                by_fingerprint: dict[str, list[CertificateEntry]] = {}
                for entry in entries:
                    by_fingerprint.setdefault(entry.fingerprint, []).append(entry)
                for filed in by_fingerprint.values():
                    _echo_certificate(filed[0].certificate)
                    for entry in filed:
                        click.echo(f"  filed under {entry.address}: source {entry.source}, added "
                                   f"{_when(entry.added_at)}, seen {_when(entry.seen_at)}, last "
                                   f"used {_when(entry.last_used)}")
                        click.echo(f"    capabilities: {_capabilities(entry.capabilities)}")
                        result = await directory.evaluate(entry)
                        _echo_result(result, lang)
                        if isinstance(result, UsableCertificate) and directory.algorithms:
                            _echo_algorithms(directory.algorithms(
                                entry.address, entry.certificate, entry.capabilities), lang)
                for certificate in intermediates:
                    _echo_certificate(certificate)
                    click.echo("  kept as an intermediate CA certificate")
                return bool(by_fingerprint or intermediates)

        if not _run(work()):
            click.secho(f"no certificate {what}", fg="red", err=True)
            sys.exit(1)

    @certs.command("remove")
    @config_option
    @tenant_option
    @click.argument("fingerprint_prefix", metavar="FINGERPRINT")
    @click.option("--address", default=None, help="Remove it only for this address.")
    def remove_command(config_path: Path, tenant: str | None, fingerprint_prefix: str,
                       address: str | None) -> None:
        """Remove a certificate (from every address, or only --address)."""
        wanted = _prefix(fingerprint_prefix)

        async def work() -> int:
            async with open_directory(config_path, tenant) as directory:
                try:
                    return await directory.remove(wanted, address)
                except InvalidAddress as exc:
                    raise click.BadParameter(str(exc), param_hint="--address") from None
                except ValueError as exc:
                    raise click.UsageError(str(exc)) from None

        removed = _run(work())
        if not removed:
            click.secho(f"no certificate {fingerprint_prefix}"
                        + (f" for {address}" if address else ""), fg="red", err=True)
            sys.exit(1)
        click.echo(f"removed {removed} record{'s' if removed != 1 else ''}")

    @certs.command("check")
    @config_option
    @tenant_option
    @lang_option
    @click.argument("address")
    def check_command(config_path: Path, tenant: str | None, lang: str, address: str) -> None:
        """Which certificate would be used for ADDRESS now, and why every other one is not.
        Exit status 1 when none is usable."""

        async def work() -> bool:
            async with open_directory(config_path, tenant) as directory:
                try:
                    selection = await directory.find_usable(address)
                except InvalidAddress as exc:
                    raise click.BadParameter(str(exc), param_hint="ADDRESS") from None
            best = selection.best
            if best is None:
                click.secho(selection.reason.get(lang) if not selection.refused else
                            f"no usable certificate for {selection.address}", fg="red")
            else:
                click.secho(f"{selection.address}: use {best.fingerprint} ({best.entry.subject}), "
                            f"valid until {_when(best.certificate.not_valid_after_utc, lang)}",
                            fg="green")
                click.echo(f"  chain: {' <- '.join(describe(c) for c in best.chain)}")
                click.echo(f"  capabilities: {_capabilities(selection.capabilities)}")
                if directory.algorithms is not None:
                    _echo_algorithms(directory.algorithms(selection.address, best.certificate,
                                                          selection.capabilities), lang)
                for other in selection.usable[1:]:
                    click.echo(f"  also usable: {other.fingerprint} ({other.entry.subject})")
            for refusal in selection.refused:
                click.echo(f"  refused {refusal.fingerprint} ({refusal.subject}):")
                for problem in refusal.problems:
                    click.echo(f"    - [{problem.code}] {problem.reason.get(lang)}")
            return best is not None

        if not _run(work()):
            sys.exit(1)

    return certs


def register_certs_command(cli: click.Group, open_directory: OpenDirectory) -> None:
    """Add ``certs`` to the ``siegel`` command line (call from ``siegel_register_commands``)."""
    cli.add_command(certs_group(open_directory))


def config_directory_opener(section: str = "smime", *, clock: Clock | None = None,
                            extra_plugins: Iterable[tuple[str, object]] = ()) -> OpenDirectory:
    """The standard opener: open the configured gateway offline
    (:func:`siegel.commands.open_offline`: plugins, configuration, store), pick the tenant and
    build its directory with the :class:`~.directory.DirectoryPolicy` from
    ``tenant.settings[section]`` (a :class:`~.directory.SmimeDirectorySettings`).
    ``extra_plugins`` are registered after the installed ones (tests register the section
    there)."""
    plugins = tuple(extra_plugins)

    @asynccontextmanager
    async def open_directory(config_path: Path, tenant: str | None
                             ) -> AsyncIterator[CertificateDirectory]:
        try:
            async with open_offline(config_path, extra_plugins=plugins, clock=clock) as offline:
                yield _directory(offline, section, tenant)
        except OfflineError as exc:
            raise ConfigProblem(str(exc)) from None

    return open_directory


def _directory(offline: OfflineServices, section: str, tenant: str | None
               ) -> CertificateDirectory:
    """The directory of ``tenant`` (the only one with settings ``section`` when None)."""
    from .ldap import LDAP_CACHE_NAMESPACE, LdapCertificateSource

    config = offline.config
    users = [t.id for t in config.tenants.values() if section in t.settings]
    if tenant is None:
        if len(users) != 1:
            which = (f"several tenants use S/MIME ({', '.join(users)})" if users
                     else f"no tenant has S/MIME settings ([tenants.ID.settings.{section}])")
            raise click.UsageError(f"{which}; give --tenant")
        tenant = users[0]
    if tenant not in config.tenants:
        raise click.UsageError(f"unknown tenant {tenant!r} (known: {', '.join(config.tenants)})")
    settings = config.tenants[tenant].settings.get(section)
    if not isinstance(settings, SmimeDirectorySettings):
        raise ConfigProblem(f"tenant {tenant!r} does not enable the S/MIME plugin "
                            f"(no settings section {section!r})")
    ldap = getattr(settings, "ldap", None)
    lookup = (LdapCertificateSource(ldap, offline.state(LDAP_CACHE_NAMESPACE), offline.clock)
              if ldap is not None else None)
    return CertificateDirectory(offline.state(CERTIFICATES_NAMESPACE),
                                offline.state(INTERMEDIATES_NAMESPACE), offline.clock,
                                policy_from_settings(settings), lookup=lookup,
                                algorithms=getattr(settings, "choose_algorithms", None))


__all__ = [
    "ConfigProblem",
    "OpenDirectory",
    "certs_group",
    "config_directory_opener",
    "register_certs_command",
]
