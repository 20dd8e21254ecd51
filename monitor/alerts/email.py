"""Email: one alert message as a text + HTML mail, sent over SMTP with aiosmtplib.

Rendering (:func:`render_email`) uses only the standard library's :mod:`email`
package with ``email.policy.SMTP``: CRLF line ends, RFC 2047 encoded words for
Korean subjects and display names, and a transfer encoding chosen per part. It
writes no MIME by hand.

Header safety. The policy refuses CR and LF in a header value, which would turn a
headline such as ``"…\\r\\nBcc: victim@example.com"`` into an exception rather than
a mail. So every untrusted string bound for a header (the subject, built from
titles) is folded onto one line first: control characters, Unicode line separators
and bidi overrides become spaces. The SMTP envelope (MAIL FROM, RCPT TO) is taken
from the configuration, never parsed back out of the headers, so no text in a
message can add a recipient.

Bodies. The text part is the headlines and explanations on plain lines. In the HTML
part every untrusted string goes through :func:`html.escape`, and only absolute
http(s) URLs become links, with the ``href`` attribute escaped (``quote=True``);
``javascript:`` and ``data:`` URLs are shown as text, never linked.

Charts. A message with charts (move signals, :mod:`monitor.alerts.charting`) carries
each as an image part beside the HTML, which shows it with ``<img src="cid:…">``
below its signal: the HTML alternative becomes ``multipart/related`` (RFC 2387), made
with the standard library's ``add_related``. The text part is the same with or without
them, and every image has alt text in words, so a client that shows no images still
reads the whole alert. Charts are added while the whole mail stays within
:data:`SIZE_CAP`; those that would pass it are left out and the HTML says so.

Identity and threading. ``Message-ID`` is derived from the message key, so a resend
after a crash is recognisably the same mail (``<{key}@{sender's domain}>``, the key
reduced to characters a Message-ID may hold). When all signals of a message belong
to one story, ``In-Reply-To`` and ``References`` point at a per-story root id
``<story-{story}@…>``, so mail clients thread the updates of a story together.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
import socket
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime

import aiosmtplib

from adapters.errors import AuthError, FetchError, PermanentError, TransientError
from adapters.text import one_line, reason_of
from monitor.alerting import EmailConfig, parse_address
from monitor.alerts.message import (
    AlertMessage,
    AlertSignal,
    ChartImage,
    MoveLine,
    Sent,
    event_time_text,
    message_notes,
    move_figures,
    web_url,
)
from monitor.severity import SEVERITIES, most_severe

__all__ = [
    "SIZE_CAP",
    "EmailChannel",
    "render_email",
]

_SUBJECT_MAX = 200
_TITLE_MAX = 500
_REASON_MAX = 200
_ID_MAX = 100  # longer keys are hashed, to keep Message-ID lines reasonable
_FALLBACK_DOMAIN = "kmon.invalid"
# The largest mail sent with charts, in bytes as sent (base64 grows a PNG by a third).
SIZE_CAP = 300_000

# What is kept as-is in the local part of a generated Message-ID (a subset of atext).
_ID_SAFE = re.compile(r"[A-Za-z0-9_+-]")
_ASCII_DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


# -- configuration ------------------------------------------------------------


# -- rendering ----------------------------------------------------------------


def render_email(
    message: AlertMessage, config: EmailConfig, *, size_cap: int = SIZE_CAP
) -> EmailMessage:
    """``message`` as a multipart/alternative mail (text and HTML, the HTML with its
    charts inline when it has some) ready for SMTP, at most ``size_cap`` bytes once
    charts are in it."""
    domain = _id_domain(parse_address(config.sender))
    charts = list(message.charts)
    while True:
        cids = {
            c.signal_id: f"chart-{c.signal_id}-{_id_part(message.key)}@{domain}" for c in charts
        }
        left_out = len(message.charts) - len(charts)
        mail = _render(message, config, charts, cids, left_out)
        if not charts or len(mail.as_bytes()) <= size_cap:
            return mail
        charts.pop()


def _render(
    message: AlertMessage,
    config: EmailConfig,
    charts: Sequence[ChartImage],
    cids: dict[int, str],
    left_out: int,
) -> EmailMessage:
    sender = parse_address(config.sender)
    domain = _id_domain(sender)
    mail = EmailMessage(policy=SMTP_POLICY)
    _set_subject(mail, _subject(message, config))
    mail["From"] = sender
    mail["To"] = [parse_address(item) for item in config.recipients]
    created = message.created_at or datetime.now(UTC)
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    mail["Date"] = format_datetime(created.astimezone(UTC))
    mail["Message-ID"] = f"<{_id_part(message.key)}@{domain}>"
    story = _shared_story(message.signals)
    if story is not None:
        root = f"<story-{_id_part(story)}@{domain}>"
        mail["In-Reply-To"] = root
        mail["References"] = root
    # RFC 3834: a machine wrote this; auto-responders should not answer it.
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(_text_body(message))
    mail.add_alternative(_html_body(message, charts, cids, left_out), subtype="html")
    if charts:
        html_part = mail.get_body(preferencelist=("html",))
        assert isinstance(html_part, EmailMessage)  # add_alternative made it one
        for chart in charts:
            html_part.add_related(
                chart.png,
                maintype="image",
                subtype="png",
                cid=f"<{cids[chart.signal_id]}>",
                filename=chart.filename,
                disposition="inline",
            )
    return mail


def _set_subject(mail: EmailMessage, subject: str) -> None:
    """The Subject header, Korean spaces intact on the wire.

    The policy's folder (CPython before gh-144156) may split a non-ASCII subject at a
    space into two encoded words and drop that space, which readers ignore between
    encoded words: "확보 사업" arrives as "확보사업". The legacy encoder keeps every
    space inside its encoded words and writes lines short enough for the policy to
    pass them through as they are. ``subject`` is already one line (``_subject``).
    """
    if subject.isascii():
        mail["Subject"] = subject
        return
    encoded = Header(subject, "utf-8", header_name="Subject").encode(linesep=SMTP_POLICY.linesep)
    mail.set_raw("Subject", encoded)


def _severity_of(signals: Sequence[AlertSignal]) -> str:
    """The highest severity among ``signals``; an unknown word counts as info."""
    return most_severe([s.severity for s in signals])


def _severity_label(signal: AlertSignal) -> str:
    return signal.severity.upper() if signal.severity in SEVERITIES else "INFO"


def _subject(message: AlertMessage, config: EmailConfig) -> str:
    count = len(message.signals) + message.folded
    if message.digest or not message.signals:
        core = f"Digest: {count} signal{'s' if count != 1 else ''}"
    else:
        first = message.signals[0]
        headline = one_line(first.title) or one_line(first.subject) or "(no title)"
        core = f"[{_severity_of(message.signals).upper()}] {headline}"
        if count > 1:
            core += f" (+{count - 1} more)"
    if message.test:
        core = f"[TEST] {core}"
    return one_line(f"{config.subject_prefix} {core}".strip(), _SUBJECT_MAX)


def _id_domain(sender: Address) -> str:
    domain = sender.domain
    return domain.lower() if _ASCII_DOMAIN.match(domain) else _FALLBACK_DOMAIN


def _id_part(key: str) -> str:
    """``key`` as the local part of a Message-ID: stable, and different keys differ.

    Letters, digits, ``_ + -`` are kept; every other byte of its UTF-8 becomes
    ``=XX``. Very long keys are replaced by a hash.
    """
    out = "".join(
        ch if _ID_SAFE.fullmatch(ch) else "".join(f"={b:02X}" for b in ch.encode()) for ch in key
    )
    if not out:
        out = "empty"
    if len(out) > _ID_MAX:
        out = "h-" + hashlib.sha256(key.encode()).hexdigest()
    return out


def _shared_story(signals: Sequence[AlertSignal]) -> str | None:
    stories = {s.story for s in signals}
    if len(stories) == 1:
        (story,) = stories
        return story or None
    return None


def _linkable(url: str | None) -> str | None:
    """The URL when it is an absolute http(s) URL with a host, else None."""
    return web_url(one_line(url)) if url else None


def _move_text(move: MoveLine) -> str:
    ticker = one_line(move.ticker)
    name = one_line(move.name) if move.name else ""
    parts = [f"{name} ({ticker})" if name else ticker]
    parts.extend(move_figures(move))
    return " ".join(parts)


def _why_text(signal: AlertSignal) -> str:
    parts: list[str] = []
    if signal.why:
        parts.append(one_line(signal.why))
    parts.append(f"rule {one_line(signal.rule_id)}")
    if signal.terms:
        parts.append("terms: " + ", ".join(one_line(term) for term in signal.terms))
    return "Why: " + " · ".join(parts)


def _meta_text(signal: AlertSignal) -> str:
    parts = [one_line(p) for p in (signal.subject, signal.source or "") if one_line(p)]
    parts.append(event_time_text(signal.event_time))
    return " · ".join(parts)


def _title(signal: AlertSignal) -> str:
    return (
        one_line(signal.title, _TITLE_MAX) or one_line(signal.subject, _TITLE_MAX) or "(no title)"
    )


def _heading(message: AlertMessage) -> str:
    count = len(message.signals) + message.folded
    severity = _severity_of(message.signals).upper()
    if message.digest:
        return f"kmon digest: {count} signal{'s' if count != 1 else ''}"
    if count > 1:
        return f"kmon {severity}: {count} signals"
    return f"kmon {severity} alert"


def _text_body(message: AlertMessage) -> str:
    lines = [_heading(message), ""]
    for signal in message.signals:
        lines.append(f"[{_severity_label(signal)}] {_title(signal)}")
        if signal.move is not None:
            lines.append(_move_text(signal.move))
        lines.append(_why_text(signal))
        lines.append(_meta_text(signal))
        if (url := _linkable(signal.url)) is not None:
            lines.append(url)
        lines.append("")
    lines.extend(message_notes(message))
    return "\n".join(lines).rstrip() + "\n"


_SEVERITY_COLOUR = {"INFO": "#2f6fb0", "WARNING": "#b07a00", "CRITICAL": "#c0392b"}


def _html_body(
    message: AlertMessage,
    charts: Sequence[ChartImage] = (),
    cids: dict[int, str] | None = None,
    left_out: int = 0,
) -> str:
    esc = html.escape
    by_signal = {c.signal_id: c for c in charts}
    cids = cids or {}
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"></head>',
        '<body style="font-family: sans-serif; line-height: 1.4">',
        f"<h2>{esc(_heading(message))}</h2>",
    ]
    for signal in message.signals:
        label = _severity_label(signal)
        title = esc(_title(signal))
        url = _linkable(signal.url)
        headline = f'<a href="{esc(url, quote=True)}">{title}</a>' if url else title
        parts.append('<div style="margin: 0 0 1em 0">')
        parts.append(
            f'<p style="margin: 0"><b style="color: {_SEVERITY_COLOUR[label]}">'
            f"[{label}]</b> <b>{headline}</b></p>"
        )
        if signal.move is not None:
            parts.append(f'<p style="margin: 0">{esc(_move_text(signal.move))}</p>')
        parts.append(f'<p style="margin: 0">{esc(_why_text(signal))}</p>')
        parts.append(f'<p style="margin: 0; color: #666">{esc(_meta_text(signal))}</p>')
        if (chart := by_signal.get(signal.id)) is not None:
            parts.append(
                f'<p style="margin: 0.5em 0 0 0"><img src="cid:{esc(cids[chart.signal_id])}"'
                f' alt="{esc(chart.caption, quote=True)}" style="max-width: 100%"></p>'
            )
        parts.append("</div>")
    notes = message_notes(message)
    if left_out:
        notes.append(f"{left_out} chart(s) left out to keep this mail small (kmon signals chart)")
    for note in notes:
        parts.append(f'<p style="color: #666">{esc(note)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- sending ------------------------------------------------------------------


class EmailChannel:
    """Sends each message in its own SMTP session (connect, TLS, AUTH, send, QUIT)."""

    shows_charts = True

    def __init__(self, name: str, config: EmailConfig) -> None:
        self.name = name
        self._config = config
        self._sender = parse_address(config.sender).addr_spec
        self._recipients = [parse_address(item).addr_spec for item in config.recipients]
        self._where = f"smtp {config.host}:{config.smtp_port}"
        self._tls: ssl.SSLContext | None = None
        self._local_hostname: str | None = None

    async def send(self, message: AlertMessage) -> Sent:
        """Send ``message``; raise TransientError / PermanentError / AuthError on failure.

        ``Sent.detail`` is the server's reply to the message data ("250 …"); recipients
        the server refused while accepting others are listed in ``Sent.extra``.
        """
        config = self._config
        mail = render_email(message, config)
        tls_context = await self._tls_context() if config.security != "none" else None
        if self._local_hostname is None:
            # getfqdn may ask DNS: once per channel, off the event loop.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.smtp_port,
            local_hostname=self._local_hostname,
            timeout=config.timeout,
            use_tls=config.security == "tls",
            start_tls=config.security == "starttls",
            tls_context=tls_context,
            username=config.username,
            password=config.password.get_secret_value() if config.password else None,
        )
        try:
            async with client:
                refused, reply = await client.send_message(
                    mail, sender=self._sender, recipients=self._recipients
                )
        except Exception as exc:
            error = _smtp_error(exc, self._where)
            if error is None:
                raise
            raise error from exc
        extra: dict[str, str] = {}
        if refused:
            extra["refused"] = "; ".join(
                f"{address} ({response.code} {one_line(response.message, _REASON_MAX)})"
                for address, response in sorted(refused.items())
            )
        return Sent(detail=f"250 {one_line(reply, _REASON_MAX)}".strip(), extra=extra)

    async def close(self) -> None:
        """Nothing to release: every send opens and closes its own connection."""

    async def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            try:
                # Loading CA files reads the disk: off the event loop, once.
                self._tls = await asyncio.to_thread(_make_tls_context, self._config)
            except (OSError, ssl.SSLError) as exc:
                raise PermanentError(
                    "tls_config",
                    f"{self._where}: cannot load the CA file ({reason_of(exc, _REASON_MAX)})",
                ) from exc
        return self._tls


def _make_tls_context(config: EmailConfig) -> ssl.SSLContext:
    # With ca_file only that CA is trusted (a private relay); else the system store.
    context = ssl.create_default_context(cafile=config.ca_file)
    if not config.validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _by_code(code: int, text: str, where: str) -> FetchError:
    key = f"smtp_{code}"
    what = f"{where}: {code} {one_line(text, _REASON_MAX)}".rstrip()
    if 400 <= code < 500:
        return TransientError(key, what)
    if 500 <= code < 600:
        return PermanentError(key, what)
    return TransientError(key, f"{what} (unexpected reply)")


def _smtp_error(exc: Exception, where: str) -> FetchError | None:
    """The error family member for an SMTP failure, or None for a bug to re-raise."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        if 400 <= exc.code < 500:  # 454: temporary authentication failure
            return TransientError(
                f"smtp_{exc.code}", f"{where}: {exc.code} {one_line(exc.message, _REASON_MAX)}"
            )
        return AuthError(
            f"smtp_{exc.code}",
            f"{where}: login refused ({exc.code} {one_line(exc.message, _REASON_MAX)})",
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        # Every recipient was refused; retry only if one of them might pass later.
        codes = [r.code for r in exc.recipients]
        temporary = [c for c in codes if 400 <= c < 500]
        first = next((r for r in exc.recipients if r.code in temporary), exc.recipients[0])
        refused = ", ".join(f"{r.recipient} ({r.code})" for r in exc.recipients)
        what = f"{where}: recipients refused: {refused}: {one_line(first.message, _REASON_MAX)}"
        if temporary:
            return TransientError(f"smtp_{first.code}", what)
        return PermanentError(f"smtp_{first.code}", what)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(exc.code, exc.message, where)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return TransientError("timeout", f"{where}: {one_line(exc.message, _REASON_MAX)}")
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError):
            return TransientError("tls", f"{where}: TLS failed ({reason_of(cause, _REASON_MAX)})")
        return TransientError(
            "smtp_connect", f"{where}: cannot connect ({reason_of(cause, _REASON_MAX)})"
        )
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return TransientError(
            "smtp_disconnected", f"{where}: connection lost ({one_line(exc.message, _REASON_MAX)})"
        )
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentError(
            "smtp_not_supported", f"{where}: {one_line(exc.message, _REASON_MAX)}"
        )
    if isinstance(exc, aiosmtplib.SMTPException):
        # e.g. "STARTTLS extension not supported", "AUTH extension not supported".
        return PermanentError("smtp_unsupported", f"{where}: {one_line(exc.message, _REASON_MAX)}")
    if isinstance(exc, ssl.SSLError):
        return TransientError("tls", f"{where}: TLS failed ({reason_of(exc, _REASON_MAX)})")
    if isinstance(exc, TimeoutError):
        return TransientError("timeout", f"{where}: timed out")
    if isinstance(exc, OSError):
        return TransientError(
            "smtp_connect", f"{where}: network error ({reason_of(exc, _REASON_MAX)})"
        )
    return None
