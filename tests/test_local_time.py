"""Times that people read are in the tenant's time zone with the zone named, across DST changes;
a wrong zone name is refused when the configuration is loaded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from siegel import RecipientState
from siegel.clock import FrozenClock
from siegel.config import ConfigError, config_from_mapping
from siegel.localtime import UnknownTimeZone, format_moment, time_zone
from siegel.manager import PluginRegistry
from siegel.testing import make_message

BERLIN = time_zone("Europe/Berlin")


@pytest.fixture(scope="module")
def registry():
    return PluginRegistry.load()


def tenant(**extra):
    return {"name": "T", "domains": ["t.example"], "plugin_set": "baseline", **extra}


def test_tenants_default_to_berlin_and_name_the_zone(registry, tmp_path):
    config = config_from_mapping({"tenants": {"t": tenant()}}, registry, source="x",
                                 base_dir=tmp_path)
    t = config.tenants["t"]
    assert t.time_zone.key == "Europe/Berlin"
    moment = datetime(2026, 12, 3, 16, 5, tzinfo=UTC)
    assert t.format_time(moment, "de") == "3. Dezember 2026, 17:05 Uhr (MEZ)"
    assert t.format_time(moment, "en") == "3 December 2026, 17:05 CET"
    assert t.format_time(moment) == "3. Dezember 2026, 17:05 Uhr (MEZ)"  # the tenant's language


@pytest.mark.parametrize("name", ["Europe/Berln", "MEZ", "../../etc/passwd", "", "Europe/"])
def test_an_unknown_time_zone_is_a_precise_config_error(registry, tmp_path, name):
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"tenants": {"t": tenant(time_zone=name)}}, registry,
                            source="siegel.toml", base_dir=tmp_path)
    assert info.value.problems == [
        f"tenants.t.time_zone: unknown time zone {name!r}; use an IANA name such as "
        "'Europe/Berlin' or 'UTC'"]


def test_a_time_zone_must_be_a_string(registry, tmp_path):
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"tenants": {"t": tenant(time_zone=1)}}, registry,
                            source="siegel.toml", base_dir=tmp_path)
    assert info.value.problems == ["tenants.t.time_zone: expected a string, got int 1"]


@pytest.mark.parametrize(("utc", "de", "en"), [
    # Spring 2026: 02:00 MEZ becomes 03:00 MESZ on 29 March (01:00 UTC).
    (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), "29. März 2026, 01:59 Uhr (MEZ)",
     "29 March 2026, 01:59 CET"),
    (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "29. März 2026, 03:00 Uhr (MESZ)",
     "29 March 2026, 03:00 CEST"),
    # Autumn 2026: 02:30 happens twice on 25 October; only the zone name tells them apart.
    (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "25. Oktober 2026, 02:30 Uhr (MESZ)",
     "25 October 2026, 02:30 CEST"),
    (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "25. Oktober 2026, 02:30 Uhr (MEZ)",
     "25 October 2026, 02:30 CET"),
])
def test_times_cross_the_dst_change_with_the_right_zone(utc, de, en):
    assert format_moment(utc, BERLIN, "de") == de
    assert format_moment(utc, BERLIN, "en") == en


def test_other_zones_are_named_too():
    moment = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert format_moment(moment, time_zone("UTC"), "en") == "5 January 2026, 09:00 UTC"
    assert format_moment(moment, time_zone("America/New_York"), "de") == (
        "5. Januar 2026, 04:00 Uhr (GMT-05:00)")
    with pytest.raises(ValueError, match="naive"):
        format_moment(datetime(2026, 1, 5, 9, 0), BERLIN, "de")
    with pytest.raises(UnknownTimeZone):
        time_zone("Mars/Olympus_Mons")


async def test_notices_and_the_invitation_show_local_time_across_the_dst_change(siegel_harness):
    # Received on 25 March (MEZ); the 5-day hold ends on 30 March, after the change (MESZ).
    clock = FrozenClock(datetime(2026, 3, 25, 9, 0, tzinfo=UTC))
    config = {"tenants": {"test": {"plugin_set": "district", "domains": ["behoerde.example"]}},
              "portal": {"public_base_url": "https://post.behoerde.example"}}
    async with siegel_harness(config=config, clock=clock) as harness:
        message_id = await harness.send(make_message(to="buerger@example.net", subject="Bescheid",
                                                     headers={"X-Siegel-Encrypt": "yes"}))
        await harness.process()
        assert (await harness.states(message_id))["buerger@example.net"] is RecipientState.HELD
        harness.clock.advance(days=5, minutes=1)  # past the hold, after the change to MESZ
        await harness.process()
        assert (await harness.states(message_id))["buerger@example.net"] is (
            RecipientState.EXPIRED)
    [invitation] = harness.sink.to("buerger@example.net")
    text = invitation.parsed.get_content()
    assert "bis zum 30. März 2026, 11:00 Uhr (MESZ) gültig" in text
    assert "valid until 30 March 2026, 11:00 CEST" in text
    assert "UTC" not in text
    [delayed] = harness.notices("delayed")
    assert delayed["Date"].datetime.utcoffset().total_seconds() == 3600  # MEZ, +0100
    [expired] = harness.notices("expired")
    assert expired["Date"].datetime.utcoffset().total_seconds() == 7200  # MESZ, +0200
    for notice in (delayed, expired):
        text = notice.get_content()
        assert "Eingang:   25. März 2026, 10:00 Uhr (MEZ)" in text
        assert "Received:  25 March 2026, 10:00 CET" in text


async def test_a_quarantine_notice_shows_the_received_time_in_the_tenants_zone(siegel_harness):
    clock = FrozenClock(datetime(2026, 7, 1, 22, 30, tzinfo=UTC))
    config = {"tenants": {"test": {"time_zone": "Europe/Lisbon"}}}
    async with siegel_harness(config=config, clock=clock) as harness:
        await harness.send(make_message(to="buerger@example.net"))
        await harness.process()
    [notice] = harness.notices("quarantined")
    text = notice.get_content()
    assert "Eingang:   1. Juli 2026, 23:30 Uhr (" in text  # WEST, Lisbon summer time
    assert "Received:  1 July 2026, 23:30 " in text
    assert "UTC" not in text
