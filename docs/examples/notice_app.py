"""Tutorial (docs/embedding.rst): an application that sends a citizen a notice that must arrive
protected. It embeds siegel: the notice is accepted with the SMTP listener's guarantees, and the
application follows it until it is delivered, protected, or held for the citizen."""

from __future__ import annotations

import asyncio
import sys
from email.message import EmailMessage

import siegel
from siegel import RecipientState


def permit_notice(*, sender: str, citizen: str, customer_number: str,
                  decision_pdf: bytes) -> EmailMessage:
    """The building permit office's notice: the customer number makes it personal data."""
    notice = EmailMessage()
    notice["From"] = sender
    notice["To"] = citizen
    notice["Subject"] = "Ihre Baugenehmigung"
    notice.set_content(f"Guten Tag,\n\nIhre Kundennummer {customer_number}: anbei der "
                       "Bescheid über Ihren Bauantrag.\n\nMit freundlichen Grüßen\nIhr Bauamt\n")
    notice.add_attachment(decision_pdf, maintype="application", subtype="pdf",
                          filename="Bescheid.pdf")
    return notice


async def send_notice(gateway: siegel.Gateway, notice: EmailMessage, *,
                      tenant: str) -> siegel.MessageStatus:
    """Submit the notice and wait until each copy is delivered or held for its recipient."""
    explanation = await gateway.explain(notice, tenant=tenant)
    for copy in explanation.recipients:
        print(f"{copy.recipient}: will {copy.outcome}")
    message_id = await gateway.submit(notice, tenant=tenant)  # stored durably from here on
    print(f"accepted as {message_id}")
    return await gateway.wait(message_id, RecipientState.DELIVERED, RecipientState.HELD,
                              RecipientState.QUARANTINED, RecipientState.FAILED,
                              max_seconds=60)


async def main(config: str, tenant: str, sender: str, citizen: str) -> None:
    notice = permit_notice(sender=sender, citizen=citizen, customer_number="123A456789",
                           decision_pdf=b"%PDF-1.7\n...")
    async with siegel.open(config) as gateway:
        status = await send_notice(gateway, notice, tenant=tenant)
    for copy in status.recipients:
        print(f"{copy.recipient}: {copy.state.value} {copy.method or ''} {copy.detail}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
