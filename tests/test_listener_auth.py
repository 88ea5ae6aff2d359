"""SMTP AUTH on the listener, over real sockets: a real ``SmtpGateway`` with a test certificate,
spoken to by ``aiosmtplib`` and by the standard library's ``smtplib``.

What it must prove: AUTH is advertised and accepted only where a users file is configured and only
on an encrypted connection; PLAIN and LOGIN work with the Argon2id hashes that ``siegel listener
passwd`` writes; wrong passwords are throttled; an authenticated user sends only as its tenant's
(or its listed) senders; clients outside ``allowed_clients`` still need AUTH; no password reaches
the log.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import smtplib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosmtplib
import attrs
import pytest
from click.testing import CliRunner

from siegel.cli import cli
from siegel.config import ConfigError, config_from_mapping, deep_merge
from siegel.gateway import SmtpGateway
from siegel.manager import PluginRegistry
from siegel.smtp_auth import SmtpUser, hash_password, parse_users, read_users, write_users
from siegel.testing import Harness, default_config, make_message, self_signed_certificate

SENDER = "sachbearbeitung@behoerde.example"
SCANNER = "scanner@behoerde.example"
COLLEAGUE = "kollegin@behoerde.example"
CITIZEN = "buerger@example.net"
OTHER_TENANT = "amt@stadt.example"
PASSWORD = "korrekt Pferd Batterie Heftklammer"
SCANNER_PASSWORD = "Scanner-3OG-Flur-links"
# Connections come from 127.0.0.1; this allow-list makes them "outside".
OUTSIDE = {"allowed_clients": ["192.0.2.0/24"]}
TWO_TENANTS = {"tenants": {"stadt": {"name": "Stadt", "domains": ["stadt.example"],
                                     "plugin_set": "baseline"}}}


@pytest.fixture(scope="module")
def hashes_() -> dict[str, str]:
    """Hashing costs about 0.1 s; the tests share their hashes."""
    return {"clerk": hash_password(PASSWORD), "scanner": hash_password(SCANNER_PASSWORD)}


@pytest.fixture
def users_file(tmp_path, hashes_) -> Path:
    path = tmp_path / "smtp-users"
    write_users(path, [
        SmtpUser(name="clerk", password_hash=hashes_["clerk"], tenant="test"),
        SmtpUser(name="scanner", password_hash=hashes_["scanner"], tenant="test",
                 senders=(SCANNER,)),
    ])
    return path


@attrs.define
class Listener:
    harness: Harness
    host: str
    port: int
    cert_file: Path

    def client_tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert_file))

    async def connect(self, *, implicit: bool = False) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, timeout=10,
                                 start_tls=False, use_tls=implicit,
                                 tls_context=self.client_tls() if implicit else None)
        await client.connect()
        await client.ehlo()
        return client

    async def connect_tls(self) -> aiosmtplib.SMTP:
        client = await self.connect()
        await client.starttls(tls_context=self.client_tls(), server_hostname="localhost")
        await client.ehlo()
        return client


@pytest.fixture
def listener(siegel_harness, tmp_path):
    """``listener(auth=True, starttls="optional", **listener_keys)``: a running listener with a
    test certificate; ``auth`` names the users file in its configuration."""
    cert_file, key_file = self_signed_certificate(tmp_path)

    @asynccontextmanager
    async def factory(*, auth: bool = True, config: dict[str, Any] | None = None,
                      **keys: Any) -> AsyncIterator[Listener]:
        settings: dict[str, Any] = {
            "host": "127.0.0.1", "port": 0, "hostname": "localhost", "starttls": "optional",
            "tls_certificate": str(cert_file), "tls_key": str(key_file), **OUTSIDE}
        if auth:
            settings["auth_users_file"] = str(tmp_path / "smtp-users")
        settings.update(keys)
        async with siegel_harness(config=deep_merge({"listeners": [settings]},
                                                    config or {})) as harness:
            gateway = SmtpGateway(harness.runtime)
            [(host, port)] = await gateway.start()
            try:
                yield Listener(harness, host, port, cert_file)
            finally:
                await gateway.stop()

    return factory


async def command(client: aiosmtplib.SMTP, line: str) -> tuple[int, str]:
    response = await client.execute_command(line.encode("utf-8"))
    return response.code, response.message


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


async def auth_error(coroutine: Any) -> int:
    try:
        response = await coroutine
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code
    return int(response.code)


async def stored(harness: Harness) -> list[str]:
    return [r.message_id for r in await harness.store.list(limit=100)]


# -- advertised only where configured ------------------------------------------------------------


async def test_without_a_users_file_auth_is_neither_advertised_nor_accepted(listener):
    """The outside test found ``AUTH LOGIN PLAIN`` advertised after STARTTLS on a listener without
    any AUTH configured (aiosmtpd's default, with an authenticator that always fails)."""
    async with listener(auth=False) as lst:
        client = await lst.connect()
        assert not client.supports_extension("auth")
        client = await lst.connect_tls()
        assert "AUTH" not in client.last_ehlo_response.message
        assert not client.supports_extension("auth")
        code, _ = await command(client, f"AUTH PLAIN {plain('clerk', PASSWORD)}")
        assert code == 502
        # An outside client without AUTH is refused as before.
        code, text = await command(client, f"MAIL FROM:<{SENDER}>")
        assert (code, text.split()[0]) == (554, "5.7.1")
        await client.quit()


async def test_auth_is_not_offered_or_accepted_on_plain_text(listener, users_file):
    async with listener() as lst:
        client = await lst.connect()
        assert not client.supports_extension("auth")
        code, text = await command(client, f"AUTH PLAIN {plain('clerk', PASSWORD)}")
        assert (code, text.split()[0]) == (538, "5.7.11")
        code, text = await command(client, f"MAIL FROM:<{SENDER}>")
        assert (code, text.split()[0]) == (530, "5.7.0")
        await client.quit()


# -- PLAIN and LOGIN over STARTTLS, and what the user may send -----------------------------------


async def test_plain_after_starttls_then_send_as_the_tenant(listener, users_file):
    async with listener() as lst:
        client = await lst.connect_tls()
        assert client.supports_extension("auth")
        assert set(client.server_auth_methods) == {"plain", "login"}
        code, text = await command(client, f"MAIL FROM:<{SENDER}>")
        assert code == 530, text
        assert await auth_error(client.auth_plain("clerk", PASSWORD)) == 235
        raw = make_message(to=CITIZEN)
        await client.sendmail(SENDER, [CITIZEN], raw)
        await client.quit()
        [message_id] = await stored(lst.harness)
        message = await lst.harness.store.load(message_id)
        assert message.raw == raw
        assert message.tenant == "test"


async def test_login_mechanism_with_the_standard_library_client(listener, users_file):
    """smtplib as a mail program would use it: STARTTLS, AUTH LOGIN, send."""
    async with listener() as lst:
        def send() -> dict[str, Any]:
            with smtplib.SMTP(lst.host, lst.port, timeout=10) as smtp:
                smtp.starttls(context=lst.client_tls())
                smtp.ehlo()
                smtp.user, smtp.password = "scanner", SCANNER_PASSWORD
                code, _ = smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
                assert code == 235
                return smtp.sendmail(SCANNER, [COLLEAGUE], make_message(sender=SCANNER,
                                                                        to=COLLEAGUE))

        assert await asyncio.to_thread(send) == {}
        assert len(await stored(lst.harness)) == 1


async def test_a_user_sends_only_as_its_tenant_and_listed_senders(listener, users_file):
    async with listener(config=TWO_TENANTS) as lst:
        client = await lst.connect_tls()
        assert await auth_error(client.auth_login("scanner", SCANNER_PASSWORD)) == 235
        for refused in (SENDER, OTHER_TENANT, CITIZEN, ""):
            code, text = await command(client, f"MAIL FROM:<{refused}>")
            assert (code, text.split()[0]) == (553, "5.7.1"), refused
            assert "scanner may not send as" in text
        assert (await command(client, f"MAIL FROM:<{SCANNER.upper()}>"))[0] == 250
        await client.quit()

        client = await lst.connect_tls()
        assert await auth_error(client.auth_plain("clerk", PASSWORD)) == 235
        assert (await command(client, f"MAIL FROM:<{OTHER_TENANT}>"))[0] == 553
        assert (await command(client, f"MAIL FROM:<{CITIZEN}>"))[0] == 553
        assert (await command(client, f"MAIL FROM:<{COLLEAGUE}>"))[0] == 250
        await client.quit()


async def test_the_from_header_is_held_to_the_same_senders(listener, users_file):
    async with listener(config=TWO_TENANTS) as lst:
        client = await lst.connect_tls()
        assert await auth_error(client.auth_login("scanner", SCANNER_PASSWORD)) == 235
        without_from = b"To: kollegin@behoerde.example\r\nSubject: x\r\n\r\nText\r\n"
        two_from = make_message(sender=f"{SCANNER}, {SENDER}", to=COLLEAGUE)
        for raw in (make_message(sender=SENDER, to=COLLEAGUE),
                    make_message(sender=OTHER_TENANT, to=COLLEAGUE), two_from, without_from):
            await client.rset()
            assert (await command(client, f"MAIL FROM:<{SCANNER}>"))[0] == 250
            assert (await command(client, f"RCPT TO:<{COLLEAGUE}>"))[0] == 250
            with pytest.raises(aiosmtplib.SMTPDataError) as refused:
                await client.data(raw)
            assert (refused.value.code, refused.value.message.split()[0]) == (550, "5.7.1")
        assert await stored(lst.harness) == []
        await client.sendmail(SCANNER, [COLLEAGUE], make_message(sender=SCANNER, to=COLLEAGUE))
        assert len(await stored(lst.harness)) == 1
        await client.quit()


async def test_auth_over_implicit_tls(listener, users_file):
    async with listener(starttls="off", implicit_tls=True) as lst:
        client = await lst.connect(implicit=True)
        assert client.get_transport_info("ssl_object") is not None
        assert client.supports_extension("auth")
        assert not client.supports_extension("starttls")
        assert await auth_error(client.auth_plain("clerk", PASSWORD)) == 235
        await client.sendmail(SENDER, [COLLEAGUE], make_message(to=COLLEAGUE))
        await client.quit()
        assert len(await stored(lst.harness)) == 1


# -- wrong passwords -----------------------------------------------------------------------------


async def test_wrong_passwords_are_refused_then_throttled_and_never_logged(listener, users_file,
                                                                          caplog):
    caplog.set_level(logging.DEBUG)
    async with listener(auth_max_failures=2) as lst:
        client = await lst.connect_tls()
        assert await auth_error(client.auth_plain("clerk", "falsch-Passwort-1")) == 535
        assert await auth_error(client.auth_plain("nobody", "falsch-Passwort-2")) == 535
        # The limit is reached: even the right password is not checked now.
        assert await auth_error(client.auth_plain("clerk", PASSWORD)) == 454
        client.close()
        client = await lst.connect_tls()
        code, text = await command(client, f"AUTH PLAIN {plain('clerk', PASSWORD)}")
        assert (code, text.split()[0]) == (454, "4.7.0")
        assert (await command(client, f"MAIL FROM:<{SENDER}>"))[0] == 530
        await client.quit()
        assert await stored(lst.harness) == []
    logged = caplog.text
    assert "failed AUTH" in logged
    for secret in (PASSWORD, "falsch-Passwort-1", "falsch-Passwort-2", plain("clerk", PASSWORD)):
        assert secret not in logged


async def test_parallel_guesses_cannot_exceed_the_limit(listener, users_file):
    """Attempts being checked count against the limit: eight connections guessing at the same
    moment get three answers 535 and five 454, however the checks interleave."""
    async with listener(auth_max_failures=3) as lst:
        clients = [await lst.connect_tls() for _ in range(8)]
        bystander = await lst.connect()
        guessing = asyncio.gather(*(
            auth_error(client.auth_plain("clerk", f"geraten-{number}"))
            for number, client in enumerate(clients)))
        # Password checks run beside the event loop: another client is answered meanwhile.
        assert (await asyncio.wait_for(bystander.noop(), 5)).code == 250
        assert sorted(await guessing) == [454] * 5 + [535] * 3
        for client in [*clients, bystander]:
            client.close()


async def test_the_count_is_in_the_store_so_a_new_listener_keeps_it(listener, users_file):
    """Failures are counted in the store: a listener started anew on the same store (a restart,
    or a second instance) refuses the blocked client too, and a right password first gives
    back what its attempt counted."""
    async with listener(auth_max_failures=2) as lst:
        client = await lst.connect_tls()
        assert await auth_error(client.auth_plain("clerk", PASSWORD)) == 235
        await client.quit()
        client = await lst.connect_tls()
        assert await auth_error(client.auth_plain("clerk", "falsch-Passwort-1")) == 535
        assert await auth_error(client.auth_plain("clerk", "falsch-Passwort-2")) == 535
        client.close()
        second = SmtpGateway(lst.harness.runtime)
        [(host, port)] = await second.start()
        try:
            again = await attrs.evolve(lst, port=port, host=host).connect_tls()
            assert await auth_error(again.auth_plain("clerk", PASSWORD)) == 454
            again.close()
        finally:
            await second.stop()


async def test_malformed_auth_gets_501_and_counts_nothing(listener, users_file):
    async with listener(auth_max_failures=1) as lst:
        client = await lst.connect_tls()
        assert (await command(client, "AUTH PLAIN not-base64!"))[0] == 501
        assert (await command(client, "AUTH PLAIN " + base64.b64encode(b"no-nul").decode()))[0] == 501
        # Another authorization identity than the user itself is refused.
        other = base64.b64encode(f"admin\0clerk\0{PASSWORD}".encode()).decode()
        assert (await command(client, f"AUTH PLAIN {other}"))[0] == 501
        assert await auth_error(client.auth_plain("clerk", PASSWORD)) == 235
        await client.quit()


# -- the users file ------------------------------------------------------------------------------


async def test_a_changed_users_file_counts_without_restart_and_a_broken_one_fails_closed(
        listener, users_file, hashes_):
    async with listener() as lst:
        new_password = "neues Passwort fuer den Drucker"
        users = read_users(users_file)
        users["printer"] = SmtpUser(name="printer", password_hash=hash_password(new_password),
                                    tenant="test")
        write_users(users_file, users.values())
        client = await lst.connect_tls()
        assert await auth_error(client.auth_plain("printer", new_password)) == 235
        await client.quit()

        users_file.write_text(users_file.read_text() + "broken line\n")
        client = await lst.connect_tls()
        assert await auth_error(client.auth_plain("clerk", PASSWORD)) == 454
        await client.quit()


def test_the_users_file_reports_every_bad_line(hashes_):
    text = "\n".join([
        "# comment",
        f"clerk:{hashes_['clerk']}:test",
        "two:fields",
        f"clerk:{hashes_['clerk']}:test",
        "bad user:$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA:test",
        "plain:secret:test",
        f"scanner:{hashes_['scanner']}:test:not an address",
    ])
    users, problems = parse_users(text)
    assert problems == [
        "line 3: expected user:hash:tenant[:senders], found 2 fields",
        "line 4: user 'clerk' is listed twice",
        "line 5: user name 'bad user' may not contain ':', ',', spaces or control characters",
        "line 6: user 'plain': the password hash is not an Argon2 hash (write it with "
        "'siegel listener passwd')",
        "line 7: user 'scanner': sender 'not an address': 'not an address' has no '@' and domain",
    ]
    assert set(users) == {"clerk", "scanner"}


def test_config_check_names_every_auth_problem(tmp_path, hashes_):
    users = tmp_path / "users"
    write_users(users, [
        SmtpUser(name="a", password_hash=hashes_["clerk"], tenant="nope"),
        SmtpUser(name="b", password_hash=hashes_["clerk"], tenant="test",
                 senders=("x@example.net",)),
    ])
    data = deep_merge(default_config(), {"listeners": [
        {"auth_users_file": str(users)},
        {"port": 10026, "auth_users_file": str(tmp_path / "missing")},
        {"port": 10027, "implicit_tls": True, "starttls": "optional"},
    ]})
    with pytest.raises(ConfigError) as info:
        config_from_mapping(data, PluginRegistry.load(), source="siegel.toml", base_dir=tmp_path)
    assert sorted(info.value.problems) == sorted([
        "listeners[0].auth_users_file: SMTP AUTH is offered only over TLS; set starttls (with "
        "tls_certificate and tls_key) or implicit_tls",
        "listeners[0].auth_users_file: user 'a': unknown tenant 'nope' (known: test)",
        "listeners[0].auth_users_file: user 'b': sender x@example.net is not in a domain of "
        "tenant 'test'",
        "listeners[1].auth_users_file: SMTP AUTH is offered only over TLS; set starttls (with "
        "tls_certificate and tls_key) or implicit_tls",
        f"listeners[1].auth_users_file: {tmp_path / 'missing'}: file not found (add a user "
        "with 'siegel listener passwd FILE USER --tenant ID')",
        "listeners[2].starttls: 'optional' needs tls_certificate and tls_key",
        "listeners[2].implicit_tls: needs tls_certificate and tls_key",
        "listeners[2].implicit_tls: the connection is encrypted from the start; set starttls = "
        '"off"',
    ])


# -- siegel listener passwd ----------------------------------------------------------------------


def test_passwd_adds_changes_and_removes_users(tmp_path):
    path = tmp_path / "users"
    runner = CliRunner()
    added = runner.invoke(cli, ["listener", "passwd", str(path), "scanner", "--tenant", "test",
                                "--sender", "Scanner@Behoerde.example", "--password-stdin"],
                          input="erstes Passwort 123\n")
    assert added.exit_code == 0, added.output
    assert "added scanner (tenant test; senders scanner@behoerde.example)" in added.output
    assert "erstes Passwort" not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    first = read_users(path)["scanner"]
    assert first.password_hash.startswith("$argon2id$")
    assert first.senders == ("scanner@behoerde.example",)

    changed = runner.invoke(cli, ["listener", "passwd", str(path), "scanner"],
                            input="zweites Passwort 456\nzweites Passwort 456\n")
    assert changed.exit_code == 0, changed.output
    second = read_users(path)["scanner"]
    assert second.password_hash != first.password_hash
    assert (second.tenant, second.senders) == ("test", ("scanner@behoerde.example",))

    for args, stdin, error in (
        (["new", "--password-stdin"], "lang genug 12345\n", "--tenant: 'new' is a new user"),
        (["new", "--tenant", "test", "--password-stdin"], "kurz\n", "at least 12 characters"),
        (["a:b", "--tenant", "test", "--password-stdin"], "lang genug 12345\n", "USER: "),
        (["new", "--tenant", "test", "--sender", "kein-at", "--password-stdin"],
         "lang genug 12345\n", "--sender: "),
    ):
        result = runner.invoke(cli, ["listener", "passwd", str(path), *args], input=stdin)
        assert result.exit_code == 1, result.output
        assert error in result.output
    assert set(read_users(path)) == {"scanner"}

    removed = runner.invoke(cli, ["listener", "passwd", str(path), "scanner", "--delete"])
    assert removed.exit_code == 0, removed.output
    assert read_users(path) == {}
