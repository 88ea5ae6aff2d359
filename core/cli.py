"""The ``siegel`` command line (also ``python -m siegel``)."""

from __future__ import annotations

import json
import logging
import sys
import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import click

from siegel import __version__
from siegel.addresses import Address, InvalidAddress
from siegel.bootstrap import blocked_plugins
from siegel.cli_api import api_client
from siegel.cli_common import _fail, _load, _run, config_option
from siegel.cli_dev import send_test, sink
from siegel.cli_queue import queue
from siegel.cli_store import store_group
from siegel.clock import SystemClock
from siegel.config import (
    DEFAULT_CONFIG_NAME,
    Config,
    ConfigError,
    StoreConfig,
    default_config_path,
    load_config,
)
from siegel.crypto import ContentCipher, KeyFileError, create_key_file
from siegel.malloc import pin_mmap_threshold
from siegel.manager import PluginError, PluginRegistry
from siegel.runtime import NoTenant, Runtime, open_store
from siegel.serve import _serve
from siegel.store import StoreError


@click.group()
@click.version_option(__version__, prog_name="siegel")
@click.option("--verbose", "-v", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """siegel: secure mail for public administration."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path), default=Path("."))
@click.option("--from", "template_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Start from this configuration (e.g. examples/district.toml) "
                                 "instead of the built-in demo.")
def init(directory: Path, template_file: Path | None) -> None:
    """Create a working directory: example config, content key, store folder."""
    config_file = directory / DEFAULT_CONFIG_NAME
    key_file = directory / "keys" / "store.key"
    directory.mkdir(parents=True, exist_ok=True)
    if config_file.exists():
        click.echo(f"{config_file} exists; left as it is")
    else:
        if template_file is not None:
            text = template_file.read_text(encoding="utf-8")
        else:
            text = resources.files("siegel").joinpath("templates", "siegel.toml").read_text(
                encoding="utf-8")
        config_file.write_text(text, encoding="utf-8")
        click.echo(f"wrote {config_file}")
    if key_file.exists():
        click.echo(f"{key_file} exists; left as it is")
    else:
        create_key_file(key_file)
        click.echo(f"wrote {key_file} (the key that encrypts stored mail; keep it and back it up)")
    (directory / "var").mkdir(exist_ok=True)
    click.echo(f"next: siegel serve --config {config_file}")


@cli.command()
@config_option
def serve(config_path: Path) -> None:
    """Run the gateway: SMTP listener and delivery workers."""
    config, registry = _load(config_path)
    try:
        store = open_store(config)
    except (KeyFileError, StoreError) as exc:
        _fail(str(exc), 2)
    runtime = Runtime(config, registry, store, clock=SystemClock())
    pin_mmap_threshold()
    _run(_serve(runtime))


@cli.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@config_option
def config_check(config_path: Path) -> None:
    """Validate the configuration file against the installed plugins.

    Every problem is reported, not only the first: the file's tables, every tenant and every
    plugin's settings, the listeners' users files and the store key."""
    try:
        registry = PluginRegistry.load(blocked=blocked_plugins(config_path))
    except (ConfigError, PluginError) as exc:
        _fail(str(exc), 2)
        return
    for failure in registry.failures.values():
        click.secho(f"warning: plugin {failure.name!r} failed to load: {failure.error}",
                    fg="yellow")
    config: Config | None = None
    problems: list[str] = []
    try:
        config = load_config(config_path, registry)
    except ConfigError as exc:
        problems += exc.problems
    key_problem = _store_key_problem(config_path, config)
    if key_problem:
        problems.append(key_problem)
    if problems or config is None:
        _fail(str(ConfigError(str(config_path), problems)), 2)
        return
    for tenant in config.tenants.values():
        click.echo(f"tenant {tenant.id} ({tenant.name}): domains {', '.join(tenant.own_domains)}; "
                   f"internal {', '.join(tenant.internal) or '-'}; "
                   f"plugins {', '.join(sorted(tenant.enabled_plugins))}; "
                   f"protection {', '.join(tenant.protection) or 'none (such mail is quarantined)'}")
    click.echo(f"{config_path}: OK")


def _store_key_problem(config_path: Path, config: Config | None) -> str | None:
    """Whether the store key can be read; also when the rest of the file has problems (then the
    key file is taken from ``[store] key_file`` as written, if that is a string)."""
    if config is not None:
        key_file = config.path(config.store.key_file)
    else:
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return None  # reported already
        store = data.get("store", {})
        written = store.get("key_file", StoreConfig().key_file) if isinstance(store, dict) else None
        if not isinstance(written, str):
            return None  # reported already
        key_file = Path(written).expanduser()
        if not key_file.is_absolute():
            key_file = config_path.resolve().parent / key_file
    try:
        ContentCipher.from_key_file(key_file)
    except KeyFileError as exc:
        return f"store.key_file: {exc}"
    return None


@cli.group("listener")
def listener_group() -> None:
    """The SMTP listener's users (SMTP AUTH)."""


#: Shortest password ``siegel listener passwd`` accepts.
MIN_PASSWORD_LENGTH = 12


@listener_group.command("passwd")
@click.argument("users_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("user")
@click.option("--tenant", default=None,
              help="The tenant the user sends for (needed for a new user).")
@click.option("--sender", "senders", multiple=True,
              help="An envelope sender the user may use (repeatable; default: any address of "
                   "the tenant's own domains).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of "
                                                     "standard input instead of asking.")
@click.option("--delete", is_flag=True, help="Remove the user.")
def listener_passwd(users_file: Path, user: str, tenant: str | None, senders: tuple[str, ...],
                    password_stdin: bool, delete: bool) -> None:
    """Add a user to USERS_FILE (a listener's ``auth_users_file``), or set its password.

    The file keeps an Argon2id hash, never the password. A running gateway reads the changed
    file at the next AUTH; check it with ``siegel config check``.
    """
    from siegel import smtp_auth

    try:
        users = smtp_auth.read_users(users_file) if users_file.exists() else {}
    except smtp_auth.UsersFileError as exc:
        _fail("\n".join([f"{exc.path}: cannot be read"] + [f"  {p}" for p in exc.problems]), 2)
    existing = users.get(user)
    if delete:
        if existing is None:
            _fail(f"{users_file}: no user {user!r}")
        del users[user]
        smtp_auth.write_users(users_file, users.values())
        click.echo(f"{users_file}: removed {user}")
        return
    problem = smtp_auth.check_user_name(user)
    if problem:
        _fail(f"USER: {problem}")
    if existing is None and tenant is None:
        _fail(f"--tenant: {user!r} is a new user; say which tenant it sends for")
    try:
        allowed = tuple(smtp_auth.normalize_sender(s) for s in senders)
    except InvalidAddress as exc:
        _fail(f"--sender: {exc}")
        return
    if tenant is not None and (":" in tenant or not tenant.strip()):
        _fail(f"--tenant: {tenant!r} is not a tenant id")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        _fail(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    users[user] = smtp_auth.SmtpUser(
        name=user, password_hash=smtp_auth.hash_password(password),
        tenant=tenant if tenant is not None else existing.tenant if existing else "",
        senders=allowed or (existing.senders if existing and tenant is None else ()))
    smtp_auth.write_users(users_file, users.values())
    click.echo(f"{users_file}: {'changed' if existing else 'added'} {user} "
               f"(tenant {users[user].tenant}; senders "
               f"{', '.join(users[user].senders) or 'any of the tenant'})")


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(config_path: Path, as_json: bool) -> None:
    """List loaded plugins: where from, which hooks, what they register.

    Plugins blocked in the configuration (``[plugins] blocked``) are not loaded and not listed;
    without a configuration file every installed plugin is."""
    blocked = blocked_for_commands(config_path)
    if blocked is None:
        _fail(f"{config_path}: [plugins] blocked cannot be read (see 'siegel config check')", 2)
        return
    registry = PluginRegistry.load(blocked=blocked)
    if as_json:
        click.echo(json.dumps({
            "plugins": [{"name": p.name, "origin": p.origin, "module": p.module,
                         "distribution": p.distribution, "hooks": list(p.hooks),
                         "registers": registry.registered_by(p.name)}
                        for p in registry.plugins.values()],
            "failed": [{"name": f.name, "module": f.module, "error": f.error}
                       for f in registry.failures.values()],
        }, indent=2))
        return
    for info in registry.plugins.values():
        click.echo(f"{info.name}  [{info.origin}] {info.module}"
                   + (f" ({info.distribution})" if info.distribution else ""))
        click.echo(f"    hooks: {', '.join(info.hooks)}")
        for kind, names in registry.registered_by(info.name).items():
            click.echo(f"    {kind}: {', '.join(names)}")
    for failure in registry.failures.values():
        click.secho(f"{failure.name}  FAILED to load ({failure.module}): {failure.error}", fg="red")


@cli.command()
@config_option
@click.argument("message_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from", "sender", default=None, help="Envelope sender (default: From header).")
@click.option("--to", "recipients", multiple=True, help="Envelope recipient (default: To/Cc/Bcc).")
@click.option("--tenant", default=None, help="Tenant (default: from the sender or recipients).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--lang", type=click.Choice(["de", "en"]), default="de", show_default=True)
def explain(config_path: Path, message_file: Path, sender: str | None,
            recipients: tuple[str, ...], tenant: str | None, as_json: bool, lang: str) -> None:
    """Dry run: what would happen to MESSAGE_FILE, per recipient, and why.

    The envelope goes through the listener's own checks: a recipient the listener refuses at
    RCPT is shown with the listener's answer."""
    from siegel import admission
    from siegel import explain as explaining
    from siegel.admission import Refused

    config, registry = _load(config_path)
    raw = message_file.read_bytes()
    try:
        header_sender, header_recipients = (None, []) if sender and recipients else (
            explaining.header_envelope(raw))
        admitted = explaining.admit(config, sender if sender else header_sender,
                                    list(recipients) or header_recipients, raw)
    except InvalidAddress as exc:
        _fail(f"{message_file}: {exc}")
        return
    except Refused as refusal:
        _fail(f"{message_file}: the listener refuses it: {refusal.reply}")
        return
    envelope_sender, envelope_recipients = admitted.sender, list(admitted.recipients)
    if tenant is not None:
        # The operator names the tenant: explain what only the relay check refuses, anyway (it
        # is still listed as refused).
        envelope_recipients += [Address.parse(admission.smtp_path(r.address))
                                for r in admitted.refused if r.reply.startswith("550 5.7.1")]
    if not envelope_recipients:
        _fail(f"{message_file}: the listener refuses every recipient at RCPT:\n" + "\n".join(
            f"  {r.address}: {r.reply}" for r in admitted.refused)
            + "\n(give --tenant to explain a message that no tenant owns)")
        return
    if tenant is not None and tenant not in config.tenants:
        _fail(f"--tenant: unknown tenant {tenant!r} (known: {', '.join(config.tenants)})")

    async def work() -> explaining.Explanation:
        # The store is opened only to read plugin state (e.g. which certificates are known).
        async with open_store(config) as store:
            return await explaining.explain(config, registry, raw, envelope_sender,
                                            envelope_recipients, tenant,
                                            services=explaining.DryRun(store=store, config=config),
                                            refused=admitted.refused)

    try:
        result = _run(work())
    except (KeyFileError, StoreError) as exc:
        _fail(f"explain reads plugin state from the store: {exc}", 2)
        return
    except NoTenant as exc:
        _fail(f"{message_file}: {exc}; give --tenant")
        return
    click.echo(explaining.as_json(result, lang) if as_json else explaining.as_text(result, lang))


cli.add_command(queue)
cli.add_command(store_group)
cli.add_command(api_client)
cli.add_command(sink)
cli.add_command(send_test)


def config_path_in(args: Sequence[str]) -> Path:
    """The configuration file a command line names, before click parses it (the plugin commands
    must be known first): ``--config PATH``, ``--config=PATH`` or ``-c PATH`` anywhere in
    ``args``, else ``$SIEGEL_CONFIG``, else ``siegel.toml``."""
    for number, arg in enumerate(args):
        if arg in ("--config", "-c") and number + 1 < len(args):
            return Path(args[number + 1])
        if arg.startswith("--config="):
            return Path(arg.removeprefix("--config="))
    return default_config_path()


def blocked_for_commands(config_path: Path) -> tuple[str, ...] | None:
    """``[plugins] blocked`` of ``config_path``: empty when there is no such file (``siegel
    init``); ``None`` when the file exists but its list cannot be read, so that no plugin that
    might be blocked is imported (the command itself then reports the configuration error)."""
    if not config_path.exists():
        return ()
    try:
        return blocked_plugins(config_path)
    except ConfigError:
        return None


def build_cli(args: Sequence[str] | None = None) -> click.Group:
    """The command line with plugin commands added (plugins that fail to load are skipped).

    Plugins blocked in the configuration the command line names (:func:`config_path_in`) are
    not imported, so they add no command."""
    blocked = blocked_for_commands(config_path_in(sys.argv[1:] if args is None else args))
    if blocked is None:
        click.secho("warning: plugin commands not loaded: the configuration's [plugins] blocked "
                    "cannot be read", fg="yellow", err=True)
        return cli
    try:
        registry = PluginRegistry.load(blocked=blocked)
    except PluginError as exc:
        click.secho(f"warning: plugins not loaded: {exc}", fg="yellow", err=True)
    else:
        registry.register_commands(cli)
    return cli


def main() -> None:
    build_cli()(prog_name="siegel")
