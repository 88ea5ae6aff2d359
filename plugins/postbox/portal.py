"""The postbox pages of the recipient portal: a signed-in account's mailbox.

* ``postbox.inbox`` (``/postbox``): the messages, newest first, a page at a time, unread ones
  marked in words (not by colour alone), with sender, subject, date (the tenant's time zone) and
  the trust level each needs.
* ``postbox.message`` (``/postbox/messages/{id}``): one message: sender, subject, date, reply
  address, content (plain text as text; HTML sanitised, see :mod:`.portal_html`), attachments with
  size and SHA-512. The first view marks it read: that is the "retrieved" proof the sender is told
  of. Because only a signed-in session (a ``SameSite=Strict`` cookie) reaches this page, mail
  scanners and link previews never do; it is the one GET that changes state, through the mailbox.
  A message that needs a higher identity level than the account has shows why and how to get it.
* ``postbox.attachment`` (``/postbox/messages/{id}/attachments/{index}``): a download, never shown
  in the portal (:func:`siegel.portal.download_response`).
* ``postbox.reply`` and ``postbox.new``: write to the authority. What is written goes into the
  pipeline as a message of its own (``Services.submit_portal_message``), threaded with
  ``In-Reply-To`` and ``References``; new messages go to the mailbox of the chosen topic
  (``siegel_register_postbox_topics``). Both need the tenant's ``write_level``. A post that
  arrives after the session ended is kept as a draft (:mod:`.portal_drafts`), not lost.
* ``postbox.delete``, ``postbox.bin``, ``postbox.restore``, ``postbox.purge``: the bin.
* ``postbox.settings``: notice mails on or off, and the link to the account page.

Every message, attachment, draft and bin entry is looked up in the signed-in account's own
mailbox: another account's id gives the same 404 as an id that does not exist.
"""

from __future__ import annotations

import email.utils
import logging
from email.message import EmailMessage
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from siegel import Account, Address, IdentityLevel, PortalRoute
from siegel.portal import (
    FormErrors,
    PortalContext,
    Upload,
    UploadRefused,
    download_response,
    read_uploads,
)

from . import portal_drafts as drafts
from .mailbox import LevelTooLow, MessageSummary
from .portal_html import had_images, sanitise
from .portal_mailbox import MailboxPages, format_size

log = logging.getLogger(__name__)

PAGE_SIZE = 20
#: The bin shows this many (newest deleted first); the rest is purged on time anyway.
BIN_PAGE = 200
MAX_CHARS = 10_000
MAX_SUBJECT = 200


def _portal(request: Request) -> PortalContext:
    portal: PortalContext = request.state.portal
    return portal


def _not_found() -> HTTPException:
    return HTTPException(404)


async def _signed_in(portal: PortalContext) -> Account | Response:
    account = await portal.signed_in()
    if account is None:
        return portal.sign_in_redirect()
    return account


def _route_link(portal: PortalContext, name: str, **query: str) -> str | None:
    """A link to another plugin's page, if the tenant has it."""
    route = portal.routes.get(name)
    if route is None or (route.plugin and route.plugin not in portal.tenant.enabled_plugins):
        return None
    return portal.path_for(name, _query=query or None)


def _level_page(portal: PortalContext, account: Account, needed: IdentityLevel,
                action: str) -> Response:
    return portal.render("pb_level.html", {
        "action": action, "needed": needed.label, "have": account.level.label,
        "request_url": _route_link(portal, "pin_letters.request"),
        "confirm_url": _route_link(portal, "pin_letters.confirm"),
    }, status=403)


def _done(request: Request, *known: str) -> str | None:
    """What the form post before this page did (``?done=``), if it is one this page reports."""
    value = request.query_params.get("done")
    return value if value in known else None


def _write_level(portal: PortalContext) -> IdentityLevel:
    level: IdentityLevel = portal.tenant.write_level
    return level


async def _common(portal: PortalContext, pages: MailboxPages, current: str) -> dict[str, Any]:
    return {"current": current, "unread": await pages.unread(),
            "can_write_new": pages.can_write_new}


# -- inbox and message ------------------------------------------------------------------------

async def inbox(request: Request) -> Response:
    portal = _portal(request)
    account = await _signed_in(portal)
    if isinstance(account, Response):
        return account
    pages = MailboxPages(portal, account)
    after = request.query_params.get("after") or None
    try:
        number = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        number = 1
    found, next_after = await pages.page("inbox", limit=PAGE_SIZE, after=after)
    entries = [{
        "url": portal.path_for("postbox.message", id=entry.id), "subject": entry.subject,
        "sender": entry.sender, "date": pages.when(entry.received_at), "unread": entry.unread,
        "level": entry.level.label,
    } for entry in found]
    older = portal.path_for("postbox.inbox", _query={"after": next_after,
                                                     "page": str(number + 1)}) if next_after else None
    newest = portal.path_for("postbox.inbox") if after else None
    return portal.render("pb_inbox.html", {
        **await _common(portal, pages, "inbox"), "entries": entries,
        "total": await pages.count("inbox"),
        "page_number": number, "older_url": older, "newer_url": newest,
        "done": _done(request, "sent", "deleted"),
    })


async def message(request: Request) -> Response:
    portal = _portal(request)
    account = await _signed_in(portal)
    if isinstance(account, Response):
        return account
    pages = MailboxPages(portal, account)
    item = await pages.get(request.path_params["id"])
    if item is None:
        raise _not_found()
    if isinstance(item, LevelTooLow):
        return _level_page(portal, account, item.needed, "read")
    summary = item.summary
    await pages.mark_read(summary.id)
    reply_to = pages.reply_address(summary)
    can_write = account.level >= _write_level(portal)
    attachments = [{
        "name": file.filename, "size": format_size(file.size, portal.language),
        "sha512": file.sha512,
        "url": portal.path_for("postbox.attachment", id=summary.id, index=str(file.index)),
    } for file in summary.attachments]
    return portal.render("pb_message.html", {
        "message": {
            "subject": summary.subject, "sender": summary.sender,
            "date": pages.when(summary.received_at),
            "reply_to": str(reply_to) if reply_to else None, "level": summary.level.label,
            "html": sanitise(item.html) if item.html is not None else None, "text": item.text,
            "images_removed": item.html is not None and had_images(item.html),
            "attachments": attachments,
        },
        "reply_url": portal.path_for("postbox.reply", id=summary.id) if (
            reply_to is not None and can_write) else None,
        "write_needs": _write_level(portal).label if reply_to is not None and not can_write
        else None,
        "bin_url": portal.path_for("postbox.delete", id=summary.id),
    })


async def attachment(request: Request) -> Response:
    portal = _portal(request)
    account = await _signed_in(portal)
    if isinstance(account, Response):
        return account
    pages = MailboxPages(portal, account)
    try:
        index = int(request.path_params["index"])
    except ValueError:
        raise _not_found() from None
    found = await pages.attachment(request.path_params["id"], index)
    if found is None:
        raise _not_found()
    if isinstance(found, LevelTooLow):
        return _level_page(portal, account, found.needed, "read")
    info, content = found
    return download_response(content, info.filename, info.content_type)


# -- writing ----------------------------------------------------------------------------------

def _field(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _compose_variables(pages: MailboxPages) -> dict[str, Any]:
    limits = pages.upload_limits
    types = ", ".join(t.split("/")[-1].upper() for t in limits.types)
    accept = ",".join(limits.types)
    return {"limits": limits, "types": types, "accept": accept, "max_chars": MAX_CHARS,
            "max_subject": MAX_SUBJECT}


async def _broken_session(portal: PortalContext, kind: str, message_id: str = "") -> Response:
    """A compose form posted without a valid sign-in: keep what was written (if the form's
    draft token is genuine) and send the visitor to sign in again, back to the draft."""
    form = await portal.form()
    target = (portal.path_for("postbox.reply", id=message_id) if kind == "reply"
              else portal.path_for("postbox.new"))
    token = await drafts.read_token(portal, _field(form, "draft_token"))
    if token is not None:
        owner, draft_id = token
        await drafts.keep(portal, owner, draft_id, drafts.Draft(
            kind=kind, message_id=message_id, topic=_field(form, "topic")[:100],
            subject=_field(form, "subject")[:MAX_SUBJECT], text=_field(form, "text")[:MAX_CHARS]))
        target += "?" + f"draft={draft_id}"
        log.info("postbox: a %s written in an ended session was kept (tenant %s)", kind,
                 portal.tenant.id)
    login = _route_link(portal, "accounts.login", next=target) or portal.path_for("portal.start")
    reason = portal.session_problem.value if portal.session_problem else "signed_out"
    return portal.render("pb_kept.html", {"reason": reason, "login_url": login}, status=401)


async def _compose(request: Request, kind: str) -> Response:
    portal = _portal(request)
    message_id = request.path_params.get("id", "")
    account = None if portal.session_problem else await portal.signed_in()
    if account is None:
        if request.method == "POST":
            return await _broken_session(portal, kind, message_id)
        return portal.sign_in_redirect()
    pages = MailboxPages(portal, account)
    item: MessageSummary | None = None
    to: Address | None = None
    if kind == "reply":
        readable = await pages.get(message_id)
        if readable is None:
            raise _not_found()
        if isinstance(readable, LevelTooLow):
            return _level_page(portal, account, readable.needed, "read")
        item = readable.summary
        to = pages.reply_address(item)
        if to is None:
            raise _not_found()
    elif not pages.can_write_new:
        raise _not_found()
    if account.level < _write_level(portal):
        return _level_page(portal, account, _write_level(portal), "write")
    topics = pages.topics() if kind == "new" else []
    values = {"topic": "", "subject": "", "text": ""}
    errors = FormErrors()
    restored = False
    draft_id = request.query_params.get("draft", "")
    if request.method == "GET" and draft_id:
        draft = await drafts.load(portal, account.key, draft_id)
        if draft is None or draft.kind != kind or draft.message_id != message_id:
            raise _not_found()
        values = {"topic": draft.topic, "subject": draft.subject, "text": draft.text}
        restored = True
    if request.method == "POST":
        form = await portal.form()
        values = {name: _field(form, name) for name in values}
        posted = await drafts.read_token(portal, _field(form, "draft_token"))
        draft_id = posted[1] if posted is not None and posted[0] == account.key else ""
        topic = next((t for t in topics if t.name == values["topic"]), None)
        if kind == "new":
            if topic is None:
                errors.add("topic", portal.t("postbox.error.topic_required"))
            if not values["subject"]:
                errors.add("subject", portal.t("postbox.error.subject_required"))
            elif len(values["subject"]) > MAX_SUBJECT:
                errors.add("subject", portal.t("postbox.error.subject_too_long", max=MAX_SUBJECT))
        if not values["text"]:
            errors.add("text", portal.t("postbox.error.text_required"))
        elif len(values["text"]) > MAX_CHARS:
            errors.add("text", portal.t("postbox.error.text_too_long", max=MAX_CHARS))
        files: list[Upload] = []
        try:
            files = await read_uploads(list(form.getlist("attachments")), pages.upload_limits)
        except UploadRefused as refused:
            errors.add("attachments", portal.t(refused.text))
        recipient = to if item is not None else topic.recipient if topic else None
        if not errors and recipient is not None:
            raw = _composed(portal, account, item=item, to=recipient, subject=values["subject"],
                            text=values["text"], files=files)
            await portal.services.submit_portal_message(
                portal.tenant.id, raw, mail_from=Address.parse(portal.tenant.notice_from),
                recipients=[recipient])
            if draft_id:
                await drafts.discard(portal, account.key, draft_id)
            log.info("postbox: a %s was sent from the portal (tenant %s)", kind, portal.tenant.id)
            return portal.redirect("postbox.inbox", _query={"done": "sent"})
    return portal.render("pb_compose.html", {
        **await _common(portal, pages, kind), **_compose_variables(pages),
        "kind": kind, "errors": errors, "values": values, "restored": restored,
        "draft_token": await drafts.new_token(portal, account.key, draft_id or None),
        "subject": item.subject if item else "", "to": str(to) if to else "",
        "topics": topics,
        "message_url": portal.path_for("postbox.message", id=item.id) if item else "",
    }, status=422 if errors else 200)


def _composed(portal: PortalContext, account: Account, *, item: MessageSummary | None,
              to: Address, subject: str, text: str, files: list[Upload]) -> bytes:
    mail = EmailMessage()
    mail["From"] = account.address
    mail["To"] = str(to)
    if item is not None:
        original = item.subject or ""
        subject = original if original.lower().startswith(("re:", "aw:")) else f"Re: {original}"
        parent = item.threading.message_id
        if parent:
            mail["In-Reply-To"] = parent
            mail["References"] = " ".join([*item.threading.references, parent])
    mail["Subject"] = subject
    mail["Date"] = email.utils.format_datetime(portal.clock.now())
    mail["Message-ID"] = email.utils.make_msgid(domain=Address.parse(
        portal.tenant.notice_from).domain)
    mail["X-Siegel-Origin"] = "portal"
    mail.set_content(text)
    for file in files:
        maintype, subtype = file.content_type.split("/", 1)
        mail.add_attachment(file.content, maintype=maintype, subtype=subtype,
                            filename=file.filename)
    return mail.as_bytes(policy=mail.policy.clone(linesep="\r\n"))


async def reply(request: Request) -> Response:
    return await _compose(request, "reply")


async def new(request: Request) -> Response:
    return await _compose(request, "new")


# -- bin and settings --------------------------------------------------------------------------

async def _bin_action(request: Request, action: str) -> Response:
    portal = _portal(request)
    account = await _signed_in(portal)
    if isinstance(account, Response):
        return account
    pages = MailboxPages(portal, account)
    if not await pages.bin_action(action, request.path_params["id"]):
        raise _not_found()
    done = {"delete": "deleted", "restore": "restored", "purge": "purged"}[action]
    return portal.redirect("postbox.inbox" if action == "delete" else "postbox.bin",
                           _query={"done": done})


async def delete(request: Request) -> Response:
    return await _bin_action(request, "delete")


async def restore(request: Request) -> Response:
    return await _bin_action(request, "restore")


async def purge(request: Request) -> Response:
    return await _bin_action(request, "purge")


async def bin_page(request: Request) -> Response:
    portal = _portal(request)
    account = await _signed_in(portal)
    if isinstance(account, Response):
        return account
    pages = MailboxPages(portal, account)
    entries = [{
        "subject": entry.subject, "sender": entry.sender, "date": pages.when(entry.deleted_at),
        "restore_url": portal.path_for("postbox.restore", id=entry.id),
        "purge_url": portal.path_for("postbox.purge", id=entry.id),
    } for entry in (await pages.page("bin", limit=BIN_PAGE, after=None))[0]]
    return portal.render("pb_bin.html", {
        **await _common(portal, pages, "bin"), "entries": entries,
        "purge_days": pages.settings.bin_days, "done": _done(request, "restored", "purged"),
    })


async def settings(request: Request) -> Response:
    portal = _portal(request)
    account = await _signed_in(portal)
    if isinstance(account, Response):
        return account
    pages = MailboxPages(portal, account)
    if request.method == "POST":
        form = await portal.form()
        await pages.set_notices(form.get("notices") == "yes")
        return portal.redirect("postbox.settings", _query={"done": "saved"})
    return portal.render("pb_settings.html", {
        **await _common(portal, pages, "settings"), "notices": await pages.notices(),
        "address": account.address, "account_url": _route_link(portal, "accounts.account"),
        "done": _done(request, "saved"),
    })


def routes() -> list[PortalRoute]:
    both = ("GET", "POST")
    post = ("POST",)
    return [
        PortalRoute(name="postbox.inbox", path="/postbox", endpoint=inbox,
                    description="the postbox: messages, newest first"),
        PortalRoute(name="postbox.message", path="/postbox/messages/{id}", endpoint=message,
                    description="one message (the first view marks it read)"),
        PortalRoute(name="postbox.attachment", path="/postbox/messages/{id}/attachments/{index}",
                    endpoint=attachment, description="an attachment, as a download"),
        PortalRoute(name="postbox.reply", path="/postbox/messages/{id}/reply", endpoint=reply,
                    methods=both, keeps_expired_posts=True, description="answer a message"),
        PortalRoute(name="postbox.new", path="/postbox/new", endpoint=new, methods=both,
                    keeps_expired_posts=True, description="write to the authority"),
        PortalRoute(name="postbox.delete", path="/postbox/messages/{id}/delete", endpoint=delete,
                    methods=post, description="move a message to the bin"),
        PortalRoute(name="postbox.bin", path="/postbox/bin", endpoint=bin_page,
                    description="the bin"),
        PortalRoute(name="postbox.restore", path="/postbox/bin/{id}/restore", endpoint=restore,
                    methods=post, description="take a message out of the bin"),
        PortalRoute(name="postbox.purge", path="/postbox/bin/{id}/purge", endpoint=purge,
                    methods=post, description="delete a message for good"),
        PortalRoute(name="postbox.settings", path="/postbox/settings", endpoint=settings,
                    methods=both, description="notice mails on or off; the account"),
    ]

