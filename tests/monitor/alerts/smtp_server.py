"""Real SMTP servers (aiosmtpd) on 127.0.0.1 that play the mail relay in tests.

:func:`running_smtp_server` starts an aiosmtpd ``Controller`` (its own thread and
event loop, as aiosmtpd documents for tests) on a free port, with:

- STARTTLS required before anything else, or implicit TLS from the first byte
  (``implicit_tls=True``), using a certificate for 127.0.0.1 and localhost issued
  by a throw-away CA made with ``trustme`` (:func:`make_tls_files`); the CA's PEM
  file is what the client trusts (``EmailConfig.ca_file``);
- AUTH LOGIN/PLAIN for one user (:data:`USERNAME` / :data:`PASSWORD`), required
  on the STARTTLS server;
- a handler that records every accepted message as a :class:`Delivery` (envelope
  and raw bytes) and can be scripted to refuse the next MAIL, RCPT or DATA with any
  reply (``fail_next("RCPT", "550 5.1.1 No such user")``).

``wait_for(n)`` returns once ``n`` messages have been accepted; the server thread
hands each delivery to the test's event loop, so no test sleeps. Two more stand-ins
cover failures below SMTP: :func:`refused_port` (nothing listens) and
:func:`silent_server` (accepts TCP and never greets, for timeouts).

PYTEST_DONT_REWRITE: test modules import their helpers from here.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = [
    "PASSWORD",
    "USERNAME",
    "Delivery",
    "SmtpServer",
    "TlsFiles",
    "make_tls_files",
    "refused_port",
    "running_smtp_server",
    "silent_server",
]

USERNAME = "kmon-test"
PASSWORD = "s3cret-Passw0rd-9c1e"
HOST = "127.0.0.1"

COMMANDS = ("MAIL", "RCPT", "DATA")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A test CA and a server certificate for 127.0.0.1 and localhost."""

    ca: trustme.CA
    cert: trustme.LeafCert
    ca_file: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(context)
        return context


def make_tls_files(directory: Path) -> TlsFiles:
    """A fresh CA (its PEM written to ``directory``) and a certificate it issued."""
    ca = trustme.CA()
    cert = ca.issue_cert(HOST, "localhost")
    ca_file = directory / "kmon-test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return TlsFiles(ca=ca, cert=cert, ca_file=str(ca_file))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One accepted message: the envelope as the server saw it and the raw bytes."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool
    login: str | None

    def message(self) -> EmailMessage:
        """The bytes parsed as a mail client would (modern policy)."""
        return email.message_from_bytes(self.data, policy=email.policy.default)


class _Handler:
    """aiosmtpd handler hooks: scripted refusals first, else accept and record."""

    def __init__(self, server: SmtpServer) -> None:
        self._server = server
        self.faults: dict[str, deque[str]] = {command: deque() for command in COMMANDS}
        self._numbers = itertools.count(1)

    def _fault(self, command: str) -> str | None:
        queue = self.faults[command]
        try:
            return queue.popleft()
        except IndexError:
            return None

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if (fault := self._fault("MAIL")) is not None:
            return fault
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if (fault := self._fault("RCPT")) is not None:
            return fault
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if (fault := self._fault("DATA")) is not None:
            return fault
        auth = session.auth_data
        delivery = Delivery(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=envelope.original_content or b"",
            # session.ssl is set after STARTTLS only; the transport knows both cases.
            tls=server.transport is not None
            and server.transport.get_extra_info("ssl_object") is not None,
            login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
        )
        self._server._deliver_threadsafe(delivery)
        return f"250 2.0.0 OK queued as kmon-{next(self._numbers)}"


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USERNAME.encode()
        and auth_data.password == PASSWORD.encode()
    )
    if ok:
        return AuthResult(success=True, auth_data=auth_data)
    return AuthResult(success=False, handled=False)  # 535 5.7.8


class _EphemeralController(Controller):
    """A Controller that may listen on port 0 and learns the port the OS chose."""

    def _trigger_server(self) -> None:
        server = cast(asyncio.Server, self.server)
        self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SmtpServer:
    """An aiosmtpd server in its own thread; deliveries land in the test's loop."""

    def __init__(self, tls: TlsFiles, *, implicit_tls: bool = False) -> None:
        self.deliveries: list[Delivery] = []
        self.implicit_tls = implicit_tls
        self.tls = tls
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        self._handler = _Handler(self)
        context = tls.server_context()
        options: dict[str, Any] = {
            "server_hostname": "smtp.kmon.test",
            "authenticator": _authenticator,
        }
        if implicit_tls:
            # aiosmtpd's "AUTH needs TLS" check only sees STARTTLS, so with TLS from
            # the first byte AUTH is offered without that check (and not required,
            # which aiosmtpd would warn about); the tests assert the login happened.
            options.update(ssl_context=context, auth_require_tls=False)
        else:
            options.update(
                tls_context=context,
                require_starttls=True,
                auth_require_tls=True,
                auth_required=True,
            )
        self._controller = _EphemeralController(self._handler, hostname=HOST, port=0, **options)

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def fail_next(self, command: str, reply: str) -> None:
        """Answer the next ``command`` (MAIL, RCPT or DATA) with ``reply``."""
        self._handler.faults[command].append(reply)

    def email_config(self, **overrides: Any) -> dict[str, Any]:
        """Settings for :class:`monitor.alerts.email.EmailConfig` that reach this server."""
        settings: dict[str, Any] = {
            "type": "email",
            "host": self.host,
            "port": self.port,
            "security": "tls" if self.implicit_tls else "starttls",
            "username": USERNAME,
            "password": PASSWORD,
            "sender": "코스피 감시 <kmon@example.kr>",
            "recipients": ["홍길동 <hong@example.kr>", "ops@example.com"],
            "ca_file": self.tls.ca_file,
            "timeout": 10,
        }
        settings.update(overrides)
        return settings

    async def wait_for(self, count: int) -> list[Delivery]:
        """Wait until ``count`` messages have been accepted."""
        while len(self.deliveries) < count:
            self._arrived.clear()
            await self._arrived.wait()
        return self.deliveries[:count]

    async def start(self) -> None:
        # start() blocks until the server thread answers a first connection.
        await asyncio.to_thread(self._controller.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self._controller.stop)

    def _deliver_threadsafe(self, delivery: Delivery) -> None:
        # Called in the server's thread: hand over to the test's loop.
        self._loop.call_soon_threadsafe(self._record, delivery)

    def _record(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self._arrived.set()


@asynccontextmanager
async def running_smtp_server(
    tls: TlsFiles, *, implicit_tls: bool = False
) -> AsyncIterator[SmtpServer]:
    """A started :class:`SmtpServer`, stopped after."""
    server = SmtpServer(tls, implicit_tls=implicit_tls)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound (so no one else takes it)
    but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        yield sock.getsockname()[1]


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word (no SMTP greeting);
    connections are closed when the context ends."""
    release = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await release.wait()
        finally:
            writer.close()

    server = await asyncio.start_server(hold, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        release.set()
        server.close()
        await server.wait_closed()
