"""PortalSettings: defaults and validation with the key that is wrong."""

from __future__ import annotations

import pytest

from siegel import SettingError
from siegel.portal import PortalSettings


def test_defaults():
    settings = PortalSettings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8025)
    assert settings.base_url == "http://127.0.0.1:8025"
    assert settings.session_idle_minutes == 15 and settings.session_absolute_hours == 8
    assert not settings.behind_tls and settings.trusted_proxies == ()
    assert not settings.demo_pages and not settings.access_log
    assert PortalSettings(host="::1", port=9000).base_url == "http://[::1]:9000"
    assert PortalSettings(public_base_url="https://p.example/x/").base_url == "https://p.example/x"


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"port": 70000}, "port"),
    ({"public_base_url": "ftp://x"}, "public_base_url"),
    ({"public_base_url": "https://x/?a=1"}, "public_base_url"),
    ({"behind_tls": True, "public_base_url": "http://x"}, "public_base_url"),
    ({"trusted_proxies": ["10.0.0.0/8", "nonsense"]}, "trusted_proxies"),
    ({"session_idle_minutes": 0}, "session_idle_minutes"),
    ({"session_idle_minutes": 120, "session_absolute_hours": 1}, "session_absolute_hours"),
    ({"max_form_bytes": -1}, "max_form_bytes"),
])
def test_invalid_settings_name_the_key(kwargs, key):
    with pytest.raises(SettingError) as info:
        PortalSettings(**kwargs)
    assert info.value.key == key
