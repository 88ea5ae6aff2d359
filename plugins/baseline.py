"""The built-in plugin set ``baseline``: every built-in plugin, secure defaults.

External recipients need protection by themselves (``recipient_scope.external = "protect"``), so a
tenant that enables only this set and no protection method quarantines all external mail rather
than letting it out in plain text.
"""

from __future__ import annotations

from siegel import PluginSet, hookimpl

BUILTIN_PLUGINS = (
    "recipient_scope",
    "sender_trigger",
    "content_rules",
    "fit_for_email",
    "smtp_relay",
    "sender_notices",
    "audit_log",
)


@hookimpl
def siegel_register_plugin_sets() -> list[PluginSet]:
    return [PluginSet(
        name="baseline",
        description="All built-in plugins; every external recipient needs protection",
        plugins=BUILTIN_PLUGINS,
    )]
