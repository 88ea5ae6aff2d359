"""Settings of an archive plugin, checked with siegel's settings toolkit: every wrong value of the
table is reported at once, each with its key path."""

from __future__ import annotations

import attrs

from siegel import ConfigPath, ConfigSection, SettingError, hookimpl
from siegel.settings import address, check_fields, checked, port, positive, readable_file


@attrs.frozen(kw_only=True)
class ArchiveSettings:
    host: str = "archiv.behoerde.example"
    port: int = checked(443, port)
    timeout_seconds: float = checked(30.0, positive)
    ca_file: ConfigPath | None = checked(None, readable_file)
    report_to: str | None = checked(None, address)

    def __attrs_post_init__(self) -> None:
        problems = []
        if self.host.startswith("http"):
            problems.append(SettingError("host", "a host name, not a URL"))
        check_fields(self, problems)


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name="archive", type=ArchiveSettings,
                          description="Where the archive plugin sends copies")]
