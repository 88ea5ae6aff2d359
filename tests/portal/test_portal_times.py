"""The portal shows times in the tenant's time zone with the zone named."""

from __future__ import annotations

import html

from test_accounts_login import CITIZEN, CONFIG, PASSWORD, SETTINGS, add_account, log_in


async def test_account_page_shows_when_the_password_was_set_in_local_time(portal):
    async with portal(config=CONFIG, settings=SETTINGS) as p:
        await add_account(p, CITIZEN, PASSWORD)  # at the harness clock: 5 January 2026, 09:00 UTC
        assert (await log_in(p, CITIZEN, PASSWORD)).status_code == 303
        german = html.unescape((await p.client.get("/t/test/account?lang=de")).text)
        english = html.unescape((await p.client.get("/t/test/account?lang=en")).text)
    assert "zuletzt am 5. Januar 2026, 10:00 Uhr (MEZ) festgelegt" in german
    assert "last set on 5 January 2026, 10:00 CET." in english
    assert "UTC" not in german and "UTC" not in english
