"""The ``siegel`` command line, run in-process with click's CliRunner on directories made by
``siegel init``; the queue commands act on a store that a real runtime filled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from siegel import RecipientState, __version__
from siegel.bootstrap import bootstrap
from siegel.cli import cli
from siegel.runtime import Runtime, open_store
from siegel.sink import SmtpSink, free_port
from siegel.store import RecipientRecord
from siegel.testing import make_message

CLERK = "sachbearbeitung@demo.example"
COLLEAGUE = "kollege@demo.example"
CITIZEN = "buerger@example.net"
UNKNOWN_ID = "0000000000000000000000zzzz"


def invoke(*args: str | Path, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    directory = tmp_path / "siegel"
    result = invoke("init", directory)
    assert result.exit_code == 0, result.output
    return directory


@pytest.fixture
def config(workdir: Path) -> Path:
    return workdir / "siegel.toml"


def edit(config: Path, old: str, new: str) -> None:
    text = config.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not in the template exactly once"
    config.write_text(text.replace(old, new), encoding="utf-8")


# -- init ----------------------------------------------------------------------------------------


def test_init_creates_config_key_and_store_folder(tmp_path):
    directory = tmp_path / "neu"
    result = invoke("init", directory)
    assert result.exit_code == 0, result.output
    config = directory / "siegel.toml"
    key = directory / "keys" / "store.key"
    assert config.is_file() and key.is_file() and (directory / "var").is_dir()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "[[listeners]]" in config.read_text(encoding="utf-8")
    assert f"siegel serve --config {config}" in result.output

    config.write_text(config.read_text(encoding="utf-8") + "# edited by the admin\n",
                      encoding="utf-8")
    before = config.read_bytes(), key.read_bytes()
    again = invoke("init", directory)
    assert again.exit_code == 0, again.output
    assert (config.read_bytes(), key.read_bytes()) == before
    assert again.output.count("left as it is") == 2


# -- config check --------------------------------------------------------------------------------


def test_config_check_accepts_the_template(config):
    result = invoke("config", "check", "--config", config)
    assert result.exit_code == 0, result.output
    assert "tenant demo (Demo-Behörde)" in result.output
    assert "protection none (such mail is quarantined)" in result.output
    assert result.output.rstrip().endswith(f"{config}: OK")


TENANT_RELAY = '\n[tenants.demo.settings.relay]\nhost = "mail.example.net"\n'


@pytest.mark.parametrize(("old", "new", "key_path", "what"), [
    ('plugin_set = "baseline"', 'domain = "demo.example"\nplugin_set = "baseline"',
     "tenants.demo.domain", "unknown key"),
    ("port = 10025", 'port = "x"', "listeners[0].port", "expected a number"),
    ('plugin_set = "baseline"', 'plugin_set = "nope"', "tenants.demo.plugin_set",
     "unknown plugin set 'nope'"),
    ('pattern = "\\\\bAZ', 'pattern = "[\\\\bAZ',
     "tenants.demo.settings.content_rules.rules[0].pattern", "not a valid regular expression"),
    ('language = "de"', 'language = "de"' + TENANT_RELAY, "tenants.demo.settings.relay.tls",
     "unencrypted to mail.example.net"),
    ("retention_days = 7", "retention_days = 0", "store.retention_days", "greater than 0"),
    ('language = "de"', 'language = "fr"', "tenants.demo.language", "fr"),
    ("[tenants.demo.settings.sender_trigger]", "[tenants.demo.settings.sender_trigger_typo]",
     "tenants.demo.settings.sender_trigger_typo", "no loaded plugin reads this section"),
])
def test_config_errors_name_the_key_path_and_exit_2(config, old, new, key_path, what):
    edit(config, old, new)
    result = invoke("config", "check", "--config", config)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"{config}: configuration error"), result.output
    [line] = [line for line in result.output.splitlines() if key_path in line]
    assert line.strip().startswith(f"{key_path}: "), line
    assert what in line
    assert "OK" not in result.output


def test_toml_syntax_error_is_reported_with_its_line(config):
    lines = config.read_text(encoding="utf-8").splitlines()
    number = next(i for i, line in enumerate(lines, 1) if line.startswith("port = 10025"))
    edit(config, "port = 10025", "port = ")
    result = invoke("config", "check", "--config", config)
    assert result.exit_code == 2, result.output
    assert f"line {number}" in result.output
    assert str(config) in result.output


def test_missing_config_file_says_how_to_create_one(tmp_path):
    result = invoke("config", "check", "--config", tmp_path / "nirgends.toml")
    assert result.exit_code == 2
    assert "siegel init" in result.output


def test_missing_store_key_is_a_config_error(config, workdir):
    (workdir / "keys" / "store.key").unlink()
    result = invoke("config", "check", "--config", config)
    assert result.exit_code == 2
    assert "store.key" in result.output and "siegel init" in result.output


# -- plugins -------------------------------------------------------------------------------------


BUILTINS = {
    "recipient_scope": "siegel_register_classifiers",
    "sender_trigger": "siegel_register_rewriters",
    "content_rules": "siegel_register_classifiers",
    "fit_for_email": "siegel_register_classifiers",
    "smtp_relay": "siegel_register_delivery_channels",
    "sender_notices": "siegel_register_notifiers",
    "audit_log": "siegel_audit_event",
    "baseline": "siegel_register_plugin_sets",
}


def test_plugins_lists_the_builtins_with_their_hooks():
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    blocks = {}
    for line in result.output.splitlines():
        if not line.startswith(" "):
            name = line.split()[0]
            blocks[name] = [line]
        else:
            blocks[name].append(line.strip())
    for name, hook in BUILTINS.items():
        assert "[builtin]" in blocks[name][0]
        [hooks] = [line for line in blocks[name] if line.startswith("hooks: ")]
        assert hook in hooks.removeprefix("hooks: ").split(", ")
    assert "delivery channels: smtp" in blocks["smtp_relay"]
    assert "plugin sets: baseline" in blocks["baseline"]


def test_plugins_json():
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    plugins = {p["name"]: p for p in data["plugins"]}
    for name, hook in BUILTINS.items():
        assert plugins[name]["origin"] == "builtin"
        assert plugins[name]["module"] == f"siegel.plugins.{name}"
        assert hook in plugins[name]["hooks"]
    assert plugins["smtp_relay"]["registers"]["delivery channels"] == ["smtp"]
    assert data["failed"] == []


# -- explain -------------------------------------------------------------------------------------


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "antrag.eml"
    path.write_bytes(make_message(sender=CLERK, to=[COLLEAGUE, CITIZEN],
                                  subject="Ihr Antrag AZ 1234/2025", body="Guten Tag\n"))
    return path


def test_explain_text_from_the_headers(config, sample):
    result = invoke("explain", "--config", config, sample)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "tenant: demo" in out
    assert f"sender: {CLERK}" in out
    internal, external = out.split(f"{COLLEAGUE}: internal (demo.example)")[1].split(
        f"{CITIZEN}: external")
    assert "verdict: PLAIN  ->  deliver unchanged" in internal
    assert "verdict: PROTECT  ->  quarantine (no protection method" in external
    assert "content_rules/content.aktenzeichen" in external
    assert "Aktenzeichen gefunden" in external  # German by default


def test_explain_json_with_envelope_options(config, sample):
    result = invoke("explain", "--config", config, sample, "--json", "--lang", "en",
                    "--from", "leitung@demo.example", "--to", "x@partner.example",
                    "--to", COLLEAGUE)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["tenant"] == "demo"
    assert data["sender"] == "leitung@demo.example"
    assert [r["recipient"] for r in data["recipients"]] == ["x@partner.example", COLLEAGUE]
    partner = data["recipients"][0]
    assert partner["internal"] is True and partner["internal_rule"] == "partner.example"
    assert partner["verdict"] == "plain" and partner["outcome"] == "deliver unchanged"
    assert any(f["code"] == "recipient.internal" and "is internal" in f["reason"]
               for f in partner["findings"])


def test_explain_without_recipients_asks_for_to(config, tmp_path):
    path = tmp_path / "leer.eml"
    path.write_bytes(b"From: sachbearbeitung@demo.example\r\nSubject: x\r\n\r\nhallo\r\n")
    result = invoke("explain", "--config", config, path)
    assert result.exit_code != 0
    assert "--to" in result.output


def test_explain_for_no_tenant_asks_for_tenant(config, sample):
    result = invoke("explain", "--config", config, sample, "--from", "a@example.org",
                    "--to", "b@example.org")
    assert result.exit_code != 0
    assert "--tenant" in result.output


# -- queue ---------------------------------------------------------------------------------------


@pytest.fixture
def relay() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def queue_config(config: Path, relay: SmtpSink) -> Path:
    """The template, relaying to a test sink, with a releasable policy quarantine for mail that
    contains "Rechtsfolgenbelehrung" (even to internal recipients)."""
    edit(config, "port = 10026", f"port = {relay.port}")
    with config.open("a", encoding="utf-8") as handle:
        handle.write('\n[tenants.demo.settings.fit_for_email]\nphrases = ["Rechtsfolgenbelehrung"]'
                     '\naction = "hold"\nscope = "all"\n')
    return config


def submit_and_process(config: Path, *messages: tuple[bytes, str, list[str]]) -> list[str]:
    async def work() -> list[str]:
        loaded, registry = bootstrap(config)
        runtime = Runtime(loaded, registry, open_store(loaded))
        await runtime.store.open()
        try:
            ids = [await runtime.submit(raw, sender, rcpts) for raw, sender, rcpts in messages]
            await runtime.run_until_idle()
        finally:
            await runtime.store.close()
        return ids

    return asyncio.run(work())


def process(config: Path) -> None:
    submit_and_process(config)


def records(config: Path, message_id: str) -> dict[str, RecipientRecord]:
    async def work() -> dict[str, RecipientRecord]:
        loaded, _ = bootstrap(config)
        async with open_store(loaded) as store:
            return {r.recipient: r for r in await store.recipients(message_id)}

    return asyncio.run(work())


def test_queue_list_and_show(queue_config, relay):
    [message_id] = submit_and_process(queue_config, (
        make_message(sender=CLERK, to=[COLLEAGUE, CITIZEN], subject="Bescheid"), CLERK,
        [COLLEAGUE, CITIZEN]))
    result = invoke("queue", "list", "--config", queue_config)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if message_id in line]
    assert len(lines) == 2
    assert any("quarantined" in line and CITIZEN in line for line in lines)
    assert any("delivered" in line and COLLEAGUE in line for line in lines)

    result = invoke("queue", "list", "--config", queue_config, "--state", "quarantined", "--json")
    assert result.exit_code == 0, result.output
    [entry] = [e for e in json.loads(result.output) if e["message_id"] == message_id]
    assert (entry["recipient"], entry["state"], entry["from"]) == (CITIZEN, "quarantined", CLERK)
    assert any("no protection method" in reason for reason in entry["reasons"])

    result = invoke("queue", "show", "--config", queue_config, message_id, "--headers")
    assert result.exit_code == 0, result.output
    assert f"message {message_id}  tenant demo  origin smtp" in result.output
    assert f"{CITIZEN}: quarantined" in result.output
    assert f"{COLLEAGUE}: delivered" in result.output
    assert "Subject: Bescheid" in result.output
    events = result.output.split("events:")[1]
    for kind in ("accepted", "classified", "delivered", "quarantined"):
        assert f" {kind} " in events


def test_queue_release_lets_a_policy_quarantine_out(queue_config, relay):
    raw = make_message(sender=CLERK, to=COLLEAGUE, body="Anbei die Rechtsfolgenbelehrung.\n")
    [message_id] = submit_and_process(queue_config, (raw, CLERK, [COLLEAGUE]))
    assert records(queue_config, message_id)[COLLEAGUE].state is RecipientState.QUARANTINED
    assert relay.to(COLLEAGUE) == []

    result = invoke("queue", "release", "--config", queue_config, message_id)
    assert result.exit_code == 0, result.output
    assert "1 copy released" in result.output
    record = records(queue_config, message_id)[COLLEAGUE]
    assert (record.state, record.released) == (RecipientState.ACCEPTED, True)

    process(queue_config)
    assert records(queue_config, message_id)[COLLEAGUE].state is RecipientState.DELIVERED
    [delivered] = relay.to(COLLEAGUE)
    assert delivered.raw == raw

    # Nothing is quarantined any more: a second release releases nothing.
    again = invoke("queue", "release", "--config", queue_config, message_id)
    assert again.exit_code == 0 and "0 copies released" in again.output


def test_queue_release_never_overrides_protection(queue_config, relay):
    [message_id] = submit_and_process(queue_config, (
        make_message(sender=CLERK, to=CITIZEN), CLERK, [CITIZEN]))
    result = invoke("queue", "release", "--config", queue_config, message_id,
                    "--recipient", CITIZEN)
    assert result.exit_code == 0 and "1 copy released" in result.output
    process(queue_config)
    record = records(queue_config, message_id)[CITIZEN]
    assert (record.state, record.released) == (RecipientState.QUARANTINED, True)
    assert relay.to(CITIZEN) == []


def test_queue_retry_requeues_without_releasing(queue_config, relay):
    [message_id] = submit_and_process(queue_config, (
        make_message(sender=CLERK, to=[CITIZEN, COLLEAGUE]), CLERK, [CITIZEN, COLLEAGUE]))
    result = invoke("queue", "retry", "--config", queue_config, message_id)
    assert result.exit_code == 0, result.output
    assert "1 copy queued again" in result.output  # the delivered copy stays delivered
    states = records(queue_config, message_id)
    assert (states[CITIZEN].state, states[CITIZEN].released) == (RecipientState.ACCEPTED, False)
    assert states[COLLEAGUE].state is RecipientState.DELIVERED
    process(queue_config)
    assert records(queue_config, message_id)[CITIZEN].state is RecipientState.QUARANTINED
    assert len(relay.to(COLLEAGUE)) == 1
    assert relay.to(CITIZEN) == []


def test_queue_purge(queue_config):
    first, second = submit_and_process(
        queue_config,
        (make_message(sender=CLERK, to=CITIZEN, subject="eins"), CLERK, [CITIZEN]),
        (make_message(sender=CLERK, to=CITIZEN, subject="zwei"), CLERK, [CITIZEN]))
    # Without --yes it asks; "no" keeps the message.
    result = invoke("queue", "purge", "--config", queue_config, first, input="n\n")
    assert result.exit_code != 0
    assert records(queue_config, first)

    result = invoke("queue", "purge", "--config", queue_config, "--yes", first)
    assert result.exit_code == 0, result.output
    assert "1 purged" in result.output
    assert records(queue_config, first) == {}
    assert records(queue_config, second)  # the other message is untouched
    shown = invoke("queue", "show", "--config", queue_config, first)
    assert shown.exit_code == 1
    assert f"no message {first}" in shown.output


@pytest.mark.parametrize("command", [
    ["queue", "show"], ["queue", "retry"], ["queue", "release"], ["queue", "purge", "--yes"]])
def test_queue_commands_on_an_unknown_id_fail_clearly(queue_config, command):
    result = invoke(*command, "--config", queue_config, UNKNOWN_ID)
    assert result.exit_code == 1, result.output
    assert f"no message {UNKNOWN_ID}" in result.output
    assert "Traceback" not in result.output


def test_queue_list_leaves_the_running_gateways_leases_alone(queue_config):
    async def claim_list_claim() -> tuple[int, int]:
        loaded, registry = bootstrap(queue_config)
        runtime = Runtime(loaded, registry, open_store(loaded))
        await runtime.store.open()
        try:
            await runtime.submit(make_message(sender=CLERK, to=COLLEAGUE), CLERK, [COLLEAGUE])
            now = runtime.clock.now()
            claimed = await runtime.store.claim_due(now, 10, lease_seconds=900)
            # An administrator looks at the queue while the worker is delivering the copy.
            listed = await asyncio.to_thread(invoke, "queue", "list", "--config", queue_config)
            assert listed.exit_code == 0, listed.output
            return len(claimed), len(await runtime.store.claim_due(now, 10, lease_seconds=900))
        finally:
            await runtime.store.close()

    assert asyncio.run(claim_list_claim()) == (1, 0)


def test_queue_list_on_an_empty_store(queue_config):
    result = invoke("queue", "list", "--config", queue_config)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "no messages"


# -- python -m siegel ----------------------------------------------------------------------------


def test_python_m_siegel_version():
    result = subprocess.run([sys.executable, "-m", "siegel", "--version"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONWARNINGS": "error"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"siegel, version {__version__}"


# -- serve and send-test -------------------------------------------------------------------------


def test_serve_without_listeners_only_delivers_and_stops_on_sigterm(config):
    text = config.read_text(encoding="utf-8")
    block = text[text.index("[[listeners]]"):text.index("[store]")]
    config.write_text("listeners = []\n" + text.replace(block, ""), encoding="utf-8")
    # The template's portal port is fixed (8025); another siegel on this machine may hold it.
    edit(config, "port = 8025", f"port = {free_port()}")
    log = config.parent / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen([sys.executable, "-m", "siegel", "serve", "--config", config],
                                  stdout=output, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 20
        while "stop with Ctrl-C" not in log.read_text(errors="replace"):
            assert server.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0, log.read_text(errors="replace")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    output_text = log.read_text(errors="replace")
    assert "only delivering what is queued" in output_text
    assert "listening on" not in output_text
    assert "stopping" in output_text and "Traceback" not in output_text


def test_send_test_delivers_a_test_message(relay):
    result = invoke("send-test", "--port", relay.port, "--from", CLERK, "--to", CITIZEN,
                    "--customer")
    assert result.exit_code == 0, result.output
    assert f"sent to 127.0.0.1:{relay.port}" in result.output
    [mail] = relay.to(CITIZEN)
    assert mail.mail_from == CLERK
    assert mail.parsed["Subject"] == "siegel Testnachricht"
    assert mail.parsed["X-Siegel-Encrypt"] == "yes"


def test_send_test_to_nothing_fails_clearly():
    port = free_port()
    result = invoke("send-test", "--port", port, "--from", CLERK, "--to", CITIZEN)
    assert result.exit_code == 1
    assert f"127.0.0.1:{port}:" in result.output


def test_init_from_the_district_example_starts_a_valid_district(tmp_path):
    example = Path(__file__).resolve().parent.parent / "examples" / "district.toml"
    result = invoke("init", str(tmp_path / "district"), "--from", str(example))
    assert result.exit_code == 0, result.output
    checked = invoke("config", "check", "--config", str(tmp_path / "district" / "siegel.toml"))
    assert checked.exit_code == 0, checked.output
    assert "protection password_pdf" in checked.output
    assert "goettingen.de" in checked.output
