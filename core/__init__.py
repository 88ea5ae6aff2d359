"""siegel: a plugin-based secure-communication gateway for public administration.

The public API for plugin authors and library users. Everything a plugin needs is importable from
here or from one of the :data:`PUBLIC_MODULES`; the other modules behind it are implementation
detail and may change without notice. ``tests/test_public_api.py`` checks that the plugins and
contrib rules shipped with siegel import nothing else.
"""

from siegel import localtime, mailtext, mime, settings
from siegel.accounts import (
    Account,
    AccountMissing,
    Accounts,
    IdentityLevel,
    Passkey,
    PasswordRefused,
    PasswordSlot,
    RecoveryCodes,
    TotpFactor,
)
from siegel.addresses import Address, DomainMatch, DomainSet, InvalidAddress, internal_match
from siegel.clock import SystemClock
from siegel.config import (
    Config,
    ConfigError,
    ConfigPath,
    SettingError,
    Tenant,
    load_config,
    raise_all,
)
from siegel.crypto import KeyFileError
from siegel.embed import Gateway, MessageStatus, RecipientStatus, open, open_sync
from siegel.extract import Extraction, ExtractLimits
from siegel.handoffs import HandoffNotRecorded, handoff
from siegel.manager import PluginError, PluginRegistry
from siegel.model import (
    AuditEvent,
    Availability,
    DeliveryResult,
    DeliveryStatus,
    Envelope,
    Finding,
    Held,
    HeldCopy,
    Level,
    Message,
    Notice,
    NoticeKind,
    Origin,
    Outgoing,
    PostboxTopic,
    Protected,
    ProtectionResult,
    RecipientState,
    RetryLater,
    SystemMail,
    Text,
    Verdict,
    parse_email,
)
from siegel.passwords import PARAMETERS as PASSWORD_PARAMETERS
from siegel.passwords import LoginCheck, check_password, hash_password, password_problems
from siegel.plugin import (
    Classifier,
    Clock,
    ConfigSection,
    DeliveryChannel,
    MaintenanceTask,
    Notifier,
    PluginSet,
    PortalRoute,
    ProtectionMethod,
    RecipientContext,
    Resource,
    Rewriter,
    Services,
    Transformer,
    hookimpl,
)
from siegel.state import PluginState
from siegel.store import StateConflict, StateRecord, StateWrite, StoreError

__version__ = "0.1.0"

#: The modules a plugin may import besides ``siegel`` itself. ``mime``, ``mailtext`` and
#: ``localtime`` are namespaces of helpers that read best qualified (``mime.subject_of``);
#: ``settings`` is the settings toolkit (validators that raise SettingError with the key);
#: ``portal`` needs Starlette, so only plugins with portal pages import it; ``worker`` is the frame
#: protocol for a plugin's own worker processes; ``commands`` opens the configured gateway for a
#: plugin's command; ``testing`` is the pytest plugin for plugin authors.
PUBLIC_MODULES: tuple[str, ...] = (
    "siegel",
    "siegel.commands",
    "siegel.embed",
    "siegel.localtime",
    "siegel.mailtext",
    "siegel.mime",
    "siegel.pdf_fonts",
    "siegel.portal",
    "siegel.settings",
    "siegel.testing",
    "siegel.worker",
    "siegel.invitations",
)

__all__ = [
    "PASSWORD_PARAMETERS",
    "PUBLIC_MODULES",
    "Account",
    "AccountMissing",
    "Accounts",
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
    "ExtractLimits",
    "Extraction",
    "Finding",
    "Gateway",
    "HandoffNotRecorded",
    "Held",
    "HeldCopy",
    "IdentityLevel",
    "InvalidAddress",
    "KeyFileError",
    "Level",
    "LoginCheck",
    "MaintenanceTask",
    "Message",
    "MessageStatus",
    "Notice",
    "NoticeKind",
    "Notifier",
    "Origin",
    "Outgoing",
    "Passkey",
    "PasswordRefused",
    "PasswordSlot",
    "PluginError",
    "PluginRegistry",
    "PluginSet",
    "PluginState",
    "PortalRoute",
    "PostboxTopic",
    "Protected",
    "ProtectionMethod",
    "ProtectionResult",
    "RecipientContext",
    "RecipientState",
    "RecipientStatus",
    "RecoveryCodes",
    "Resource",
    "RetryLater",
    "Rewriter",
    "Services",
    "SettingError",
    "StateConflict",
    "StateRecord",
    "StateWrite",
    "StoreError",
    "SystemClock",
    "SystemMail",
    "Tenant",
    "Text",
    "TotpFactor",
    "Transformer",
    "Verdict",
    "__version__",
    "check_password",
    "handoff",
    "hash_password",
    "hookimpl",
    "internal_match",
    "load_config",
    "localtime",
    "mailtext",
    "mime",
    "open",
    "open_sync",
    "parse_email",
    "password_problems",
    "raise_all",
    "settings",
]
