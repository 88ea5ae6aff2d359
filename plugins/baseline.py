"""The built-in plugin set ``baseline``: the built-in classifiers, the SMTP relay, sender notices and
the audit log, with secure defaults. Protection methods are enabled per tenant on top of it.

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
        description="Built-in classification, relay, notices; every external recipient needs protection",
        plugins=BUILTIN_PLUGINS,
    )]
