"""SMTP AUTH on the listener: the users file, password hashes and the failure throttle.

Who may authenticate is listed in the file named by a listener's ``auth_users_file``, one user a
line::

    # user:argon2id-hash:tenant[:sender,sender...]
    scanner-3og:$argon2id$v=19$m=65536,t=3,p=4$...$...:landkreis:scanner@landkreis.example

Every user is bound to one tenant. Without a sender list the user may send as any address of that
tenant's own domains; with one, only as those addresses (compared case-insensitively). The file
holds no password, only Argon2id hashes (RFC 9106 "low memory" profile, as the portal's logins);
``siegel listener passwd`` writes it. Verifying a password costs about 0.1 s and runs in a pool of
two threads beside the event loop, so that guessing cannot stall the listener.

Failed attempts are counted in the store (:mod:`siegel.throttle`, as the portal's), per client
address (IPv4 address or IPv6 /64) and per user name, in a fixed window: every instance sharing
the store counts together, and a restart forgets nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import functools
import os
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import argon2
import attrs
from argon2.exceptions import InvalidHashError, VerificationError

from siegel.addresses import Address, InvalidAddress

PARAMETERS: Final = argon2.profiles.RFC_9106_LOW_MEMORY
_HASHER: Final = argon2.PasswordHasher.from_parameters(PARAMETERS)
_HASHING: Final = ThreadPoolExecutor(max_workers=2, thread_name_prefix="siegel-smtp-auth")

#: A user may fail this many times as often as one client address before the name is blocked
#: (guessing one user's password from many addresses).
USER_LIMIT_FACTOR: Final = 4


class UsersFileError(Exception):
    """The users file cannot be used; ``problems`` are ``line N: what`` texts."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


@attrs.frozen(kw_only=True)
class SmtpUser:
    """One line of the users file."""

    name: str
    password_hash: str = attrs.field(repr=False)
    tenant: str
    #: Envelope senders this user may use (lower case); empty: any address of the tenant.
    senders: tuple[str, ...] = ()

    def line(self) -> str:
        fields = [self.name, self.password_hash, self.tenant]
        if self.senders:
            fields.append(",".join(self.senders))
        return ":".join(fields)


def check_user_name(name: str) -> str | None:
    if not name:
        return "the user name is empty"
    if any(c in name for c in ":,") or any(c.isspace() for c in name) or not name.isprintable():
        return f"user name {name!r} may not contain ':', ',', spaces or control characters"
    return None


def normalize_sender(sender: str) -> str:
    """A sender of the list as it is compared: parsed, lower case. Raises InvalidAddress."""
    if ":" in sender or "," in sender:
        raise InvalidAddress(f"{sender!r}: ':' and ',' cannot be written in the users file")
    return str(Address.parse(sender)).lower()


def parse_users(text: str) -> tuple[dict[str, SmtpUser], list[str]]:
    """The users of a file's text and the problems found (``line N: what``), all of them."""
    users: dict[str, SmtpUser] = {}
    problems: list[str] = []
    for number, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) not in (3, 4):
            problems.append(f"line {number}: expected user:hash:tenant[:senders], "
                            f"found {len(fields)} fields")
            continue
        name, password_hash, tenant = fields[:3]
        where = f"line {number}"
        bad_name = check_user_name(name)
        if bad_name:
            problems.append(f"{where}: {bad_name}")
            continue
        if name in users:
            problems.append(f"{where}: user {name!r} is listed twice")
        try:
            parameters = argon2.extract_parameters(password_hash)
        except InvalidHashError:
            problems.append(f"{where}: user {name!r}: the password hash is not an Argon2 hash "
                            "(write it with 'siegel listener passwd')")
            continue
        if parameters.type is not argon2.Type.ID:
            problems.append(f"{where}: user {name!r}: the hash must be Argon2id")
            continue
        if not tenant:
            problems.append(f"{where}: user {name!r}: no tenant")
            continue
        senders: list[str] = []
        for sender in fields[3].split(",") if len(fields) == 4 and fields[3] else ():
            try:
                senders.append(normalize_sender(sender.strip()))
            except InvalidAddress as exc:
                problems.append(f"{where}: user {name!r}: sender {sender.strip()!r}: {exc}")
        users[name] = SmtpUser(name=name, password_hash=password_hash, tenant=tenant,
                               senders=tuple(senders))
    return users, problems


def read_users(path: Path) -> dict[str, SmtpUser]:
    """Read and check a users file; raises :class:`UsersFileError` listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsersFileError(path, [
            "file not found (add a user with 'siegel listener passwd FILE USER --tenant ID')"
        ]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsersFileError(path, [f"cannot read: {exc}"]) from None
    users, problems = parse_users(text)
    if problems:
        raise UsersFileError(path, problems)
    return users


def write_users(path: Path, users: Iterable[SmtpUser]) -> None:
    """Replace the file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# siegel listener users: user:argon2id-hash:tenant[:senders]\n" + "".join(
        f"{user.line()}\n" for user in sorted(users, key=lambda u: u.name))
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def hash_password(password: str) -> str:
    """A new Argon2id hash of ``password`` (PHC string form, fresh salt)."""
    return _HASHER.hash(password)


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(32))


def _verify(stored: str | None, password: bytes) -> bool:
    try:
        if stored is None:
            # An unknown user takes as long as a known one, so the time does not tell names.
            _HASHER.verify(_dummy_hash(), password)
            return False
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(user: SmtpUser | None, password: bytes) -> bool:
    """Whether ``password`` is ``user``'s (always False, after the same work, for ``None``)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        _HASHING, _verify, None if user is None else user.password_hash, password)


class UsersFile:
    """The users file of a listener, read again when it changes (``siegel listener passwd`` needs
    no restart). A file that has become unreadable or broken fails closed: nobody can
    authenticate until it is fixed."""

    def __init__(self, path: Path, tenants: Mapping[str, object]) -> None:
        self.path = path
        self._tenants = tenants
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, SmtpUser] = {}
        self.error: str | None = None

    def _current_stamp(self) -> tuple[int, int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def users(self) -> dict[str, SmtpUser] | None:
        """The users, or ``None`` while the file cannot be used (``error`` says why)."""
        stamp = self._current_stamp()
        if stamp is not None and stamp == self._stamp:
            return None if self.error else self._users
        self._stamp = stamp
        try:
            users = read_users(self.path)
        except UsersFileError as exc:
            self.error = str(exc)
            return None
        unknown = sorted({u.tenant for u in users.values() if u.tenant not in self._tenants})
        if unknown:
            self.error = f"{self.path}: unknown tenants {', '.join(unknown)}"
            return None
        self.error = None
        self._users = users
        return users


def header_senders(raw: bytes) -> list[str] | None:
    """The addresses of every ``From:`` field of a message (None if one cannot be read). Only
    the header block is parsed; it is CPU work, so callers on the event loop run it in a thread."""
    end = len(raw)
    for separator in (b"\r\n\r\n", b"\n\n"):
        found = raw.find(separator)
        if found != -1:
            end = min(end, found + len(separator))
    headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(raw[:end])
    addresses: list[str] = []
    for field in headers.get_all("from", []):
        found_addresses = getattr(field, "addresses", ())
        if getattr(field, "defects", ()) or not found_addresses:
            return None
        addresses += [a.addr_spec for a in found_addresses]
    return addresses


def sender_allowed(user: SmtpUser, sender: Address | None, tenant_of_sender: str | None) -> bool:
    """Whether ``user`` may use ``sender`` as envelope sender (``tenant_of_sender``: the tenant
    whose own domain the sender is in)."""
    if sender is None or tenant_of_sender != user.tenant:
        return False
    return not user.senders or str(sender).lower() in user.senders


__all__ = [
    "SmtpUser",
    "UsersFile",
    "UsersFileError",
    "check_user_name",
    "hash_password",
    "header_senders",
    "normalize_sender",
    "parse_users",
    "read_users",
    "sender_allowed",
    "verify_password",
    "write_users",
]
