"""siegel: a plugin-based secure-communication gateway for public administration.

The public API for plugin authors and library users. Everything a plugin needs is importable from
here; the modules behind it are implementation detail unless documented.
"""

from siegel import mailtext, mime
from siegel.addresses import Address, DomainMatch, DomainSet, InvalidAddress
from siegel.config import Config, ConfigError, ConfigPath, SettingError, Tenant, load_config
from siegel.manager import PluginError, PluginRegistry
from siegel.model import (
    AuditEvent,
    Availability,
    DeliveryResult,
    DeliveryStatus,
    Envelope,
    Finding,
    Held,
    Level,
    Message,
    Notice,
    NoticeKind,
    Origin,
    Outgoing,
    Protected,
    ProtectionResult,
    RecipientState,
    RetryLater,
    SystemMail,
    Text,
    Verdict,
)
from siegel.plugin import (
    Classifier,
    Clock,
    ConfigSection,
    DeliveryChannel,
    Notifier,
    PluginSet,
    PortalRoute,
    ProtectionMethod,
    RecipientContext,
    Rewriter,
    Services,
    Transformer,
    hookimpl,
)
from siegel.store import StoreError

__version__ = "0.1.0"

__all__ = [
    "Address",
    "AuditEvent",
    "Availability",
    "Classifier",
    "Clock",
    "Config",
    "ConfigError",
    "ConfigPath",
    "ConfigSection",
    "DeliveryChannel",
    "DeliveryResult",
    "DeliveryStatus",
    "DomainMatch",
    "DomainSet",
    "Envelope",
    "Finding",
    "Held",
    "InvalidAddress",
    "Level",
    "Message",
    "Notice",
    "NoticeKind",
    "Notifier",
    "Origin",
    "Outgoing",
    "PluginError",
    "PluginRegistry",
    "PluginSet",
    "PortalRoute",
    "Protected",
    "ProtectionMethod",
    "ProtectionResult",
    "RecipientContext",
    "RecipientState",
    "RetryLater",
    "Rewriter",
    "Services",
    "SettingError",
    "StoreError",
    "SystemMail",
    "Tenant",
    "Text",
    "Transformer",
    "Verdict",
    "__version__",
    "hookimpl",
    "load_config",
    "mailtext",
    "mime",
]
