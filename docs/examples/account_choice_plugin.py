"""secure_by_choice: a recipient who has an account (they chose a password for protected mail)
gets every mail from the authority protected, unless they told the authority that plain mail is
fine for them.

An example of the accounts service (docs/writing-plugins.rst): the plugin reads the account the
password PDF (or any other plugin) created, and keeps its own choice in its own slot of that
account. It never reads another plugin's slot.
"""

from __future__ import annotations

from siegel import Address, Classifier, Finding, Level, RecipientContext, Services, Text, hookimpl

NAME = "secure_by_choice"
PLAIN_IS_FINE = b"plain-is-fine"


async def classify(ctx: RecipientContext) -> Finding | None:
    if ctx.is_internal:
        return None
    account = await ctx.services.accounts(ctx.tenant.id).get(ctx.recipient)
    if account is None or not account.can_log_in:
        return None
    if account.slot(NAME) == PLAIN_IS_FINE:
        return None
    return Finding(level=Level.PROTECT, code="has-account",
                   reason=Text(de="Der Empfänger hat ein Konto für geschützte Post",
                               en="The recipient has an account for protected mail"))


async def allow_plain_mail(services: Services, tenant: str, recipient: Address) -> None:
    """Record the recipient's choice in this plugin's slot of their account (which must exist)."""
    await services.accounts(tenant).put_slot(recipient, NAME, PLAIN_IS_FINE)


@hookimpl
def siegel_register_classifiers() -> list[Classifier]:
    return [Classifier(name=NAME, classify=classify,
                       description="Mail to recipients with an account is protected")]
